"""PostgreSQL: a lead's references are checked once per statement by triggers, not per row.

PostgreSQL checks a foreign key with one trigger query per inserted row. For a COPY of a
million leads the three keys of `leads_lead` (the composite (campaign_id, venture_id) of 0004,
the source batch and the ICP segment) cost about 7.8 s of backend CPU; a statement-level check
of the statement's distinct references costs about 0.55 s (`bench/lead_table.py`). This migration drops the three keys and
checks the same references with triggers:

- INSERT: one statement-level trigger reads the statement's transition table once, takes its
  distinct references, and looks up each distinct referenced row once, locking it FOR KEY
  SHARE as PostgreSQL's own check does. It runs at the end of the statement, not at commit: a
  lead can no longer be written before its campaign, batch or segment in one transaction.
- UPDATE: a row-level trigger whose WHEN clause lets through only rows whose references change
  to something not NULL, so status changes, fills and Django's SET_NULL call no function.
- The referenced rows (ventures_campaign (id, venture_id), leads_importbatch (id),
  ventures_icpsegment (id)): deferred constraint triggers on DELETE and on a change of the key,
  NO ACTION like Django's keys. At check time they refuse while a lead references the old key,
  unless a row with that key exists again; and they refuse to run outside READ COMMITTED. A
  TRUNCATE of one of them is refused at the end of the statement while any lead references it,
  unless the lead table was truncated in the same statement (as a foreign key would).

Django's model state is unchanged: it still describes the foreign keys `Lead.campaign`,
`Lead.venture`, `Lead.source_batch` and `Lead.segment` and applies their `on_delete` rules
itself (PROTECT, SET_NULL). SQLite keeps its ordinary foreign keys. Later migrations must keep
the triggers in step (as tried with Django 5.2):
- An AlterField that turns `db_constraint` back on for one of these fields, or a RemoveField
  and AddField, adds a per-row foreign key back beside the triggers: drop it again, as
  `to_triggers` does. An AlterField of other options (on_delete, index, even the target) finds
  no key to drop and adds none; the triggers keep checking the old target until a migration
  creates them anew.
- Changing the type of a referenced key (the id of Campaign, Venture, ImportBatch or
  IcpSegment, the campaign's venture) or of a lead's column stops with "cannot alter type of a
  column used in a trigger definition": drop the triggers, alter, create them again, and drop
  the per-row key Django then adds to every field that points at the changed key.
- The functions name the tables and columns: renaming one means creating them again.
`leads/tests/test_references.py` fails while a per-row key is back or a trigger is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import migrations

LEAD = "leads_lead"


@dataclass(frozen=True)
class Reference:
    """Lead columns that must name an existing row of `table` by its `key` (unless NULL)."""

    name: str
    columns: tuple[str, ...]
    table: str
    key: tuple[str, ...]
    nullable: bool

    @property
    def gone_function(self) -> str:
        return f"lead_references_check_{self.name}_gone"

    @property
    def truncated_function(self) -> str:
        return f"lead_references_check_{self.name}_truncated"

    def triggers(self) -> tuple[str, str, str]:
        return (
            f"lead_references_{self.name}_deleted",
            f"lead_references_{self.name}_rekeyed",
            f"lead_references_{self.name}_truncated",
        )


REFERENCES = (
    Reference(
        "campaign", ("campaign_id", "venture_id"), "ventures_campaign", ("id", "venture_id"), False
    ),
    Reference("batch", ("source_batch_id",), "leads_importbatch", ("id",), True),
    Reference("segment", ("segment_id",), "ventures_icpsegment", ("id",), True),
)
INSERTED_FUNCTION = "lead_references_check_inserted"
UPDATED_FUNCTION = "lead_references_check_updated"
INSERTED_TRIGGER = "lead_references_inserted"
UPDATED_TRIGGER = "lead_references_updated"
LEAD_TRIGGERS = (INSERTED_TRIGGER, UPDATED_TRIGGER)


def _names(columns: tuple[str, ...]) -> str:
    return ", ".join(columns)


def _values(prefix: str, columns: tuple[str, ...]) -> str:
    """SQL text of the key's values, as PostgreSQL prints them in its DETAIL lines."""
    return "concat_ws(', ', " + ", ".join(f"{prefix}{c}" for c in columns) + ")"


def _matches(alias: str, key: tuple[str, ...], prefix: str, columns: tuple[str, ...]) -> str:
    return " AND ".join(f"{alias}.{k} = {prefix}{c}" for k, c in zip(key, columns, strict=True))


def _missing(table: str, columns: str, key: str) -> str:
    """RAISE a foreign_key_violation worded like PostgreSQL's own; arguments are SQL text."""
    return f"""
        RAISE EXCEPTION USING
            ERRCODE = 'foreign_key_violation',
            MESSAGE = format('insert or update on table "{LEAD}" violates its reference to '
                '"%s": key (%s)=(%s) is not present', {table}, {columns}, {key}),
            DETAIL = format('Key (%s)=(%s) is not present in table "%s".',
                {columns}, {key}, {table}),
            TABLE = '{LEAD}';"""


def _literal(ref: Reference) -> tuple[str, str]:
    """The referenced table and the lead's columns, as SQL string literals."""
    return f"'{ref.table}'", f"'{_names(ref.columns)}'"


def _changed(ref: Reference) -> str:
    """The row's reference changed to something that must be checked (not NULL)."""
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in ref.columns)
    if not ref.nullable:
        return f"({changed})"
    present = " AND ".join(f"NEW.{c} IS NOT NULL" for c in ref.columns)
    return f"({present} AND ({changed}))"


def inserted_function() -> str:
    """Statement level: the transition table is read once (the MATERIALIZED CTE), then each
    kind of reference looks up its distinct rows; the locking sub-SELECTs cannot be turned into
    a join, so each is one index probe per distinct referenced row, exactly the query of
    PostgreSQL's RI_FKey_check (SELECT 1 ... WHERE key = $1 FOR KEY SHARE). The first missing
    reference, if any, is raised; otherwise every referenced row is locked until the end of
    the transaction, so a concurrent DELETE of it waits and then sees the new leads."""
    all_columns = [c for ref in REFERENCES for c in ref.columns]
    checks = []
    for ref in REFERENCES:
        table, columns = _literal(ref)
        present = " AND ".join(f"{c} IS NOT NULL" for c in ref.columns)
        where = f" WHERE {present}" if ref.nullable else ""
        checks.append(
            f"""
            SELECT {table}::text AS target, {columns}::text AS columns,
                {_values("r.", ref.columns)} AS key
            FROM (SELECT DISTINCT {_names(ref.columns)} FROM refs{where}) r
            WHERE NOT EXISTS (
                SELECT FROM {ref.table} t WHERE {_matches("t", ref.key, "r.", ref.columns)}
                FOR KEY SHARE OF t
            )"""  # noqa: S608 - identifiers are constants
        )
    return f"""
CREATE FUNCTION {INSERTED_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    missing record;
BEGIN
    WITH refs AS MATERIALIZED (
        SELECT DISTINCT {_names(tuple(all_columns))} FROM inserted_leads
    )
    SELECT * INTO missing FROM ({" UNION ALL ".join(checks)}
    ) checks;
    IF FOUND THEN{_missing("missing.target", "missing.columns", "missing.key")}
    END IF;
    RETURN NULL;
END
$fn$
"""  # noqa: S608 - identifiers are constants


def updated_function() -> str:
    """Row level, only for rows whose references changed (the trigger's WHEN): the same lookup
    and lock as on INSERT, for the references of this row that changed."""
    checks = "".join(
        f"""
    IF {_changed(ref)} THEN
        PERFORM FROM {ref.table} t WHERE {_matches("t", ref.key, "NEW.", ref.columns)}
        FOR KEY SHARE OF t;
        IF NOT FOUND THEN{_missing(*_literal(ref), _values("NEW.", ref.columns))}
        END IF;
    END IF;"""
        for ref in REFERENCES
    )
    return f"""
CREATE FUNCTION {UPDATED_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN{checks}
    RETURN NULL;
END
$fn$
"""


def referencing_query(ref: Reference, values: tuple[str, ...]) -> str:
    """One lead that references the key `values` (SQL text), if any.

    The first column is compared as a range and ordered by, not compared with `=`: an equality
    would make the ORDER BY redundant, and a query that expects its first row soon (LIMIT 1,
    EXISTS) is planned as a sequential scan whenever the statistics see few distinct keys, which
    reads the whole lead table when no lead matches, the usual case. Ordered by its first
    column, only an index that starts with it delivers a row without reading them all: the
    campaign-first indexes, the source batch index, the partial segment index (its predicate
    follows from the range). leads/tests/test_references.py pins the plans."""
    first, *rest = ref.columns
    value, *others = values
    conditions = [f"l.{first} >= {value}", f"l.{first} <= {value}"]
    conditions += [f"l.{c} = {v}" for c, v in zip(rest, others, strict=True)]
    return f"SELECT FROM {LEAD} l WHERE {' AND '.join(conditions)} ORDER BY l.{first} LIMIT 1"


def gone_function(ref: Reference) -> str:
    """After a referenced row was deleted or its key changed, at check time (commit, or the
    end of the statement under SET CONSTRAINTS ... IMMEDIATE).

    Why READ COMMITTED only: a lead's insert (or update) locks the rows it references FOR KEY
    SHARE, so a DELETE or key change of such a row waits until that transaction ends. Under
    READ COMMITTED each statement of this function takes a fresh snapshot, so a lead committed
    by a transaction that made us wait is seen here and refused; a transaction that locks the
    row after us waits for us, then finds it gone and fails itself. Under REPEATABLE READ or
    SERIALIZABLE the snapshot is the transaction's first: the lead that made the DELETE wait
    would be invisible here and left orphaned. PostgreSQL's own check escapes that with a
    crosscheck snapshot that SQL cannot ask for, so this refuses instead. (READ UNCOMMITTED is
    READ COMMITTED in PostgreSQL.)

    Leads are not locked (PostgreSQL's check locks one FOR KEY SHARE): one being moved to
    another row, or deleted, by a transaction still open counts as referencing, which refuses
    where PostgreSQL would have waited; it never lets an orphan through."""
    key_values = _values("OLD.", ref.key)
    old_key = tuple(f"OLD.{k}" for k in ref.key)
    return f"""
CREATE FUNCTION {ref.gone_function}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted') THEN
        RAISE EXCEPTION USING
            ERRCODE = 'feature_not_supported',
            MESSAGE = format(
                'deleting or changing the key of a row of "{ref.table}" needs READ COMMITTED '
                'isolation, not %s', upper(current_setting('transaction_isolation'))),
            DETAIL = 'The references from "{LEAD}" to it are checked by a trigger, which under '
                'this isolation level cannot see leads committed by concurrent transactions.',
            HINT = 'Run the statement in a READ COMMITTED transaction.',
            TABLE = '{ref.table}';
    END IF;
    -- The same key again (deleted and inserted anew): nothing lost (ri_Check_Pk_Match).
    PERFORM FROM {ref.table} t WHERE {_matches("t", ref.key, "OLD.", ref.key)}
    FOR KEY SHARE OF t;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM FROM ({referencing_query(ref, old_key)}) referencing;
    IF FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'foreign_key_violation',
            MESSAGE = format(
                'update or delete on table "{ref.table}" violates the reference from table '
                '"{LEAD}": key ({_names(ref.key)})=(%s) is still referenced', {key_values}),
            DETAIL = format(
                'Key ({_names(ref.key)})=(%s) is still referenced from table "{LEAD}".',
                {key_values}),
            TABLE = '{ref.table}';
    END IF;
    RETURN NULL;
END
$fn$
"""


def truncated_function(ref: Reference) -> str:
    """After a TRUNCATE of the referenced table, at the end of the statement: every row of it
    is gone, so any lead that references one (any not NULL reference) would be orphaned.
    PostgreSQL refuses to truncate a table that a foreign key references unless the
    referencing table is truncated in the same statement; so does this. After the statement's
    TRUNCATE the lead table is empty if it was truncated too (Django's `flush` truncates every
    table at once), and the check passes."""
    present = " AND ".join(f"l.{c} IS NOT NULL" for c in ref.columns)
    return f"""
CREATE FUNCTION {ref.truncated_function}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM FROM {LEAD} l WHERE {present} LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'foreign_key_violation',
            MESSAGE = 'cannot truncate "{ref.table}": leads in "{LEAD}" still reference it',
            HINT = 'Truncate "{LEAD}" in the same statement, or delete those leads first.',
            TABLE = '{ref.table}';
    END IF;
    RETURN NULL;
END
$fn$
"""  # noqa: S608 - identifiers are constants


def create_statements() -> list[str]:
    changed = " OR ".join(_changed(ref) for ref in REFERENCES)
    statements = [
        inserted_function(),
        # No transition table on UPDATE: it would copy every updated row of every statement.
        updated_function(),
        f"CREATE TRIGGER {INSERTED_TRIGGER} AFTER INSERT ON {LEAD} "
        f"REFERENCING NEW TABLE AS inserted_leads FOR EACH STATEMENT "
        f"EXECUTE FUNCTION {INSERTED_FUNCTION}()",
        f"CREATE TRIGGER {UPDATED_TRIGGER} AFTER UPDATE ON {LEAD} FOR EACH ROW "
        f"WHEN ({changed}) EXECUTE FUNCTION {UPDATED_FUNCTION}()",
    ]
    for ref in REFERENCES:
        deleted, rekeyed, truncated = ref.triggers()
        rekey = " OR ".join(f"OLD.{k} IS DISTINCT FROM NEW.{k}" for k in ref.key)
        statements += [
            gone_function(ref),
            f"CREATE CONSTRAINT TRIGGER {deleted} AFTER DELETE ON {ref.table} "
            f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {ref.gone_function}()",
            f"CREATE CONSTRAINT TRIGGER {rekeyed} AFTER UPDATE OF {_names(ref.key)} "
            f"ON {ref.table} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN ({rekey}) "
            f"EXECUTE FUNCTION {ref.gone_function}()",
            truncated_function(ref),
            f"CREATE TRIGGER {truncated} AFTER TRUNCATE ON {ref.table} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION {ref.truncated_function}()",
        ]
    return statements


def _foreign_keys(cursor) -> list[str]:
    """The lead table's foreign keys on referencing columns (single or composite), found by
    their columns as in 0004; `last_batch_id` has none and is left alone."""
    columns = [c for ref in REFERENCES for c in ref.columns]
    cursor.execute(
        """
        SELECT c.conname FROM pg_constraint c
        WHERE c.conrelid = %s::regclass AND c.contype = 'f'
          AND (SELECT array_agg(a.attname::text) FROM pg_attribute a
               WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)) <@ %s::text[]
        """,
        [LEAD, columns],
    )
    return [row[0] for row in cursor.fetchall()]


def to_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cur:
        for name in _foreign_keys(cur):
            cur.execute(f'ALTER TABLE {LEAD} DROP CONSTRAINT "{name}"')
        for statement in create_statements():
            cur.execute(statement)


def to_foreign_keys(apps, schema_editor):
    """The three keys as they were: 0004's composite key, and for the source batch and the
    segment Django's own keys, made by the schema editor's method that AddField uses (its
    names and SQL, DEFERRABLE INITIALLY DEFERRED)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cur:
        for trigger in LEAD_TRIGGERS:
            cur.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {LEAD}")
        for ref in REFERENCES:
            for trigger in ref.triggers():
                cur.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {ref.table}")
            cur.execute(f"DROP FUNCTION IF EXISTS {ref.gone_function}()")
            cur.execute(f"DROP FUNCTION IF EXISTS {ref.truncated_function}()")
        cur.execute(f"DROP FUNCTION IF EXISTS {INSERTED_FUNCTION}()")
        cur.execute(f"DROP FUNCTION IF EXISTS {UPDATED_FUNCTION}()")
        cur.execute(
            f"ALTER TABLE {LEAD} ADD CONSTRAINT lead_campaign_venture_fk "
            "FOREIGN KEY (campaign_id, venture_id) REFERENCES ventures_campaign (id, venture_id) "
            "DEFERRABLE INITIALLY DEFERRED"
        )
    lead = apps.get_model("leads", "Lead")
    for field in ("source_batch", "segment"):
        schema_editor.execute(
            schema_editor._create_fk_sql(
                lead, lead._meta.get_field(field), "_fk_%(to_table)s_%(to_column)s"
            )
        )


class Migration(migrations.Migration):
    dependencies = [
        ("leads", "0008_identity_key_index"),
    ]

    operations = [migrations.RunPython(to_triggers, to_foreign_keys)]
