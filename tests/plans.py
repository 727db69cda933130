"""PostgreSQL's query plans, for the tests that prove a console list is an index lookup."""

from __future__ import annotations

from django.db import connection


def plan(queryset) -> str:
    """PostgreSQL's plan for `queryset`, sequential scans ruled out unless nothing else can
    answer it (on a few test rows the planner would rightly scan the table)."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        found = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    return found
