# ruff: noqa: S608 (table and column names are this file's constants; no input reaches the SQL)
"""The database triggers that keep the messages' tallies (`outreach.tally`): their SQL for
PostgreSQL (statement triggers with transition tables, one PL/pgSQL function) and SQLite (row
triggers), and `triggers_install`, which migrations call. Changing them takes a migration that
calls `triggers_install` again. On SQLite, a migration that rebuilds the messages' table (most
field changes do: SQLite alters by copying into a new table) drops its triggers with the old
table, so such a migration must end with `triggers_reinstall_sqlite` too; the tally tests fail
if it does not."""

from __future__ import annotations

# A message's key: campaign, step, state, the reason of a blocked one, the mailbox, segment
# and template version of a sent one.
MSG, TALLY, QUARTER = "outreach_outboundmessage", "outreach_messagetally", "outreach_sentquarter"
TALLY_COLUMNS = (
    "campaign_id, step_id, state, reason_code, mailbox_id, segment_id, template_version_id"
)


def key(r: str) -> list[str]:
    return [
        f"{r}campaign_id",
        f"{r}step_id",
        f"{r}state",
        f"CASE WHEN {r}state = 'blocked' THEN {r}reason_code ELSE '' END",
        f"CASE WHEN {r}state = 'sent' THEN {r}mailbox_id END",
        f"CASE WHEN {r}state = 'sent' THEN {r}segment_id END",
        f"CASE WHEN {r}state = 'sent' THEN {r}template_version_id END",
    ]


def quarter(r: str, vendor: str) -> str:
    if vendor == "postgresql":
        return f"date_bin('15 minutes', {r}sent_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
    # Django keeps SQLite datetimes as 'YYYY-MM-DD HH:MM:SS[.ffffff]' text, in UTC.
    return (
        f"substr({r}sent_at, 1, 14) || "
        f"printf('%02d', CAST(substr({r}sent_at, 15, 2) AS INTEGER) / 15 * 15) || ':00'"
    )


def counted(r: str) -> str:
    return f"{r}state = 'sent' AND {r}sent_at IS NOT NULL"


def pg_function() -> str:
    k, q = ", ".join(key("r.")), quarter("r.", "postgresql")
    groups = "1, 2, 3, 4, 5, 6, 7"
    return f"""
CREATE OR REPLACE FUNCTION outreach_message_tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {TALLY} ({TALLY_COLUMNS}, n)
            SELECT {k}, COUNT(*) FROM new_rows r GROUP BY {groups};
        INSERT INTO {QUARTER} (campaign_id, quarter, n)
            SELECT r.campaign_id, {q}, COUNT(*) FROM new_rows r WHERE {counted("r.")}
            GROUP BY 1, 2;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO {TALLY} ({TALLY_COLUMNS}, n)
            SELECT {k}, -COUNT(*) FROM old_rows r GROUP BY {groups};
        INSERT INTO {QUARTER} (campaign_id, quarter, n)
            SELECT r.campaign_id, {q}, -COUNT(*) FROM old_rows r WHERE {counted("r.")}
            GROUP BY 1, 2;
    ELSE
        INSERT INTO {TALLY} ({TALLY_COLUMNS}, n)
            SELECT c1, c2, c3, c4, c5, c6, c7, SUM(d) FROM (
                SELECT {k}, 1 FROM new_rows r UNION ALL SELECT {k}, -1 FROM old_rows r
            ) x (c1, c2, c3, c4, c5, c6, c7, d)
            GROUP BY {groups} HAVING SUM(d) <> 0;
        INSERT INTO {QUARTER} (campaign_id, quarter, n)
            SELECT c, q, SUM(d) FROM (
                SELECT r.campaign_id, {q}, 1 FROM new_rows r WHERE {counted("r.")}
                UNION ALL
                SELECT r.campaign_id, {q}, -1 FROM old_rows r WHERE {counted("r.")}
            ) x (c, q, d)
            GROUP BY 1, 2 HAVING SUM(d) <> 0;
    END IF;
    RETURN NULL;
END $$;
"""


PG_TRIGGERS = [
    f"CREATE TRIGGER outreach_tally_insert AFTER INSERT ON {MSG} REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION outreach_message_tally()",
    f"CREATE TRIGGER outreach_tally_update AFTER UPDATE ON {MSG} "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION outreach_message_tally()",
    f"CREATE TRIGGER outreach_tally_delete AFTER DELETE ON {MSG} REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION outreach_message_tally()",
]


def sqlite_triggers() -> list[str]:
    old, new = key("OLD."), key("NEW.")
    changed = " OR ".join(f"({a}) IS NOT ({b})" for a, b in zip(old, new, strict=True))
    qo, qn = quarter("OLD.", "sqlite"), quarter("NEW.", "sqlite")
    same_quarter = f"NEW.campaign_id = OLD.campaign_id AND {qn} = {qo}"
    return [
        f"""CREATE TRIGGER outreach_tally_insert AFTER INSERT ON {MSG} BEGIN
            INSERT INTO {TALLY} ({TALLY_COLUMNS}, n) VALUES ({", ".join(new)}, 1);
            INSERT INTO {QUARTER} (campaign_id, quarter, n)
                SELECT NEW.campaign_id, {qn}, 1 WHERE {counted("NEW.")};
        END""",
        f"""CREATE TRIGGER outreach_tally_delete AFTER DELETE ON {MSG} BEGIN
            INSERT INTO {TALLY} ({TALLY_COLUMNS}, n) VALUES ({", ".join(old)}, -1);
            INSERT INTO {QUARTER} (campaign_id, quarter, n)
                SELECT OLD.campaign_id, {qo}, -1 WHERE {counted("OLD.")};
        END""",
        f"""CREATE TRIGGER outreach_tally_update AFTER UPDATE ON {MSG} BEGIN
            INSERT INTO {TALLY} ({TALLY_COLUMNS}, n) SELECT {", ".join(old)}, -1 WHERE {changed};
            INSERT INTO {TALLY} ({TALLY_COLUMNS}, n) SELECT {", ".join(new)}, 1 WHERE {changed};
            INSERT INTO {QUARTER} (campaign_id, quarter, n)
                SELECT OLD.campaign_id, {qo}, -1 WHERE {counted("OLD.")}
                AND NOT ({counted("NEW.")} AND {same_quarter});
            INSERT INTO {QUARTER} (campaign_id, quarter, n)
                SELECT NEW.campaign_id, {qn}, 1 WHERE {counted("NEW.")}
                AND NOT ({counted("OLD.")} AND {same_quarter});
        END""",
    ]


def triggers_install(connection) -> None:
    """Create (or replace) the triggers on `connection`'s database."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(pg_function())
            for name in ("insert", "update", "delete"):
                cursor.execute(f"DROP TRIGGER IF EXISTS outreach_tally_{name} ON {MSG}")
            for sql in PG_TRIGGERS:
                cursor.execute(sql)
            return
        for name in ("insert", "update", "delete"):
            cursor.execute(f"DROP TRIGGER IF EXISTS outreach_tally_{name}")
        for sql in sqlite_triggers():
            cursor.execute(sql)


def triggers_reinstall_sqlite(apps, schema_editor) -> None:
    """For a migration that rebuilt the messages' table on SQLite (a RunPython operation)."""
    if schema_editor.connection.vendor == "sqlite":
        triggers_install(schema_editor.connection)


def triggers_uninstall(connection) -> None:
    with connection.cursor() as cursor:
        for name in ("insert", "update", "delete"):
            if connection.vendor == "postgresql":
                cursor.execute(f"DROP TRIGGER IF EXISTS outreach_tally_{name} ON {MSG}")
            else:
                cursor.execute(f"DROP TRIGGER IF EXISTS outreach_tally_{name}")
        if connection.vendor == "postgresql":
            cursor.execute("DROP FUNCTION IF EXISTS outreach_message_tally()")
