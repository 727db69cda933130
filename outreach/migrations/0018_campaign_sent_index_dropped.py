"""The campaign page reads its sends per day from the tally's quarter hours now
(`outreach.tally`): the index that served them would only slow every send."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("outreach", "0017_message_tally"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="outboundmessage",
            name="outbound_campaign_sent_idx",
        ),
    ]
