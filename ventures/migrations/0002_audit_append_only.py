"""Make the audit table append-only in the database itself (see ventures/db.py)."""

from django.db import migrations

TABLE = "ventures_auditevent"
MESSAGE = "audit events are append-only"

SQLITE_FORWARD = [
    f"CREATE TRIGGER {TABLE}_no_update BEFORE UPDATE ON {TABLE} WHEN aicmo_audit_guard() "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;",
    f"CREATE TRIGGER {TABLE}_no_delete BEFORE DELETE ON {TABLE} WHEN aicmo_audit_guard() "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;",
]
SQLITE_BACKWARD = [f"DROP TRIGGER {TABLE}_no_update;", f"DROP TRIGGER {TABLE}_no_delete;"]

PG_FORWARD = [
    "CREATE OR REPLACE FUNCTION aicmo_audit_append_only() RETURNS trigger AS $$ "
    f"BEGIN RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege'; END $$ "
    "LANGUAGE plpgsql;",
    f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
    "FOR EACH ROW EXECUTE FUNCTION aicmo_audit_append_only();",
]
PG_BACKWARD = [
    f"DROP TRIGGER {TABLE}_append_only ON {TABLE};",
    "DROP FUNCTION aicmo_audit_append_only();",
]


def forward(apps, schema_editor):
    statements = {"sqlite": SQLITE_FORWARD, "postgresql": PG_FORWARD}.get(
        schema_editor.connection.vendor, []
    )
    for sql in statements:
        schema_editor.execute(sql)


def backward(apps, schema_editor):
    statements = {"sqlite": SQLITE_BACKWARD, "postgresql": PG_BACKWARD}.get(
        schema_editor.connection.vendor, []
    )
    for sql in statements:
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("ventures", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
