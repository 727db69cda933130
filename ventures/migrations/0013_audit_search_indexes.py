"""The audit log's search, on a table that only grows: prefix indexes for what operators
search by, so a search is an index lookup however long the trail.

- `audit_action_lower_idx`, `audit_actor_lower_idx`, `audit_entity_repr_lower_idx`: the start
  of an action (`campaign.`), an actor or an entity's name, `lower(column) LIKE 'term%'`
  (`ventures.selectors.audit_search_q`). As for the lead search (leads 0013), a btree serves
  LIKE on PostgreSQL only with a pattern operator class and Django's `OpClass` exists only
  there, so these are created per database here, not declared in `AuditEvent.Meta`.
- `audit_entity_id_idx`: an entity's exact id (`audit_entity_idx` leads with the type).

`ventures/tests/test_audit_search.py` checks they exist and that PostgreSQL's plan uses them.
"""

from __future__ import annotations

from django.db import migrations, models

PREFIX_COLUMNS = ("action", "actor", "entity_repr")


def _name(column: str) -> str:
    return f"audit_{column}_lower_idx"


def forward(apps, schema_editor):
    opclass = " text_pattern_ops" if schema_editor.connection.vendor == "postgresql" else ""
    for column in PREFIX_COLUMNS:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {_name(column)} "
            f"ON ventures_auditevent (lower({column}){opclass})"
        )


def backward(apps, schema_editor):
    for column in PREFIX_COLUMNS:
        schema_editor.execute(f"DROP INDEX IF EXISTS {_name(column)}")


class Migration(migrations.Migration):
    dependencies = [("ventures", "0012_campaign_costs")]

    operations = [
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["entity_id"], name="audit_entity_id_idx"),
        ),
        migrations.RunPython(forward, backward),
    ]
