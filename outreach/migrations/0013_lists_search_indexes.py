"""The operator's lists on a million messages: the indexes their filters, order and search use.

- `outbound_sent_at_idx`: the message list's "sent" date filter (a range of sent_at).
- `outbound_reason_idx`: the reason filter offers the codes present (only rows with one).
- `dispatchrun_started_idx`: the run list's order, newest first.
- `outbound_recipient_lower_idx`, `feedback_recipient_lower_idx`: the searches on the address,
  `lower(recipient) LIKE 'prefix%'` (`outreach.admin.recipient_search`). As for the lead
  search (leads 0013), a btree serves LIKE on PostgreSQL only with a pattern operator class,
  and Django's `OpClass` exists only there, so these two are created per database here, not
  declared in the models' Meta (`outreach/tests/test_admin_lists.py` checks the plan uses them).
"""

from __future__ import annotations

from django.db import migrations, models

RECIPIENT_INDEXES = {
    "outbound_recipient_lower_idx": "outreach_outboundmessage",
    "feedback_recipient_lower_idx": "outreach_feedbackevent",
}


def forward(apps, schema_editor):
    opclass = " text_pattern_ops" if schema_editor.connection.vendor == "postgresql" else ""
    for name, table in RECIPIENT_INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} (lower(recipient){opclass})"
        )


def backward(apps, schema_editor):
    for name in RECIPIENT_INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("outreach", "0012_lead_facts")]

    operations = [
        migrations.AddIndex(
            model_name="dispatchrun",
            index=models.Index(fields=["-started_at", "-id"], name="dispatchrun_started_idx"),
        ),
        migrations.AddIndex(
            model_name="outboundmessage",
            index=models.Index(
                condition=models.Q(sent_at__isnull=False),
                fields=["sent_at"],
                name="outbound_sent_at_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="outboundmessage",
            index=models.Index(
                condition=~models.Q(reason_code=""),
                fields=["reason_code"],
                name="outbound_reason_idx",
            ),
        ),
        migrations.RunPython(forward, backward),
    ]
