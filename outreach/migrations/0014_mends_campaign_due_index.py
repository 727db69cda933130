"""The dashboard's "due now" per campaign reads one range of this partial index per campaign
(campaign, due_at) over the due states, instead of every past-due row of the outbox."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("outreach", "0013_lists_search_indexes"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="outboundmessage",
            index=models.Index(
                condition=models.Q(("state__in", ("scheduled", "deferred"))),
                fields=["campaign", "due_at"],
                name="outbound_campaign_due_idx",
            ),
        ),
    ]
