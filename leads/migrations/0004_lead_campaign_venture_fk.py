"""PostgreSQL: one (campaign_id, venture_id) foreign key instead of two single-column ones.

A lead's venture is a copy of its campaign's (kept for index-only cross-campaign lookups). The
two single-column foreign keys checked the campaign and the venture separately, each with its
own per-row trigger query at commit, and neither checked that the copy is right. One composite
key against the campaign's unique (id, venture_id) does both in one check per row: a lead can
only name its campaign's venture. Django's model state still describes the two single-column
keys (it has no composite foreign keys); their `on_delete` rules are applied by Django as
before. SQLite keeps the two single-column keys. Since leads/0009 this key is gone too, like the
batch and segment keys: triggers check a statement's references once, and that migration says
what later migrations of these fields must do.
"""

from django.db import migrations

COMPOSITE = "lead_campaign_venture_fk"


def _single_fks(cursor, column: str) -> list[str]:
    cursor.execute(
        """
        SELECT c.conname FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
        WHERE c.conrelid = 'leads_lead'::regclass AND c.contype = 'f'
          AND array_length(c.conkey, 1) = 1 AND a.attname = %s
        """,
        [column],
    )
    return [row[0] for row in cursor.fetchall()]


def to_composite(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cur:
        for column in ("campaign_id", "venture_id"):
            for name in _single_fks(cur, column):
                cur.execute(f'ALTER TABLE leads_lead DROP CONSTRAINT "{name}"')
        cur.execute(
            f"ALTER TABLE leads_lead ADD CONSTRAINT {COMPOSITE} "
            "FOREIGN KEY (campaign_id, venture_id) REFERENCES ventures_campaign (id, venture_id) "
            "DEFERRABLE INITIALLY DEFERRED"
        )


def to_single(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cur:
        cur.execute(f"ALTER TABLE leads_lead DROP CONSTRAINT IF EXISTS {COMPOSITE}")
        for column, target in (
            ("campaign_id", "ventures_campaign"),
            ("venture_id", "ventures_venture"),
        ):
            if not _single_fks(cur, column):
                cur.execute(
                    f"ALTER TABLE leads_lead ADD CONSTRAINT leads_lead_{column}_fk "
                    f"FOREIGN KEY ({column}) REFERENCES {target} (id) DEFERRABLE INITIALLY DEFERRED"
                )


class Migration(migrations.Migration):
    dependencies = [
        ("leads", "0003_import_batch_lease"),
        ("ventures", "0007_campaign_id_venture_key"),
    ]

    operations = [migrations.RunPython(to_composite, to_single)]
