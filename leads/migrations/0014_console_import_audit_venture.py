"""Give the audit rows of lead imports recorded without a venture the venture of their batch.

Until `ventures.services._venture_id_of` learnt to follow a batch's campaign, `leads.import`
and `leads.import_resume` rows had no venture, so the venture-scoped audit log hid an
Operator's and a Viewer's own imports. Each such row names its batch (`entity_id`), and a
batch's campaign belongs to one venture for good, so the venture is filled in from there;
rows whose batch is gone stay as they are. This fills a missing scope and changes nothing
that was recorded: it is the one UPDATE of the append-only table, made with its guard lifted
for the statement (the PostgreSQL trigger disabled inside the migration's transaction, the
SQLite guard function through `ventures.db.allow_audit_purge`).
"""

from __future__ import annotations

from django.db import migrations

BACKFILL = """
UPDATE ventures_auditevent SET venture_id = (
    SELECT c.venture_id FROM leads_importbatch b JOIN ventures_campaign c ON c.id = b.campaign_id
    WHERE CAST(b.id AS TEXT) = ventures_auditevent.entity_id
)
WHERE venture_id IS NULL AND entity_type = 'leads.importbatch' AND EXISTS (
    SELECT 1 FROM leads_importbatch b WHERE CAST(b.id AS TEXT) = ventures_auditevent.entity_id
)
"""
TRIGGER = "ventures_auditevent_append_only"


def forward(apps, schema_editor):
    from ventures.db import allow_audit_purge

    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE ventures_auditevent DISABLE TRIGGER {TRIGGER}")
        schema_editor.execute(BACKFILL)
        schema_editor.execute(f"ALTER TABLE ventures_auditevent ENABLE TRIGGER {TRIGGER}")
        return
    with allow_audit_purge():
        schema_editor.execute(BACKFILL)


class Migration(migrations.Migration):
    dependencies = [
        ("leads", "0013_console_search_indexes"),
        ("ventures", "0002_audit_append_only"),
    ]
    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
