"""A campaign's CSV exports, streamed: per-lead outcomes, messages, feedback events, audit trail.

    EXPORTS                                    kind -> human label, in the order to offer them
    COLUMNS                                    kind -> the header row
    export_chunks(kind, campaign)              the CSV as an iterator of UTF-8 byte chunks
    export_write(kind, campaign, out)          the CSV written to a binary file; rows written
    export_response(kind, campaign, filename)  a StreamingHttpResponse (attachment, text/csv)
    export_filename(kind, campaign)            "<campaign-slug>-<kind>.csv"

Every cell goes through `leads.services.exports.spreadsheet_safe` (a value that would start a
formula gets a leading apostrophe); datetimes are ISO 8601 in UTC ("2026-12-02T11:00:00+00:00"),
flags are 1 or 0, empty values are empty cells. Rows come in id order, so the same database
gives the same file.

**Memory stays flat whatever the size.** Rows are read as plain tuples (raw SQL, or the SQL
the ORM compiles for a `values_list`; never model instances) from a server-side cursor on
PostgreSQL (Django's `chunked_cursor`, the one `.iterator()` uses) and from SQLite's lazy
cursor, FLUSH_ROWS at a time; each batch is written by `csv.writer` into a fresh buffer and
handed out as one chunk. On PostgreSQL a thread fetches the next batch while one is written
(at most two wait), so the server's work and ours overlap. The whole export runs in one
transaction: on PostgreSQL a cursor outside one is WITH HOLD, which makes the server
materialise the whole result before the first row comes back; inside one the rows stream,
and every query of the export reads the same snapshot. Consume one export at a time per
thread (each holds its connection's transaction until it is done or closed; closing it
half-way stops the reader and ends the transaction).

**Outcomes**: one row per lead of the campaign (every status, erased too), with the
definitions the report's funnel uses, so the two reconcile:
- emails_sent counts the lead's email messages in state sent, first_sent_at and last_sent_at
  are their earliest and latest sent_at; tasks_done, tasks_skipped, blocked_messages and
  unknown_messages count its messages in those states; blocked_reasons are the distinct
  reason codes of its blocked messages, sorted, joined with "; ";
- delivered, opened, clicked, replied, autoreplied, bounced, complained are 1 when the lead
  has at least one feedback event of kind delivered, opened, clicked, replied,
  autoresponded, bounced, complained; positive when a replied event has sentiment positive;
- unsubscribed is 1 when the lead's status is unsubscribed or an `Unsubscribe` row names
  it; unsubscribe_reason is the latest such row's reason;
- outcome is the first that applies: positive, replied, complained, bounced, unsubscribed,
  sent (an email sent), blocked (a message blocked), scheduled (enrolled), not_enrolled.
One query: the leads LEFT JOINed to per-lead aggregates built set-wise by GROUP BY subqueries
(messages by lead, events by lead, distinct blocked reason codes by lead, the latest
`Unsubscribe` row by lead), never a query per lead.

**Messages** reads only the outbox's own columns; the few steps, mailboxes and templates the
rows name are read once beforehand into dictionaries (an id not found there, which a campaign's
own rows do not produce, is read when met).

**Events** are the feedback events whose lead is one of the campaign's (`lead.campaign_id`),
matched or not to a message; unmatched events that found no lead belong to no campaign.

**Audit**: `ventures.AuditEvent` has no foreign keys (a row outlives what it describes), so
"about the campaign" is spelled out by entity, on the two indexes the table has:
- the campaign itself: entity_type "ventures.campaign" and its id (`audit_entity_idx`); this
  takes the campaign's status changes, kill switches, mode, capture link, lead policy and
  bulk lead actions, settled tasks and unknown messages, recorded, handled and escalated
  replies (all written against the campaign);
- within the campaign's venture (`audit_venture_idx`: every row about something of a campaign
  carries the campaign's venture), rows whose entity is one of the campaign's sequences, their
  steps, its routing rules, its lead policy, its import batches, its unsubscribes, its
  templates and the templates its steps use, and the mailboxes of its pool (a shared mailbox's
  rows appear in each campaign it sends for);
- rows of deleted sequences, steps and routing rules, found by the snapshot their deletion
  wrote (`before.campaign_id`, or a step's `before.sequence_id` among the campaign's
  sequences).
Rows about single leads ("leads.lead": a data export, an admin edit) are left out: they are
about a person, not the campaign, and their `entity_repr` is the address. The rows exported
name leads by id and people by identity hash only, never by address or name.
"""

from __future__ import annotations

import csv
import io
import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager, suppress
from itertools import islice
from typing import Any, BinaryIO

from django.db import DatabaseError, connection, transaction
from django.db.models import CharField, Func, IntegerField, Q
from django.db.models.functions import Cast
from django.http import StreamingHttpResponse

from leads.models import CampaignLeadPolicy, ImportBatch, Unsubscribe
from leads.services.exports import spreadsheet_safe
from outreach.facts import FACT_BITS
from outreach.models import (
    FeedbackEvent,
    Mailbox,
    OutboundMessage,
    RoutingRule,
    Sequence,
    SequenceStep,
)
from templating.models import MessageTemplate
from ventures.http import streamed_response
from ventures.models import AuditEvent, Campaign
from ventures.services import DomainError

# Rows fetched from the cursor at a time; each batch becomes one chunk of the file.
FLUSH_ROWS = 2_000

EXPORTS: dict[str, str] = {
    "outcomes": "Per-lead outcomes",
    "messages": "Messages",
    "events": "Feedback events",
    "audit": "Audit trail",
}

OUTCOME_COLUMNS = (
    "lead_id", "email", "first_name", "last_name", "company", "segment", "grade",
    "source_channel", "source_list", "source_batch_id", "utm_campaign", "utm_content", "status",
    "consent_status", "sequence", "enrollment_state", "emails_sent", "first_sent_at",
    "last_sent_at", "delivered", "opened", "clicked", "replied", "positive", "autoreplied",
    "bounced", "complained", "unsubscribed", "unsubscribe_reason", "tasks_done",
    "tasks_skipped", "blocked_messages", "blocked_reasons", "unknown_messages", "outcome",
)  # fmt: skip
MESSAGE_COLUMNS = (
    "id", "lead_id", "recipient", "sequence", "step_position", "kind", "state", "reason_code",
    "reason", "attempts", "due_at", "sent_at", "mailbox", "template", "variant_label",
    "narrative_angle", "message_id", "esp_message_id", "in_reply_to", "run_id", "settled_at",
    "settled_by",
)  # fmt: skip
EVENT_COLUMNS = (
    "id", "source", "event_id", "kind", "occurred_at", "received_at", "recipient", "lead_id",
    "message_id", "reason", "url", "subject", "reply_text", "sentiment", "objection",
    "reliable", "matched_by", "effect", "handled_at", "handled_by",
)  # fmt: skip
AUDIT_COLUMNS = (
    "id", "created_at", "actor", "action", "entity_type", "entity_id", "entity_repr",
    "venture_id", "before", "after", "reason",
)  # fmt: skip
COLUMNS: dict[str, tuple[str, ...]] = {
    "outcomes": OUTCOME_COLUMNS,
    "messages": MESSAGE_COLUMNS,
    "events": EVENT_COLUMNS,
    "audit": AUDIT_COLUMNS,
}


class UnknownExportError(DomainError):
    """An export kind that does not exist (the message names the ones that do)."""


# --- The public API ------------------------------------------------------------------------------


def export_chunks(kind: str, campaign: Campaign) -> Iterator[bytes]:
    """The CSV of `kind` for `campaign`: the header first, UTF-8, in chunks of FLUSH_ROWS
    rows. An unknown kind raises UnknownExportError at once, before anything is read."""
    return _stream(_checked(kind), campaign, _Count())


def export_write(kind: str, campaign: Campaign, out: BinaryIO) -> int:
    """Write the CSV of `kind` for `campaign` to `out`; the rows written, header excluded."""
    count = _Count()
    for chunk in _stream(_checked(kind), campaign, count):
        out.write(chunk)
    return count.rows


def export_response(
    kind: str, campaign: Campaign, filename: str | None = None, *, request=None
) -> StreamingHttpResponse:
    """The CSV of `kind` for `campaign` as a streamed download (streamed under WSGI and, given
    the request, under ASGI too: `ventures.http.streamed_response`)."""
    return streamed_response(
        export_chunks(kind, campaign), request, filename=filename or export_filename(kind, campaign)
    )


def export_filename(kind: str, campaign: Campaign) -> str:
    return f"{campaign.slug}-{_checked(kind)}.csv"


# --- Streaming -----------------------------------------------------------------------------------


class _Count:
    rows = 0


def _checked(kind: str) -> str:
    if kind not in EXPORTS:
        raise UnknownExportError(f"Unknown export {kind!r}: choose one of {', '.join(EXPORTS)}.")
    return kind


def _stream(kind: str, campaign: Campaign, count: _Count) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    safe = spreadsheet_safe
    writer.writerow(map(safe, COLUMNS[kind]))
    # The rows are closed inside the transaction: a download abandoned half-way stops its
    # reader and closes its cursor before the transaction ends.
    with (
        transaction.atomic(),
        pg_settings(_PG_SETTINGS),
        closing(_ROWS[kind](campaign)) as batches,
    ):
        for batch in batches:
            # Every cell through spreadsheet_safe; map() and writerows keep the per-cell cost
            # to the call itself (the budget is a few microseconds a row).
            writer.writerows([map(safe, row) for row in batch])
            count.rows += len(batch)
            yield _encoded(buffer)
            buffer = io.StringIO()
            writer = csv.writer(buffer)
    if buffer.tell():
        yield _encoded(buffer)


# For the export's transaction only: plans for all the rows, not the first tenth a cursor is
# planned for by default; the outcomes' sorts and hashes over a million messages in memory,
# not spilled to disk at the default 4 MB; no JIT compiling (half a second for the outcomes
# query, and it saves nothing).
_PG_SETTINGS = {"cursor_tuple_fraction": "1", "work_mem": "64MB", "jit": "off"}
# For the outcomes query: its subqueries are aggregates, which no index serves, so a nested
# loop re-runs one per lead. The planner chooses that when it believes the leads are few, as
# for a campaign imported since the last ANALYZE (20 s for 6,000 leads; quadratic). Hash and
# merge joins are right at any size for a query that reads every lead of the campaign.
_PG_OUTCOMES = {"enable_nestloop": "off"}


@contextmanager
def pg_settings(values: dict[str, str]) -> Iterator[None]:
    """PostgreSQL planner settings for the transaction (set_config(..., true), as SET LOCAL),
    put back as they were when the block ends, so a caller's own transaction around the
    export keeps its settings. On a database error they are left to the rollback, which
    undoes them anyway. Nothing on SQLite."""
    if connection.vendor != "postgresql":
        yield
        return
    names = list(values)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(['current_setting(%s)'] * len(names))}", names)
        before = dict(zip(names, cursor.fetchone(), strict=True))
        _set_config(cursor, values)
    failed = False
    try:
        yield
    except DatabaseError:
        failed = True
        raise
    finally:
        if not failed:
            with connection.cursor() as cursor:
                _set_config(cursor, before)


def _set_config(cursor, values: dict[str, str]) -> None:
    calls = ", ".join(["set_config(%s, %s, true)"] * len(values))
    cursor.execute(f"SELECT {calls}", [part for item in values.items() for part in item])


def _encoded(buffer: io.StringIO) -> bytes:
    # A lone surrogate (SQLite could hold one) must not end a download half-way.
    return buffer.getvalue().encode("utf-8", errors="replace")


Batches = Iterator[list[tuple]]


def _fetched(sql: str, params: Iterable[Any]) -> Batches:
    """The rows of a query, FLUSH_ROWS at a time, from a server-side cursor on PostgreSQL
    (read a batch ahead, `_ahead`) and SQLite's lazy cursor."""
    cursor = connection.chunked_cursor()
    try:
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            yield from _ahead(cursor.cursor.fetchmany)
        else:
            while batch := cursor.fetchmany(FLUSH_ROWS):
                yield batch
    finally:
        cursor.close()


def _ahead(fetch: Callable[[int], list[tuple]]) -> Batches:
    """Batches that a thread fetches while the caller writes the one before: half of an
    export's time is the server working out the next FETCH, which the thread waits for
    without the GIL. At most two batches wait, so memory stays as flat. psycopg connections
    may be shared by threads (they lock); a query the caller runs meanwhile waits for the
    FETCH in flight. The thread is stopped and joined before the cursor closes, however the
    caller stops."""
    ready: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def run() -> None:
        try:
            while not stop.is_set():
                batch = fetch(FLUSH_ROWS)
                ready.put(batch)
                if not batch:
                    return
        except BaseException as exc:  # handed to the caller, raised there
            ready.put(exc)

    thread = threading.Thread(target=run, name="export-fetch", daemon=True)
    thread.start()
    try:
        while True:
            batch = ready.get()
            if isinstance(batch, BaseException):
                with connection.wrap_database_errors:
                    raise batch
            if not batch:
                return
            yield batch
    finally:
        stop.set()
        while thread.is_alive():
            with suppress(queue.Empty):
                ready.get(timeout=0.05)
        thread.join()


# A datetime column as Python's `isoformat()` of it in UTC, written by the database: parsing
# timestamps in Python (Django's psycopg loader is pure Python) cost more than the rest of a
# row. PostgreSQL's session zone is UTC (Django sets it); SQLite holds the UTC text Django
# wrote with str(datetime), microseconds only when there are some, just as isoformat does.
_ISO_SQL = {
    "postgresql": (
        "CASE WHEN to_char({0}, 'US') = '000000'"
        " THEN to_char({0} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"')"
        " ELSE to_char({0} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"') END"
    ),
    "sqlite": "replace({0}, ' ', 'T') || '+00:00'",
}


def _iso_sql(column: str) -> str:
    return _ISO_SQL[connection.vendor].format(column)


class IsoUtc(Func):
    """`_iso_sql` of a datetime field, for `values_list`."""

    output_field = CharField()

    def as_sql(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        template = _ISO_SQL[connection.vendor]
        return template.format(sql), list(params) * template.count("{0}")


def _values(queryset, fields: Iterable[str], datetimes: Iterable[str]) -> Batches:
    """`values_list(*fields)` in id order, with `datetimes` as ISO text (IsoUtc), run as the
    ORM compiles it but read as plain tuples in batches (no per-row work of the ORM's; the
    columns need no conversion: text, numbers, ISO text)."""
    datetimes = set(datetimes)
    iso = {f"{name}_iso": IsoUtc(name) for name in datetimes}
    names = [f"{name}_iso" if name in datetimes else name for name in fields]
    query = queryset.annotate(**iso).order_by("id").values_list(*names).query
    return _fetched(*query.sql_with_params())


# --- Outcomes ------------------------------------------------------------------------------------

# Per-lead aggregates of the campaign's messages (a GROUP BY) and the leads' kept facts
# (`outreach.facts`: the kinds of events seen, as bits, what the report's funnel reads), joined
# to its leads; the flags, counts and the outcome are worked out by the query, so a row is only
# escaped here.
_OUTCOMES_SQL = """
SELECT l.id, l.email, l.first_name, l.last_name, l.company, seg.name, l.grade,
    l.source_channel, l.source_list, l.source_batch_id, l.utm_campaign, l.utm_content,
    l.status, l.consent_status, sq.slug, e.state,
    COALESCE(m.emails_sent, 0), m.first_sent_at, m.last_sent_at,
    COALESCE(f.delivered, 0), COALESCE(f.opened, 0), COALESCE(f.clicked, 0),
    COALESCE(f.replied, 0), COALESCE(f.positive, 0), COALESCE(f.autoreplied, 0),
    COALESCE(f.bounced, 0), COALESCE(f.complained, 0),
    CASE WHEN l.status = 'unsubscribed' OR u.lead_id IS NOT NULL THEN 1 ELSE 0 END, u.reason,
    COALESCE(m.tasks_done, 0), COALESCE(m.tasks_skipped, 0), COALESCE(m.blocked, 0),
    m.blocked_reasons, COALESCE(m.unknown, 0),
    CASE
        WHEN f.positive = 1 THEN 'positive'
        WHEN f.replied = 1 THEN 'replied'
        WHEN f.complained = 1 THEN 'complained'
        WHEN f.bounced = 1 THEN 'bounced'
        WHEN l.status = 'unsubscribed' OR u.lead_id IS NOT NULL THEN 'unsubscribed'
        WHEN m.emails_sent > 0 THEN 'sent'
        WHEN m.blocked > 0 THEN 'blocked'
        WHEN e.id IS NOT NULL THEN 'scheduled'
        ELSE 'not_enrolled'
    END
FROM leads_lead l
LEFT JOIN ventures_icpsegment seg ON seg.id = l.segment_id
LEFT JOIN outreach_enrollment e ON e.lead_id = l.id
LEFT JOIN outreach_sequence sq ON sq.id = e.sequence_id
LEFT JOIN (
    SELECT lead_id,
        SUM(CASE WHEN kind = 'email' AND state = 'sent' THEN 1 ELSE 0 END) AS emails_sent,
        {first_sent} AS first_sent_at,
        {last_sent} AS last_sent_at,
        SUM(CASE WHEN state = 'task_done' THEN 1 ELSE 0 END) AS tasks_done,
        SUM(CASE WHEN state = 'task_skipped' THEN 1 ELSE 0 END) AS tasks_skipped,
        SUM(CASE WHEN state = 'blocked' THEN 1 ELSE 0 END) AS blocked,
        {blocked_reasons} AS blocked_reasons,
        SUM(CASE WHEN state = 'unknown' THEN 1 ELSE 0 END) AS unknown
    FROM outreach_outboundmessage WHERE campaign_id = %s GROUP BY lead_id
) m ON m.lead_id = l.id
LEFT JOIN (
    SELECT lead_id, {fact_columns}
    FROM outreach_leadfacts WHERE campaign_id = %s
) f ON f.lead_id = l.id
LEFT JOIN (
    SELECT lead_id, reason FROM (
        SELECT ur.lead_id, ur.reason, ROW_NUMBER() OVER (
            PARTITION BY ur.lead_id ORDER BY ur.created_at DESC, ur.id DESC) AS n
        FROM leads_unsubscribe ur JOIN leads_lead ul ON ul.id = ur.lead_id
        WHERE ul.campaign_id = %s
    ) latest WHERE n = 1
) u ON u.lead_id = l.id
WHERE l.campaign_id = %s
ORDER BY l.id
"""
# The distinct reason codes of a lead's blocked messages, sorted, "; " between them.
# SQLite's group_concat takes no separator with DISTINCT and sorts nothing: its list (codes
# are identifiers, no commas) is sorted and joined here.
_BLOCKED_REASONS = {
    "postgresql": "string_agg(DISTINCT reason_code, '; ' ORDER BY reason_code)"
    " FILTER (WHERE state = 'blocked' AND reason_code <> '')",
    "sqlite": "group_concat(DISTINCT CASE WHEN state = 'blocked' AND reason_code <> ''"
    " THEN reason_code END)",
}
_REASONS_AT = OUTCOME_COLUMNS.index("blocked_reasons")


def _outcome_rows(campaign: Campaign) -> Batches:
    sent_at = "CASE WHEN kind = 'email' AND state = 'sent' THEN sent_at END"
    sql = _OUTCOMES_SQL.format(
        fact_columns=", ".join(
            f"CASE WHEN (event_flags & {bit}) <> 0 THEN 1 ELSE 0 END AS {flag}"
            for flag, bit in FACT_BITS.items()
        ),
        blocked_reasons=_BLOCKED_REASONS[connection.vendor],
        first_sent=_iso_sql(f"MIN({sent_at})"),
        last_sent=_iso_sql(f"MAX({sent_at})"),
    )
    pk = campaign.pk
    if connection.vendor == "postgresql":
        with pg_settings(_PG_OUTCOMES):
            yield from _fetched(sql, [pk, pk, pk, pk])
        return
    batches = _fetched(sql, [pk, pk, pk, pk])
    at = _REASONS_AT
    for batch in batches:
        yield [
            (*row[:at], "; ".join(sorted(row[at].split(","))), *row[at + 1 :]) if row[at] else row
            for row in batch
        ]


# --- Messages ------------------------------------------------------------------------------------

_MESSAGE_FIELDS = (
    "id", "lead_id", "recipient", "step_id", "kind", "state", "reason_code", "reason",
    "attempts", "due_at", "sent_at", "mailbox_id", "template_id", "message_id",
    "esp_message_id", "in_reply_to", "run_id", "settled_at", "settled_by",
)  # fmt: skip


class _Lookup(dict):
    """Ids to the few values a message row shows of a small table, read once for the
    campaign; an id not read beforehand is read when it is met."""

    def __init__(self, rows: Iterable[tuple], load: Callable[[int], tuple | None], width: int):
        super().__init__((row[0], row[1:]) for row in rows)
        self.load, self.empty = load, ("",) * width

    def __missing__(self, key):
        if key is None:
            return self.empty
        found = self.load(key)
        value = self[key] = found or self.empty
        return value


def _message_rows(campaign: Campaign) -> Batches:
    step_fields = ("pk", "sequence__slug", "position")
    steps = _Lookup(
        SequenceStep.objects.filter(sequence__campaign=campaign).values_list(*step_fields),
        lambda pk: SequenceStep.objects.filter(pk=pk).values_list(*step_fields[1:]).first(),
        2,
    )
    mailboxes = _Lookup(
        Mailbox.objects.filter(venture_id=campaign.venture_id).values_list("pk", "from_email"),
        lambda pk: Mailbox.objects.filter(pk=pk).values_list("from_email").first(),
        1,
    )
    template_fields = ("pk", "name", "variant_label", "narrative_angle")
    templates = _Lookup(
        MessageTemplate.objects.filter(venture_id=campaign.venture_id).values_list(
            *template_fields
        ),
        lambda pk: MessageTemplate.objects.filter(pk=pk).values_list(*template_fields[1:]).first(),
        3,
    )
    batches = _values(
        OutboundMessage.objects.filter(campaign=campaign),
        _MESSAGE_FIELDS,
        ("due_at", "sent_at", "settled_at"),
    )
    for batch in batches:
        yield [
            (pk, lead, recipient, *steps[step], kind, state, code, reason, attempts, due, sent,
             *mailboxes[mailbox], *templates[template], message_id, esp_id, in_reply_to, run,
             settled, settled_by)
            for (pk, lead, recipient, step, kind, state, code, reason, attempts, due, sent,
                 mailbox, template, message_id, esp_id, in_reply_to, run, settled,
                 settled_by) in batch
        ]  # fmt: skip


# --- Events --------------------------------------------------------------------------------------


def _event_rows(campaign: Campaign) -> Batches:
    return _values(
        FeedbackEvent.objects.filter(lead__campaign=campaign).annotate(
            reliable_flag=Cast("reliable", output_field=IntegerField())
        ),
        ("reliable_flag" if c == "reliable" else c for c in EVENT_COLUMNS),
        ("occurred_at", "received_at", "handled_at"),
    )


# --- Audit ---------------------------------------------------------------------------------------


def _as_text(queryset) -> Any:
    """The ids of `queryset` as text, for a subquery on AuditEvent.entity_id."""
    return queryset.annotate(text_id=Cast("pk", output_field=CharField())).values("text_id")


def audit_filter(campaign: Campaign) -> Q:
    """The audit rows about `campaign` and what belongs to it (the module docstring says
    which, and why these are the indexed ones)."""
    sequences = [str(pk) for pk in Sequence.objects.filter(campaign=campaign).values_list(
        "pk", flat=True
    )]  # fmt: skip
    steps = SequenceStep.objects.filter(sequence__campaign=campaign)
    step_templates = MessageTemplate.objects.filter(sequence_steps__in=steps)
    templates = MessageTemplate.objects.filter(Q(campaign=campaign) | Q(pk__in=step_templates))
    children = {
        "outreach.sequence": sequences,
        "outreach.sequencestep": _as_text(steps),
        "outreach.routingrule": _as_text(RoutingRule.objects.filter(campaign=campaign)),
        "leads.campaignleadpolicy": _as_text(CampaignLeadPolicy.objects.filter(campaign=campaign)),
        "leads.importbatch": _as_text(ImportBatch.objects.filter(campaign=campaign)),
        "leads.unsubscribe": _as_text(Unsubscribe.objects.filter(campaign=campaign)),
        "templating.messagetemplate": _as_text(templates),
        "outreach.mailbox": _as_text(Mailbox.objects.filter(campaigns=campaign)),
    }
    belongs = Q()
    for entity_type, ids in children.items():
        belongs |= Q(entity_type=entity_type, entity_id__in=ids)
    deleted = Q(
        entity_type__in=["outreach.sequence", "outreach.routingrule"],
        before__campaign_id=campaign.pk,
    ) | Q(entity_type="outreach.sequencestep", before__sequence_id__in=[int(s) for s in sequences])
    own = Q(entity_type=campaign._meta.label_lower, entity_id=str(campaign.pk))
    return own | (Q(venture_id=campaign.venture_id) & (belongs | deleted))


def _json(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _audit_rows(campaign: Campaign) -> Batches:
    """Through the ORM's own iterator: its JSON fields are read the same on both databases
    (written here with sorted keys), and a campaign's trail is short next to its outbox."""
    names = ["created_iso" if c == "created_at" else c for c in AUDIT_COLUMNS]
    rows = (
        AuditEvent.objects.filter(audit_filter(campaign))
        .annotate(created_iso=IsoUtc("created_at"))
        .order_by("id")
        .values_list(*names)
        .iterator(chunk_size=FLUSH_ROWS)
    )
    while batch := list(islice(rows, FLUSH_ROWS)):
        yield [
            (pk, at, actor, action, etype, eid, erepr, venture, _json(before), _json(after), why)
            for pk, at, actor, action, etype, eid, erepr, venture, before, after, why in batch
        ]


_ROWS: dict[str, Callable[[Campaign], Batches]] = {
    "outcomes": _outcome_rows,
    "messages": _message_rows,
    "events": _event_rows,
    "audit": _audit_rows,
}
