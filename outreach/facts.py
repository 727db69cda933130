"""Per-lead facts (`LeadFacts`): the emails sent to each lead and the kinds of feedback seen,
kept as the outbox and the feedback record them, so that reports and the campaign page read
one narrow row per lead instead of aggregating a campaign's every message and event.

- `lead_facts_add` is called in the transaction that marks emails sent (the tick's batch, an
  unknown message settled) or stores events (every feedback path): one upsert, whatever the
  count, in lead order. It comes after the narrative counters in those transactions, so they
  take the two kinds of row lock in one order (arms, then leads) and cannot wait for each
  other in a cycle. (A feedback batch that settles an unknown message takes that lead's row
  before the batch's arms: nothing of that lead is in flight, so no tick holds it.)
- A lead's flags only grow: an event is never deleted or re-read (erasure blanks its text and
  keeps it), and "replied positively" means one of its replies reads positive.
- `lead_facts_computed` computes the same facts from the messages and events (one aggregate);
  `lead_facts_drift` lists the leads where the kept facts differ from it, and
  `lead_facts_rebuild` replaces a campaign's facts with it (`manage.py report facts`).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection

from leads.models import Lead
from outreach.models import (
    FeedbackEvent,
    FeedbackKind,
    LeadFacts,
    MessageState,
    OutboundMessage,
    StepKind,
)
from ventures.models import Campaign

# The per-lead event flags, with the event kind that sets each; "positive" is set by a reply
# that reads positive.
FACT_FLAGS = (
    ("delivered", FeedbackKind.DELIVERED),
    ("opened", FeedbackKind.OPENED),
    ("clicked", FeedbackKind.CLICKED),
    ("replied", FeedbackKind.REPLIED),
    ("autoreplied", FeedbackKind.AUTORESPONDED),
    ("bounced", FeedbackKind.BOUNCED),
    ("complained", FeedbackKind.COMPLAINED),
)
FACT_BITS = {flag: 1 << n for n, flag in enumerate([f for f, _k in FACT_FLAGS] + ["positive"])}
_KIND_BITS = {kind: FACT_BITS[flag] for flag, kind in FACT_FLAGS}
# Rows per upsert statement (SQLite allows 32,766 parameters; three a row).
_CHUNK = 5_000


def event_bits(kind: str, sentiment: str) -> int:
    """The flags one event sets."""
    bits = _KIND_BITS.get(kind, 0)
    if kind == FeedbackKind.REPLIED and sentiment == "positive":
        bits |= FACT_BITS["positive"]
    return bits


def lead_facts_add(
    *, sent: Iterable[OutboundMessage] = (), events: Iterable[FeedbackEvent] = ()
) -> None:
    """Count emails just marked sent and events just stored in their leads' facts. Call in the
    transaction that records them, once for each (a message or event passed twice counts
    twice); a fixed number of statements whatever the count."""
    deltas: dict[int, list[int]] = {}  # lead id: [emails, flags]
    for m in sent:
        if m.kind == StepKind.EMAIL:
            deltas.setdefault(m.lead_id, [0, 0])[0] += 1
    for event in events:
        bits = event_bits(event.kind, event.sentiment)
        if event.lead_id is not None and bits:
            deltas.setdefault(event.lead_id, [0, 0])[1] |= bits
    if deltas:
        _upsert([(pk, sent, flags) for pk, (sent, flags) in sorted(deltas.items())])


def _upsert(rows: list[tuple[int, int, int]]) -> None:
    """INSERT ... SELECT ... ON CONFLICT DO UPDATE, rows in lead order (each lead's campaign
    read from the lead in the same statement): each row is inserted, or its stored row locked
    and added to, in that order, so two concurrent upserts never hold each other's rows. A row
    the delta would not change (a second delivery report) is locked but not rewritten.
    PostgreSQL and SQLite share the syntax (a VALUES list's columns are column1, column2...;
    SQLite needs the WHERE to tell the upsert from a join's ON)."""
    q = connection.ops.quote_name
    table, lead = q(LeadFacts._meta.db_table), q(Lead._meta.db_table)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            values = ", ".join(["(%s, %s, %s)"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} AS f (lead_id, campaign_id, emails_sent, event_flags) "  # noqa: S608
                f"SELECT v.column1, l.campaign_id, v.column2, v.column3 FROM (VALUES {values}) v "
                f"JOIN {lead} l ON l.id = v.column1 WHERE true ORDER BY v.column1 "
                "ON CONFLICT (lead_id) DO UPDATE SET "
                "emails_sent = f.emails_sent + excluded.emails_sent, "
                "event_flags = f.event_flags | excluded.event_flags "
                "WHERE excluded.emails_sent <> 0 OR (f.event_flags | excluded.event_flags) <> f.event_flags",
                [value for row in chunk for value in row],
            )


def _computed_sql(campaign: Campaign | None) -> tuple[str, list]:
    """(lead id, campaign id, emails sent, flags) of every lead with either, from the messages
    and events: one aggregate over both (UNION ALL, the flags OR-ed)."""
    q = connection.ops.quote_name
    msg, event, lead = (
        q(OutboundMessage._meta.db_table),
        q(FeedbackEvent._meta.db_table),
        q(Lead._meta.db_table),
    )
    cases = " ".join(f"WHEN '{kind}' THEN {FACT_BITS[flag]}" for flag, kind in FACT_FLAGS)
    bit = (
        f"CASE WHEN ev.kind = 'replied' AND ev.sentiment = 'positive' "
        f"THEN {FACT_BITS['replied'] | FACT_BITS['positive']} "
        f"ELSE CASE ev.kind {cases} ELSE 0 END END"
    )
    if connection.vendor == "postgresql":
        or_bits = "BIT_OR(x.flag)"
    else:  # SQLite has no bitwise aggregate: OR the maximum of each bit
        or_bits = " | ".join(f"MAX(x.flag & {b})" for b in FACT_BITS.values())
    where_msg = "AND m.campaign_id = %s" if campaign else ""
    where_ev = "AND el.campaign_id = %s" if campaign else ""
    sql = f"""
        SELECT a.lead_id, l.campaign_id, a.sent, a.flags FROM (
            SELECT x.lead_id, SUM(x.sent) AS sent, {or_bits} AS flags FROM (
                SELECT m.lead_id, 1 AS sent, 0 AS flag FROM {msg} m
                WHERE m.kind = '{StepKind.EMAIL}' AND m.state = '{MessageState.SENT}' {where_msg}
                UNION ALL
                SELECT ev.lead_id, 0, {bit} FROM {event} ev JOIN {lead} el ON el.id = ev.lead_id
                WHERE ev.lead_id IS NOT NULL {where_ev}
            ) x GROUP BY x.lead_id
        ) a JOIN {lead} l ON l.id = a.lead_id
        WHERE a.sent > 0 OR a.flags <> 0
    """  # noqa: S608 (table names from the models; values are parameters)
    return sql, [campaign.pk, campaign.pk] if campaign else []


def lead_facts_computed(campaign: Campaign | None = None) -> dict[int, tuple[int, int, int]]:
    """Lead id: (campaign id, emails sent, flags), computed from the messages and events of
    the campaign's leads (every lead without a campaign)."""
    sql, params = _computed_sql(campaign)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {pk: (campaign_id, int(sent), int(flags)) for pk, campaign_id, sent, flags in cursor}


def lead_facts_drift(campaign: Campaign | None = None) -> list[tuple[int, tuple, tuple]]:
    """The leads whose kept facts differ from the computed ones: (lead id, kept, computed),
    each (campaign id, emails sent, flags), or None for no row. Empty when all agree."""
    kept = LeadFacts.objects.all()
    if campaign is not None:
        kept = kept.filter(campaign=campaign)
    stored = {
        pk: (campaign_id, sent, flags)
        for pk, campaign_id, sent, flags in kept.values_list(
            "lead_id", "campaign_id", "emails_sent", "event_flags"
        )
        if sent or flags
    }
    computed = lead_facts_computed(campaign)
    return [
        (pk, stored.get(pk), computed.get(pk))
        for pk in sorted(stored.keys() | computed.keys())
        if stored.get(pk) != computed.get(pk)
    ]


def lead_facts_rebuild(campaign: Campaign | None = None) -> int:
    """Replace the kept facts of the campaign's leads (every lead's, without a campaign) with
    the computed ones, in one transaction of the caller's; returns the rows written. For facts
    kept before this existed, data written around the engine, or a drift found by
    `lead_facts_drift`."""
    kept = LeadFacts.objects.all()
    if campaign is not None:
        kept = kept.filter(campaign=campaign)
    kept.delete()
    sql, params = _computed_sql(campaign)
    table = connection.ops.quote_name(LeadFacts._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (lead_id, campaign_id, emails_sent, event_flags) {sql}",
            params,
        )
        return cursor.rowcount
