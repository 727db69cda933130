"""Four indexes fewer for every write of a message (issue 11: each state change of a message
rewrites every index): campaign and lead had indexes of their own that (campaign, state) and
(lead, step) already serve, and the idempotency key and Message-ID had LIKE indexes that no
query uses (a unique=True or db_index=True CharField gets one on PostgreSQL). On SQLite the
field changes rebuild the table, which drops what the models do not describe: the tally
triggers and the recipient search index (0013) are created again at the end."""

import django.db.models.deletion
from django.db import migrations, models

from outreach.tally_triggers import triggers_reinstall_sqlite


def rebuilt_on_sqlite(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "sqlite":
        return
    triggers_reinstall_sqlite(apps, schema_editor)
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS outbound_recipient_lower_idx "
        "ON outreach_outboundmessage (lower(recipient))"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("leads", "0015_lists_suppression_search_index"),
        ("outreach", "0018_campaign_sent_index_dropped"),
        ("templating", "0001_initial"),
        ("ventures", "0013_audit_search_indexes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="outboundmessage",
            name="campaign",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="messages",
                to="ventures.campaign",
            ),
        ),
        migrations.AlterField(
            model_name="outboundmessage",
            name="idempotency_key",
            field=models.CharField(editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name="outboundmessage",
            name="lead",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="outbound_messages",
                to="leads.lead",
            ),
        ),
        migrations.AlterField(
            model_name="outboundmessage",
            name="message_id",
            field=models.CharField(blank=True, max_length=300),
        ),
        migrations.AddIndex(
            model_name="outboundmessage",
            index=models.Index(fields=["message_id"], name="outbound_message_id_idx"),
        ),
        migrations.AddConstraint(
            model_name="outboundmessage",
            constraint=models.UniqueConstraint(
                fields=("idempotency_key",), name="outbound_idempotency_once"
            ),
        ),
        migrations.RunPython(rebuilt_on_sqlite, migrations.RunPython.noop),
    ]
