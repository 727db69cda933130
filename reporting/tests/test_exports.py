"""The campaign's CSV exports: every outcome column of known leads, the messages, events and
audit rows, formula escaping, streaming in chunks, an empty campaign, the download."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
import time_machine
from django.http import StreamingHttpResponse

from leads.models import ConsentStatus, Lead, LeadStatus
from leads.services.privacy import lead_data_export
from leads.unsubscribes import lead_unsubscribe
from outreach.dispatch import tick
from outreach.feedback import Incoming, feedback_record, reply_record
from outreach.models import OutboundMessage, Sequence, SequenceStep, StepKind
from outreach.services import manual_task_settle
from outreach.tests.outbox import NOON, running_campaign
from reporting.exports import (
    COLUMNS,
    EXPORTS,
    FLUSH_ROWS,
    OUTCOME_COLUMNS,
    UnknownExportError,
    export_chunks,
    export_filename,
    export_response,
    export_write,
)
from tests.factories import (
    CampaignFactory,
    IcpSegmentFactory,
    LeadFactory,
    MessageTemplateFactory,
    SuppressionEntryFactory,
)
from ventures.models import AuditEvent
from ventures.services import audit_record, campaign_transition, snapshot

pytestmark = pytest.mark.django_db

EVIL = '=HYPERLINK("http://evil.example","click")'
AT_NOON = NOON.isoformat()  # "2026-12-02T11:00:00+00:00"


def rows_of(kind: str, campaign) -> list[dict[str, str]]:
    data = b"".join(export_chunks(kind, campaign)).decode("utf-8")
    reader = csv.reader(io.StringIO(data))
    header = next(reader)
    assert tuple(header) == COLUMNS[kind]
    return [dict(zip(header, row, strict=True)) for row in reader]


def by_lead(rows: list[dict[str, str]]) -> dict[int, dict[str, str]]:
    return {int(row["lead_id"]): row for row in rows}


def sequence_of(campaign) -> Sequence:
    """Email, a call task at once, a follow-up email three days later."""
    sequence = Sequence.objects.create(campaign=campaign, slug="main", name="Main", is_default=True)
    opener = SequenceStep.objects.create(sequence=sequence, position=1, kind=StepKind.EMAIL)
    opener.templates.add(
        MessageTemplateFactory(
            campaign=campaign, name="Opener", narrative_angle="cost of reporting", variant_label="A"
        )
    )
    call = SequenceStep.objects.create(sequence=sequence, position=2, kind=StepKind.CALL)
    call.templates.add(MessageTemplateFactory(campaign=campaign, name="Call script"))
    follow = SequenceStep.objects.create(
        sequence=sequence, position=3, kind=StepKind.EMAIL, delay_days=3
    )
    follow.templates.add(MessageTemplateFactory(campaign=campaign, name="Follow-up"))
    return sequence


def esp(message: OutboundMessage, kind: str, n: int, **more) -> Incoming:
    return Incoming(
        source="sparkpost", kind=kind, event_id=f"ev-{n}", occurred_at=NOON + dt.timedelta(minutes=n),
        recipient=message.recipient, esp_message_id=message.esp_message_id, **more,
    )  # fmt: skip


@pytest.fixture
def world():
    """A running campaign whose leads each end one known way."""
    with time_machine.travel(NOON, tick=False):
        campaign = running_campaign()
        sequence_of(campaign)
        segment = IcpSegmentFactory(venture=campaign.venture, name="Revenue leaders")
        leads = {
            "positive": LeadFactory(
                campaign=campaign, first_name="Pia", last_name="Positive", company="Acme",
                segment=segment, grade="A", source_list="webinar", utm_campaign="q4",
                utm_content="hero",
            ),
            "bounced": LeadFactory(campaign=campaign, first_name="Bo"),
            "unsubscribed": LeadFactory(campaign=campaign, first_name="Una"),
            "dnc": LeadFactory(campaign=campaign, consent_status=ConsentStatus.DNC),
            "blocked": LeadFactory(campaign=campaign, first_name="Blake"),
            "never": LeadFactory(campaign=campaign, status=LeadStatus.SUPPRESSED),
            "evil": LeadFactory(campaign=campaign, first_name=EVIL, company="@SUM(A1)"),
            "tasker": LeadFactory(campaign=campaign, first_name="Tess"),
        }  # fmt: skip
        SuppressionEntryFactory(value=leads["blocked"].email, venture=campaign.venture)
        tick()
    with time_machine.travel(NOON + dt.timedelta(minutes=1), tick=False):
        tick()  # the call tasks open
    first = {
        name: OutboundMessage.objects.filter(lead=lead, step__position=1).first()
        for name, lead in leads.items()
    }
    for message in first.values():
        if message is not None and message.state == "sent":
            message.esp_message_id = f"sp-{message.pk}"
            message.save(update_fields=["esp_message_id"])
    with time_machine.travel(NOON + dt.timedelta(hours=1), tick=False):
        for name, done in (("tasker", True), ("evil", False)):
            task = OutboundMessage.objects.get(lead=leads[name], step__position=2)
            manual_task_settle(message=task, done=done, actor="op-otto", note="called")
        positive = first["positive"]
        feedback_record(esp(positive, "delivered", 1))
        feedback_record(esp(positive, "opened", 2))
        feedback_record(esp(positive, "clicked", 3, url="https://venture.example/demo"))
        reply_record(message=positive, sentiment="positive", actor="op-otto", notes="call Tue")
        feedback_record(esp(first["bounced"], "bounced", 4, reason="550 5.1.1 no such user"))
        feedback_record(esp(first["unsubscribed"], "unsubscribed", 5))
        lead_unsubscribe(
            lead=leads["unsubscribed"], source="link", reason="too_many", actor="visitor"
        )
        feedback_record(esp(first["evil"], "delivered", 6))
        # A worker died handing the tasker's follow-up over (what recovery leaves).
        OutboundMessage.objects.filter(lead=leads["tasker"], step__position=3).update(
            state="unknown", reason_code="worker_stopped", reason="the worker stopped"
        )
        # Noise: an event nobody matched, another campaign's lead and its event.
        feedback_record(Incoming(source="sparkpost", kind="delivered", event_id="stray"))
        other = CampaignFactory(venture=campaign.venture)
        stranger = LeadFactory(campaign=other)
        feedback_record(
            Incoming(source="manual", kind="unsubscribed", event_id="x", lead_id=stranger.pk)
        )
    for lead in leads.values():
        lead.refresh_from_db()
    return {"campaign": campaign, "leads": leads, "first": first, "other": other}


def test_the_four_exports_are_offered_with_labels():
    assert list(EXPORTS) == ["outcomes", "messages", "events", "audit"]
    assert EXPORTS["outcomes"] == "Per-lead outcomes"
    assert all(label for label in EXPORTS.values())


def test_a_positive_replier_has_every_outcome_column_right(world):
    lead, first = world["leads"]["positive"], world["first"]["positive"]
    row = by_lead(rows_of("outcomes", world["campaign"]))[lead.pk]
    assert row == {
        "lead_id": str(lead.pk), "email": lead.email, "first_name": "Pia",
        "last_name": "Positive", "company": "Acme", "segment": "Revenue leaders", "grade": "A",
        "source_channel": "import", "source_list": "webinar", "source_batch_id": "",
        "utm_campaign": "q4", "utm_content": "hero", "status": "replied",
        "consent_status": "unknown", "sequence": "main", "enrollment_state": "stopped",
        "emails_sent": "1", "first_sent_at": AT_NOON, "last_sent_at": AT_NOON,
        "delivered": "1", "opened": "1", "clicked": "1", "replied": "1", "positive": "1",
        "autoreplied": "0", "bounced": "0", "complained": "0", "unsubscribed": "0",
        "unsubscribe_reason": "", "tasks_done": "0", "tasks_skipped": "0",
        # The reply stopped the sequence: the open call task was blocked.
        "blocked_messages": "1", "blocked_reasons": "replied", "unknown_messages": "0",
        "outcome": "positive",
    }  # fmt: skip
    assert first.sent_at == NOON


def test_a_bounced_lead_is_bounced_and_its_sequence_stopped(world):
    lead = world["leads"]["bounced"]
    row = by_lead(rows_of("outcomes", world["campaign"]))[lead.pk]
    assert (row["status"], row["enrollment_state"]) == ("bounced", "stopped")
    assert (row["emails_sent"], row["delivered"], row["bounced"], row["replied"]) == (
        "1", "0", "1", "0",
    )  # fmt: skip
    assert (row["blocked_messages"], row["blocked_reasons"]) == ("1", "bounced")
    assert row["outcome"] == "bounced"


def test_an_unsubscribed_lead_shows_its_reason(world):
    lead = world["leads"]["unsubscribed"]
    row = by_lead(rows_of("outcomes", world["campaign"]))[lead.pk]
    assert (row["status"], row["unsubscribed"], row["unsubscribe_reason"]) == (
        "unsubscribed", "1", "too_many",
    )  # fmt: skip
    assert (row["emails_sent"], row["outcome"]) == ("1", "unsubscribed")


def test_a_dnc_lead_is_blocked_and_nothing_was_sent(world):
    lead = world["leads"]["dnc"]
    row = by_lead(rows_of("outcomes", world["campaign"]))[lead.pk]
    assert (row["consent_status"], row["emails_sent"], row["first_sent_at"]) == ("dnc", "0", "")
    assert (row["blocked_messages"], row["blocked_reasons"], row["outcome"]) == (
        "1", "dnc", "blocked",
    )  # fmt: skip
    assert row["sequence"] == "main"


def test_a_suppressed_address_is_blocked_with_its_reason(world):
    lead = world["leads"]["blocked"]
    row = by_lead(rows_of("outcomes", world["campaign"]))[lead.pk]
    assert (row["blocked_messages"], row["blocked_reasons"], row["outcome"]) == (
        "1", "suppressed", "blocked",
    )  # fmt: skip
    assert (row["delivered"], row["unsubscribed"], row["tasks_done"]) == ("0", "0", "0")


def test_a_lead_never_enrolled_has_empty_sequence_and_zero_counts(world):
    lead = world["leads"]["never"]
    row = by_lead(rows_of("outcomes", world["campaign"]))[lead.pk]
    assert (row["status"], row["sequence"], row["enrollment_state"]) == ("suppressed", "", "")
    counts = [row[c] for c in OUTCOME_COLUMNS[16:] if c not in ("first_sent_at", "last_sent_at",
              "unsubscribe_reason", "blocked_reasons", "outcome")]  # fmt: skip
    assert set(counts) == {"0"}
    assert (row["first_sent_at"], row["blocked_reasons"], row["outcome"]) == (
        "", "", "not_enrolled",
    )  # fmt: skip


def test_tasks_done_skipped_and_unknown_messages_are_counted(world):
    rows = by_lead(rows_of("outcomes", world["campaign"]))
    tasker, evil = rows[world["leads"]["tasker"].pk], rows[world["leads"]["evil"].pk]
    assert (tasker["tasks_done"], tasker["tasks_skipped"], tasker["unknown_messages"]) == (
        "1", "0", "1",
    )  # fmt: skip
    assert (evil["tasks_done"], evil["tasks_skipped"]) == ("0", "1")
    assert (tasker["outcome"], tasker["enrollment_state"]) == ("sent", "active")


def test_outcomes_have_one_row_per_lead_of_the_campaign_in_id_order(world):
    rows = rows_of("outcomes", world["campaign"])
    expected = list(
        Lead.objects.filter(campaign=world["campaign"]).order_by("pk").values_list("pk", flat=True)
    )
    assert [int(r["lead_id"]) for r in rows] == expected
    assert len(expected) == len(world["leads"])


def test_a_cell_that_would_start_a_formula_gets_an_apostrophe(world):
    lead = world["leads"]["evil"]
    row = by_lead(rows_of("outcomes", world["campaign"]))[lead.pk]
    assert row["first_name"] == "'" + EVIL
    assert row["company"] == "'@SUM(A1)"
    subjects = OutboundMessage.objects.filter(lead=lead).values_list("subject", flat=True)
    assert any(s.startswith("Quick question, =HYPERLINK") for s in subjects)


def test_messages_export_has_a_row_per_message_with_its_step_mailbox_and_template(world):
    campaign, first = world["campaign"], world["first"]["positive"]
    rows = rows_of("messages", campaign)
    assert [int(r["id"]) for r in rows] == list(
        OutboundMessage.objects.filter(campaign=campaign)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    first.refresh_from_db()
    row = next(r for r in rows if int(r["id"]) == first.pk)
    assert row == {
        "id": str(first.pk), "lead_id": str(first.lead_id), "recipient": first.recipient,
        "sequence": "main", "step_position": "1", "kind": "email", "state": "sent",
        "reason_code": "", "reason": first.reason, "attempts": "1", "due_at": AT_NOON,
        "sent_at": AT_NOON, "mailbox": first.mailbox.from_email if first.mailbox else "",
        "template": "Opener", "variant_label": "A", "narrative_angle": "cost of reporting",
        "message_id": first.message_id, "esp_message_id": f"sp-{first.pk}",
        "in_reply_to": "", "run_id": str(first.run_id), "settled_at": "", "settled_by": "",
    }  # fmt: skip
    assert first.message_id and first.run_id and first.reason.endswith(".eml")  # proof mode
    done = next(
        r for r in rows
        if r["lead_id"] == str(world["leads"]["tasker"].pk) and r["step_position"] == "2"
    )  # fmt: skip
    assert (done["kind"], done["state"], done["settled_by"], done["template"]) == (
        "call", "task_done", "op-otto", "Call script",
    )  # fmt: skip
    assert done["settled_at"] == (NOON + dt.timedelta(hours=1)).isoformat()
    blocked = next(r for r in rows if r["lead_id"] == str(world["leads"]["dnc"].pk))
    assert (blocked["state"], blocked["reason_code"], blocked["sent_at"]) == ("blocked", "dnc", "")


def test_events_export_has_the_campaign_leads_events_only(world):
    campaign, positive = world["campaign"], world["first"]["positive"]
    rows = rows_of("events", campaign)
    assert {r["lead_id"] for r in rows} <= {str(lead.pk) for lead in world["leads"].values()}
    assert "stray" not in {r["event_id"] for r in rows}
    assert "x" not in {r["event_id"] for r in rows}
    mine = [r for r in rows if r["lead_id"] == str(positive.lead_id)]
    assert [r["kind"] for r in mine] == ["delivered", "opened", "clicked", "replied"]
    assert {r["message_id"] for r in mine} == {str(positive.pk)}
    opened, clicked, replied = mine[1], mine[2], mine[3]
    assert (opened["reliable"], clicked["reliable"]) == ("0", "1")
    assert opened["occurred_at"] == (NOON + dt.timedelta(minutes=2)).isoformat()
    assert opened["received_at"] == (NOON + dt.timedelta(hours=1)).isoformat()
    assert (opened["source"], opened["event_id"], opened["matched_by"]) == (
        "sparkpost", "ev-2", "esp_message_id",
    )  # fmt: skip
    assert clicked["url"] == "https://venture.example/demo"
    assert (replied["source"], replied["sentiment"], replied["matched_by"]) == (
        "manual", "positive", "thread",
    )  # fmt: skip
    bounce = next(r for r in rows if r["kind"] == "bounced")
    assert bounce["reason"] == "550 5.1.1 no such user"
    assert bounce["lead_id"] == str(world["leads"]["bounced"].pk)
    assert "suppressed" in bounce["effect"]
    assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)


def test_audit_export_has_the_campaigns_rows_and_nothing_else(world):
    campaign, other = world["campaign"], world["other"]
    campaign_transition(campaign=campaign, action="pause", actor="op-otto", reason="holiday")
    campaign_transition(campaign=other, action="start", actor="op-otto")
    step = SequenceStep.objects.create(
        sequence=campaign.sequences.get(), position=9, kind=StepKind.CALL
    )
    audit_record(actor="op-otto", action="step.delete", entity=step, before=snapshot(step))
    step.delete()
    MessageTemplateFactory(campaign=other, name="Not ours")
    lead_data_export(lead=world["leads"]["positive"], actor="op-otto")
    rows = rows_of("audit", campaign)
    actions = [r["action"] for r in rows]
    assert "campaign.pause" in actions
    assert actions.count("template.create") == 3  # the campaign's three templates
    assert {"outreach.task_done", "outreach.task_skipped", "feedback.reply_recorded"} <= set(
        actions
    )
    assert "step.delete" in actions
    unsubscribe = next(r for r in rows if r["entity_type"] == "leads.unsubscribe")
    assert unsubscribe["venture_id"] == str(campaign.venture_id)
    assert "campaign.start" not in actions and "leads.data_export" not in actions
    assert all(r["entity_type"] != "leads.lead" for r in rows)
    assert "Not ours" not in {r["entity_repr"] for r in rows}
    paused = next(r for r in rows if r["action"] == "campaign.pause")
    event = AuditEvent.objects.get(pk=paused["id"])
    assert paused["after"] == '{"status":"paused"}'
    assert (paused["actor"], paused["reason"], paused["entity_id"]) == (
        "op-otto", "holiday", str(campaign.pk),
    )  # fmt: skip
    assert paused["created_at"] == event.created_at.astimezone(dt.UTC).isoformat()
    assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)


def test_a_campaign_without_leads_exports_the_header_only(campaign):
    for kind in EXPORTS:
        data = b"".join(export_chunks(kind, campaign))
        assert data.decode("utf-8") == ",".join(COLUMNS[kind]) + "\r\n"
        assert export_write(kind, campaign, io.BytesIO()) == 0


def test_a_large_campaign_streams_in_more_than_one_chunk(campaign):
    count = FLUSH_ROWS + 500
    Lead.objects.bulk_create(
        Lead(campaign=campaign, venture=campaign.venture, email=f"p{n}@bulk.example",
             email_key=f"p{n}@bulk.example", first_name=f"P{n}")
        for n in range(count)
    )  # fmt: skip
    chunks = list(export_chunks("outcomes", campaign))
    assert len(chunks) >= 2
    assert all(isinstance(chunk, bytes) and chunk for chunk in chunks)
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode("utf-8"))))
    assert len(rows) == count + 1
    assert {r[-1] for r in rows[1:]} == {"not_enrolled"}
    out = io.BytesIO()
    assert export_write("outcomes", campaign, out) == count
    assert out.getvalue() == b"".join(chunks)


def test_the_download_is_a_streamed_csv_attachment(world):
    campaign = world["campaign"]
    response = export_response("messages", campaign)
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="{campaign.slug}-messages.csv"'
    )
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith(",".join(COLUMNS["messages"]) + "\r\n")
    assert body.count("\r\n") == OutboundMessage.objects.filter(campaign=campaign).count() + 1
    named = export_response("audit", campaign, filename="trail.csv")
    assert named["Content-Disposition"] == 'attachment; filename="trail.csv"'


def test_under_asgi_the_download_streams_chunk_by_chunk_not_read_whole_first(world):
    """Django reads a synchronous iterator whole before an ASGI server sends a byte (and
    warns): the export gives an ASGI request an asynchronous one, whose chunks are read in the
    request's thread, with its connection."""
    import warnings

    from asgiref.sync import async_to_sync
    from django.test import AsyncRequestFactory

    campaign = world["campaign"]
    response = export_response("messages", campaign, request=AsyncRequestFactory().get("/"))
    assert response.is_async

    async def read() -> list[bytes]:
        return [chunk async for chunk in response]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "must consume synchronous iterators" would raise
        chunks = async_to_sync(read)()
    assert b"".join(chunks) == b"".join(export_chunks("messages", campaign))
    assert export_response("messages", campaign).is_async is False  # WSGI: as it was


def test_the_filename_names_the_campaign_and_the_kind(campaign):
    assert export_filename("outcomes", campaign) == f"{campaign.slug}-outcomes.csv"


def test_an_unknown_export_is_refused_with_the_kinds_that_exist(campaign):
    with pytest.raises(UnknownExportError, match="outcomes, messages, events, audit"):
        export_chunks("leads", campaign)
    with pytest.raises(UnknownExportError):
        export_response("everything", campaign)


def test_a_download_abandoned_half_way_leaves_no_reader_and_the_connection_usable(campaign):
    import threading

    Lead.objects.bulk_create(
        Lead(campaign=campaign, venture=campaign.venture, email=f"q{n}@bulk.example",
             email_key=f"q{n}@bulk.example")
        for n in range(FLUSH_ROWS * 3)
    )  # fmt: skip
    chunks = export_chunks("outcomes", campaign)
    assert next(chunks).startswith(b"lead_id,email,")
    chunks.close()  # the client went away
    assert not [t for t in threading.enumerate() if t.name == "export-fetch"]
    assert Lead.objects.filter(campaign=campaign).count() == FLUSH_ROWS * 3
    assert export_write("outcomes", campaign, io.BytesIO()) == FLUSH_ROWS * 3


@pytest.mark.postgres
def test_an_export_in_a_callers_transaction_leaves_its_planner_settings_as_they_were(world):
    from django.db import connection

    names = ("enable_nestloop", "work_mem", "jit", "cursor_tuple_fraction")

    def settings_now():
        with connection.cursor() as cursor:
            cursor.execute("SELECT " + ", ".join(["current_setting(%s)"] * len(names)), names)
            return cursor.fetchone()

    before = settings_now()
    for kind in EXPORTS:  # the test runs in a transaction, as a caller's export would
        export_write(kind, world["campaign"], io.BytesIO())
        assert settings_now() == before
    chunks = export_chunks("outcomes", world["campaign"])
    next(chunks)
    chunks.close()
    assert settings_now() == before
