"""The lead list's search: prefix indexes on the lower-cased first name, last name and company.

The admin's search (`leads.admin.LeadAdmin.get_search_results`) matches `lower(column) LIKE
'term%'`. On PostgreSQL a btree index serves LIKE only with a pattern operator class (or the C
collation), and Django's `OpClass` expression exists only there, so the indexes are created per
database here rather than declared in `Lead.Meta`: `text_pattern_ops` on PostgreSQL, a plain
expression index on SQLite (the embedded demo database, where they cost nothing noticeable).
Django's model state does not describe them; `leads/tests/test_admin.py` checks they exist.
"""

from __future__ import annotations

from django.db import migrations

COLUMNS = ("first_name", "last_name", "company")


def _name(column: str) -> str:
    return f"lead_{column}_lower_idx"


def forward(apps, schema_editor):
    opclass = " text_pattern_ops" if schema_editor.connection.vendor == "postgresql" else ""
    for column in COLUMNS:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {_name(column)} ON leads_lead (lower({column}){opclass})"
        )


def backward(apps, schema_editor):
    for column in COLUMNS:
        schema_editor.execute(f"DROP INDEX IF EXISTS {_name(column)}")


class Migration(migrations.Migration):
    dependencies = [("leads", "0012_unsubscribe_source_esp")]
    operations = [migrations.RunPython(forward, backward)]
