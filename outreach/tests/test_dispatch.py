"""The tick in one process: enrolment, every guardrail in order, caps, pacing, threading,
manual tasks, fencing and recovery, and the run's artifacts."""

from __future__ import annotations

import csv
import datetime as dt
import email
from email import policy
from pathlib import Path

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from leads.models import ConsentStatus, LeadStatus
from outreach import dispatch
from outreach.dispatch import RunState, messages_recover, tick
from outreach.models import (
    DispatchDecision,
    DispatchRun,
    Enrollment,
    Mailbox,
    MessageState,
    OutboundMessage,
    SendLedger,
    StepKind,
)
from outreach.services import manual_task_settle
from outreach.tests.outbox import NOON, running_campaign, two_step_sequence
from tests.factories import LeadFactory, SuppressionEntryFactory, VentureFactory
from ventures.models import Campaign, CampaignStatus, SystemControl, Venture

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def at_noon():
    with time_machine.travel(NOON, tick=False) as traveller:
        yield traveller


def eml_files(run) -> list[email.message.EmailMessage]:
    folder = Path(run.artifact_dir) / "eml"
    return [
        email.message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted(folder.glob("*.eml"))
    ]


def claimed(worker: str, folder: Path = Path("/nonexistent")) -> tuple[RunState, list]:
    """A run that claimed every due message, as a tick's first step leaves them."""
    state = RunState(
        run=DispatchRun.objects.create(worker=worker, mode="proof"),
        token=worker.ljust(32, "0")[:32],
        folder=folder,
    )
    ids = dispatch._claim(state, limit=10, campaign_id=None)
    messages = list(
        OutboundMessage.objects.filter(pk__in=ids)
        .select_related("lead", "campaign__venture", "step", "mailbox", "enrollment")
        .prefetch_related("step__templates")
    )
    return state, messages


def state_of(lead) -> str:
    return OutboundMessage.objects.get(lead=lead, step__position=1).state


def test_a_tick_enrols_running_campaigns_and_writes_each_first_email_once():
    campaign = running_campaign()
    two_step_sequence(campaign)
    leads = LeadFactory.create_batch(3, campaign=campaign)
    run = tick(worker="test")
    assert run.counts == {"sent": 3}
    mails = eml_files(run)
    assert sorted(m["To"] for m in mails) == sorted(lead.email for lead in leads)
    for mail in mails:
        assert mail["Message-ID"] and mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "/u/" in mail["List-Unsubscribe"] and "mailto:" in mail["List-Unsubscribe"]
        assert mail["Reply-To"] == "replies@venture.example"
        assert "Unsubscribe:" in mail.get_content()
        link = mail["List-Unsubscribe"].strip().split(">")[0].removeprefix("<")
        assert f"Unsubscribe: {link}" in mail.get_content()  # the same link in both
    assert Enrollment.objects.filter(campaign=campaign).count() == 3
    again = tick(worker="test")
    assert again.counts == {} and not list(Path(again.artifact_dir).glob("eml/*.eml"))
    assert OutboundMessage.objects.filter(state=MessageState.SENT).count() == 3


def test_enrolment_takes_the_same_statements_for_five_leads_as_for_thirty(monkeypatch):
    from outreach import enrollment

    monkeypatch.setattr(enrollment, "ENROL_CHUNK", 40)
    campaign = running_campaign()
    two_step_sequence(campaign)
    counts = {}
    # Up to 30: on SQLite, Django's bulk_create of the enrolments splits at 999 parameters
    # (about 90 rows); PostgreSQL takes any number in one statement.
    for n in (5, 30):
        LeadFactory.create_batch(n, campaign=campaign)
        with CaptureQueriesContext(connection) as captured:
            assert dispatch.campaign_enrol(campaign=campaign) == n
        counts[n] = len(captured.captured_queries)
    assert counts[5] == counts[30]
    LeadFactory.create_batch(45, campaign=campaign)  # more than a chunk: one more round
    assert dispatch.campaign_enrol(campaign=campaign) == 45
    assert dispatch.campaign_enrol(campaign=campaign) == 0  # and nothing twice
    assert Enrollment.objects.filter(campaign=campaign).count() == 80
    first = OutboundMessage.objects.filter(campaign=campaign, step__position=1)
    assert first.count() == 80 and first.values("lead").distinct().count() == 80


def test_the_second_step_waits_its_delay_and_replies_in_the_first_emails_thread(at_noon):
    campaign = running_campaign()
    two_step_sequence(campaign, delay_days=3)
    lead = LeadFactory(campaign=campaign)
    first = eml_files(tick())[0]
    follow = OutboundMessage.objects.get(lead=lead, step__position=2)
    assert follow.state == MessageState.SCHEDULED
    assert follow.due_at == NOON + dt.timedelta(days=3)
    at_noon.move_to(NOON + dt.timedelta(days=2))
    assert tick().counts == {}
    at_noon.move_to(NOON + dt.timedelta(days=3))
    second = eml_files(tick())[0]
    assert second["In-Reply-To"] == first["Message-ID"] == second["References"]
    assert second["Subject"] == "Re: " + first["Subject"]
    assert Enrollment.objects.get(lead=lead).state == "finished"


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        (lambda lead: setattr(lead, "consent_status", ConsentStatus.DNC), "dnc"),
        (lambda lead: setattr(lead, "status", LeadStatus.UNSUBSCRIBED), "unsubscribed"),
        (lambda lead: setattr(lead, "status", LeadStatus.REPLIED), "replied"),
        (lambda lead: setattr(lead, "status", LeadStatus.BOUNCED), "bounced"),
    ],
)
def test_a_lead_that_may_not_be_contacted_is_blocked_and_its_sequence_stops(setup, code):
    campaign = running_campaign()
    two_step_sequence(campaign)
    lead = LeadFactory(campaign=campaign)
    dispatch.campaign_enrol(campaign=campaign)
    setup(lead)
    lead.save()
    run = tick()
    message = OutboundMessage.objects.get(lead=lead)
    assert (message.state, message.reason_code) == (MessageState.BLOCKED, code)
    assert run.counts == {"blocked": 1} and not eml_files(run)
    enrollment = Enrollment.objects.get(lead=lead)
    assert (enrollment.state, enrollment.stop_reason) == ("stopped", message.reason)


def test_a_message_blocked_by_its_template_leaves_the_sequence_running():
    campaign = running_campaign()
    sequence = two_step_sequence(campaign)
    opener = sequence.steps.get(position=1).templates.get()
    opener.body_text = "Hi {{ no_such_field }}"
    opener.save()
    lead = LeadFactory(campaign=campaign)
    dispatch.campaign_enrol(campaign=campaign)
    tick()
    assert OutboundMessage.objects.get(lead=lead).reason_code == "template"
    assert Enrollment.objects.get(lead=lead).state == "active"  # fixable: nothing is over


@pytest.mark.parametrize("entry", ["email", "domain", "global"])
def test_a_suppressed_address_or_domain_is_blocked_at_claim_time(entry):
    campaign = running_campaign()
    two_step_sequence(campaign)
    lead = LeadFactory(
        campaign=campaign, email="pat@blocked.example", email_key="pat@blocked.example"
    )
    dispatch.campaign_enrol(campaign=campaign)
    if entry == "domain":
        SuppressionEntryFactory(
            kind="domain", value="blocked.example", identity_hash="", venture=campaign.venture
        )
    else:
        SuppressionEntryFactory(
            value="pat@blocked.example", venture=None if entry == "global" else campaign.venture
        )
    tick()
    message = OutboundMessage.objects.get(lead=lead)
    assert (message.state, message.reason_code) == (MessageState.BLOCKED, "suppressed")


def test_another_ventures_suppression_does_not_block():
    campaign = running_campaign()
    two_step_sequence(campaign)
    lead = LeadFactory(campaign=campaign)
    SuppressionEntryFactory(
        value=lead.email_key, venture=Venture.objects.create(name="X", slug="x")
    )
    tick()
    assert state_of(lead) == MessageState.SENT


def test_outside_the_window_in_the_leads_time_zone_it_waits_for_the_next_opening():
    campaign = running_campaign()
    two_step_sequence(campaign)
    tokyo = LeadFactory(campaign=campaign, timezone="Asia/Tokyo")  # 20:00 there
    berlin = LeadFactory(campaign=campaign)  # no zone: the campaign's (12:00)
    tick()
    assert state_of(berlin) == MessageState.SENT
    waiting = OutboundMessage.objects.get(lead=tokyo)
    assert (waiting.state, waiting.reason_code) == (MessageState.DEFERRED, "window")
    assert waiting.due_at == dt.datetime(
        2026, 12, 3, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=9))
    )


def test_a_template_that_does_not_render_clean_blocks_with_the_reason():
    campaign = running_campaign()
    sequence = two_step_sequence(campaign)
    template = sequence.steps.get(position=1).templates.get()
    template.body_text = template.body_text + "{{ missing_thing }}"
    template.save()
    lead = LeadFactory(campaign=campaign)
    tick()
    message = OutboundMessage.objects.get(lead=lead)
    assert (message.state, message.reason_code) == (MessageState.BLOCKED, "template")
    assert "undefined_variable" in message.reason


@pytest.mark.parametrize("switch", ["global", "venture", "campaign", "paused"])
def test_nothing_is_claimed_while_a_kill_switch_is_on_or_the_campaign_is_paused(switch):
    campaign = running_campaign()
    two_step_sequence(campaign)
    lead = LeadFactory(campaign=campaign)
    dispatch.campaign_enrol(campaign=campaign)
    if switch == "global":
        SystemControl.objects.update_or_create(pk=1, defaults={"kill_switch": True})
    elif switch == "venture":
        Venture.objects.filter(pk=campaign.venture_id).update(kill_switch=True)
    elif switch == "campaign":
        Campaign.objects.filter(pk=campaign.pk).update(kill_switch=True)
    else:
        Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.PAUSED)
    run = tick()
    assert run.counts == {} and state_of(lead) == MessageState.SCHEDULED


def test_the_campaign_cap_is_exact_and_the_rest_waits_for_tomorrow(at_noon):
    campaign = running_campaign(daily_limit=4)
    two_step_sequence(campaign)
    LeadFactory.create_batch(7, campaign=campaign)
    at_noon.move_to(NOON.replace(hour=16, minute=59))  # 17:59 in Berlin: the pace allows all 4
    run = tick()
    assert run.counts["sent"] == 4
    deferred = OutboundMessage.objects.filter(state=MessageState.DEFERRED)
    assert deferred.count() == 3 and {m.reason_code for m in deferred} == {"cap"}
    assert {m.due_at for m in deferred} == {dt.datetime(2026, 12, 2, 23, 0, tzinfo=dt.UTC)}
    ledger = SendLedger.objects.get(scope="campaign", key=str(campaign.pk))
    assert ledger.count == 4


def test_the_global_limit_holds_across_campaigns(settings):
    settings.AICMO_GLOBAL_DAILY_LIMIT = 3
    for _ in range(2):
        campaign = running_campaign()
        two_step_sequence(campaign)
        LeadFactory.create_batch(3, campaign=campaign)
    tick()
    assert OutboundMessage.objects.filter(state=MessageState.SENT).count() == 3


def test_sends_spread_across_the_window_not_in_a_burst_at_its_start(at_noon):
    campaign = running_campaign(daily_limit=100)
    two_step_sequence(campaign)
    LeadFactory.create_batch(30, campaign=campaign)
    at_noon.move_to(dt.datetime(2026, 12, 2, 7, 30, tzinfo=dt.UTC))  # 08:30 Berlin: 1/20 gone
    run = tick()
    assert run.counts["sent"] == 6  # 1 + 100 * 0.05
    paced = OutboundMessage.objects.filter(reason_code="pacing").order_by("due_at").first()
    assert paced.due_at == dt.datetime(2026, 12, 2, 7, 36, tzinfo=dt.UTC)  # the 7th slot


def test_a_mailbox_keeps_its_gap_between_sends(at_noon):
    campaign = running_campaign()
    two_step_sequence(campaign)
    box = Mailbox.objects.create(
        venture=campaign.venture, name="Sam", from_email="sam@venture.example",
        min_gap_seconds=120, gap_jitter_seconds=0,
    )  # fmt: skip
    box.campaigns.add(campaign)
    LeadFactory.create_batch(2, campaign=campaign)
    assert tick().counts == {"sent": 1, "deferred": 1}
    at_noon.shift(dt.timedelta(seconds=120))
    assert tick().counts == {"sent": 1}
    assert set(OutboundMessage.objects.values_list("mailbox", flat=True)) == {box.pk}


def test_a_manual_step_opens_a_task_and_settling_it_plans_the_next_step(at_noon, operator):
    campaign = running_campaign()
    sequence = two_step_sequence(campaign, second=StepKind.CALL, delay_days=1)
    sequence.steps.filter(position=1).update(kind=StepKind.LINKEDIN_CONNECT)
    lead = LeadFactory(campaign=campaign)
    run = tick()
    task = OutboundMessage.objects.get(lead=lead, step__position=1)
    assert task.state == MessageState.TASK_OPEN and "Hi Lena" in task.body_text
    assert run.counts == {"task_open": 1} and not eml_files(run)
    manual_task_settle(message=task, done=False, actor=operator, note="no LinkedIn profile")
    call = OutboundMessage.objects.get(lead=lead, step__position=2)
    assert call.kind == StepKind.CALL and call.due_at == NOON + dt.timedelta(days=1)


def test_a_claim_whose_lease_lapsed_records_nothing_afterwards():
    campaign = running_campaign()
    two_step_sequence(campaign)
    lead = LeadFactory(campaign=campaign)
    dispatch.campaign_enrol(campaign=campaign)
    stalled, messages = claimed("stalled")
    ids = [m.pk for m in messages]
    OutboundMessage.objects.filter(pk__in=ids).update(lease_until=NOON - dt.timedelta(seconds=1))
    assert messages_recover() == {"released": 1, "unknown": 0}
    decisions = dispatch._decide(stalled, messages, None)
    assert dispatch._settle_decisions(stalled, decisions) == []  # fenced: nothing written
    assert state_of(lead) == MessageState.SCHEDULED
    assert tick().counts == {"sent": 1}  # the next worker sends it, once


def test_a_worker_that_died_while_handing_over_leaves_unknown_and_it_is_never_resent():
    campaign = running_campaign()
    two_step_sequence(campaign)
    lead = LeadFactory(campaign=campaign)
    dispatch.campaign_enrol(campaign=campaign)
    dead, messages = claimed("dead")
    ids = [m.pk for m in messages]
    sending = dispatch._settle_decisions(dead, dispatch._decide(dead, messages, None))
    assert [m.pk for m in sending] == ids  # marked sending; then the worker dies
    OutboundMessage.objects.filter(pk__in=ids).update(lease_until=NOON - dt.timedelta(seconds=1))
    run = tick()
    assert run.counts == {"recovered_unknown": 1}
    message = OutboundMessage.objects.get(lead=lead)
    assert (message.state, message.reason_code) == (MessageState.UNKNOWN, "worker_stopped")
    assert SendLedger.objects.get(scope="campaign").count == 1  # it may have been sent: counted
    assert tick().counts == {}


def test_a_kill_switch_committed_after_admission_stops_the_hand_over():
    campaign = running_campaign()
    two_step_sequence(campaign)
    lead = LeadFactory(campaign=campaign)
    dispatch.campaign_enrol(campaign=campaign)
    state, messages = claimed("w", Path(dispatch.settings.AICMO_ARTIFACT_DIR) / "kill-test")
    sending = dispatch._settle_decisions(state, dispatch._decide(state, messages, None))
    Campaign.objects.filter(pk=campaign.pk).update(kill_switch=True)  # committed now
    with dispatch.ProofBackend(state.folder) as backend:
        dispatch._deliver(state, sending, backend)
    message = OutboundMessage.objects.get(lead=lead)
    assert (message.state, message.reason_code) == (MessageState.DEFERRED, "halted")
    assert not list(state.folder.glob("*.eml"))
    assert SendLedger.objects.get(scope="campaign").count == 0  # the slot went back


def test_the_runs_artifacts_reconcile_with_the_database():
    campaign = running_campaign()
    two_step_sequence(campaign)
    LeadFactory.create_batch(2, campaign=campaign)
    LeadFactory(campaign=campaign, consent_status=ConsentStatus.DNC)
    run = tick()
    folder = Path(run.artifact_dir)
    rows = list(csv.DictReader((folder / "decisions.csv").open()))
    assert sorted(r["outcome"] for r in rows) == ["blocked", "sent", "sent"]
    assert "| sent | 2 |" in (folder / "summary.md").read_text()
    with connection.cursor() as cursor:
        cursor.execute((folder / "proof.sql").read_text().split("\n", 1)[1])
        assert dict(cursor.fetchall()) == {"blocked": 1, "sent": 2} == run.counts
    assert DispatchDecision.objects.filter(run=run).count() == 3


def test_a_task_is_settled_once_and_an_unknown_message_only_with_a_reason(operator):
    from outreach.services import unknown_message_settle
    from ventures.services import DomainError

    campaign = running_campaign()
    sequence = two_step_sequence(campaign)
    sequence.steps.filter(position=1).update(kind=StepKind.CALL)
    lead = LeadFactory(campaign=campaign)
    tick()
    task = OutboundMessage.objects.get(lead=lead, step__position=1)
    manual_task_settle(message=task, done=True, actor=operator)
    with pytest.raises(DomainError, match="task done, not task open"):
        manual_task_settle(message=task, done=True, actor=operator)
    OutboundMessage.objects.filter(pk=task.pk).update(state=MessageState.UNKNOWN)
    with pytest.raises(DomainError, match="Say how you know"):
        unknown_message_settle(message=task, sent=True, actor=operator, reason=" ")
    settled = unknown_message_settle(
        message=task, sent=False, actor=operator, reason="the server log shows no delivery"
    )
    assert settled.state == MessageState.FAILED and settled.settled_by


def test_a_venture_without_a_cap_of_its_own_is_limited_by_the_others_only():
    campaign = running_campaign(daily_limit=2, venture=VentureFactory(daily_send_limit=None))
    two_step_sequence(campaign)
    LeadFactory.create_batch(3, campaign=campaign)
    with time_machine.travel(NOON.replace(hour=16, minute=59), tick=False):
        assert tick().counts == {"sent": 2, "deferred": 1}
    assert not SendLedger.objects.filter(scope="venture").exists()


def test_an_unsubscribe_blocks_the_persons_pending_messages_at_once():
    from leads.unsubscribes import lead_unsubscribe

    campaign = running_campaign()
    two_step_sequence(campaign)
    lead = LeadFactory(campaign=campaign)
    tick()
    follow = OutboundMessage.objects.get(lead=lead, step__position=2)
    assert follow.state == MessageState.SCHEDULED
    lead_unsubscribe(lead=lead, source="link", actor="visitor")
    follow.refresh_from_db()
    assert (follow.state, follow.reason_code) == (MessageState.BLOCKED, "unsubscribed")
    assert Enrollment.objects.get(lead=lead).state == "stopped"


def test_a_campaign_without_a_valid_sender_blocks_instead_of_failing_the_tick(settings):
    settings.DEFAULT_FROM_EMAIL = "webmaster"
    campaign = running_campaign(sender_email="")
    Venture.objects.filter(pk=campaign.venture_id).update(owner_email="")
    two_step_sequence(campaign)
    lead = LeadFactory(campaign=campaign)
    tick()
    message = OutboundMessage.objects.get(lead=lead)
    assert (message.state, message.reason_code) == (MessageState.BLOCKED, "sender")


def test_a_message_recovered_as_unknown_before_the_hand_over_is_not_handed_over():
    campaign = running_campaign()
    two_step_sequence(campaign)
    lead = LeadFactory(campaign=campaign)
    dispatch.campaign_enrol(campaign=campaign)
    state, messages = claimed("slow", Path(dispatch.settings.AICMO_ARTIFACT_DIR) / "slow-test")
    sending = dispatch._settle_decisions(state, dispatch._decide(state, messages, None))
    OutboundMessage.objects.filter(lead=lead).update(lease_until=NOON - dt.timedelta(seconds=1))
    assert messages_recover()["unknown"] == 1  # another worker's recovery, first
    with dispatch.ProofBackend(state.folder) as backend:
        dispatch._deliver(state, sending, backend)
    assert not list(state.folder.glob("*.eml"))
    assert OutboundMessage.objects.get(lead=lead).state == MessageState.UNKNOWN


def test_live_email_rules_do_not_block_a_manual_task(settings):
    settings.AICMO_SEND_MODE = "live"
    campaign = running_campaign(mode="live")
    sequence = two_step_sequence(campaign)
    sequence.steps.filter(position=1).update(kind=StepKind.LINKEDIN_MESSAGE)
    note = sequence.steps.get(position=1).templates.get()
    note.body_text = "Hi {{ first_name }}, saw your post."  # no unsubscribe link: not an email
    note.save()
    lead = LeadFactory(campaign=campaign)
    tick()
    assert OutboundMessage.objects.get(lead=lead).state == MessageState.TASK_OPEN


def test_a_manual_task_after_an_email_is_not_a_reply():
    campaign = running_campaign()
    two_step_sequence(campaign, second=StepKind.LINKEDIN_MESSAGE, delay_days=0)
    lead = LeadFactory(campaign=campaign)
    tick()
    task = OutboundMessage.objects.get(lead=lead, step__position=2)
    assert task.state == MessageState.TASK_OPEN
    assert not task.subject.startswith("Re:") and not task.in_reply_to


def test_a_paced_messages_reason_names_the_slot_in_utc(at_noon):
    campaign = running_campaign(daily_limit=100)
    two_step_sequence(campaign)
    LeadFactory.create_batch(3, campaign=campaign)
    at_noon.move_to(dt.datetime(2026, 12, 2, 7, 0, 30, tzinfo=dt.UTC))  # 08:00:30 Berlin
    tick()
    paced = OutboundMessage.objects.filter(reason_code="pacing").order_by("due_at").first()
    assert f"{paced.due_at.astimezone(dt.UTC):%H:%M:%S} UTC" in paced.reason


def test_a_tick_stores_each_decision_and_each_render_with_who_what_and_when():
    from templating.models import RenderLog, RenderOutcome, RenderPurpose

    campaign = running_campaign()
    two_step_sequence(campaign)
    sent = LeadFactory(campaign=campaign)
    dnc = LeadFactory(campaign=campaign, consent_status=ConsentStatus.DNC)
    run = tick(worker="test")
    rows = {
        d.lead_id: (d.outcome, d.reason_code, d.decided_at)
        for d in DispatchDecision.objects.filter(run=run)
    }
    assert rows == {
        sent.pk: (MessageState.SENT, "", NOON),
        dnc.pk: (MessageState.BLOCKED, "dnc", NOON),
    }
    decision = DispatchDecision.objects.get(run=run, lead_id=dnc.pk)
    assert decision.message == OutboundMessage.objects.get(lead=dnc)
    assert decision.reason == "the lead is marked do-not-contact"
    # Only the lead that passed the guardrails was rendered: one log row, of its version.
    message = OutboundMessage.objects.get(lead=sent, step__position=1)
    log = RenderLog.objects.get()
    assert (log.template_version, log.subject_ref, log.purpose, log.outcome, log.reasons) == (
        message.template_version,
        f"lead:{sent.pk}",
        RenderPurpose.SEND,
        RenderOutcome.OK,
        [],
    )
    assert log.created_at == NOON
