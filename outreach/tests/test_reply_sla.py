"""Reply handling SLA: a positive reply nobody has marked handled within the campaign's SLA
is flagged in the console and escalated to the venture's owner by email, once; handling it
stops the clock."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django_q.models import Schedule

from outreach.feedback import reply_record
from outreach.models import FeedbackEvent, Sentiment
from outreach.signals import REPLY_SLA_SCHEDULE
from outreach.sla import NO_OWNER, replies_escalate, reply_handled, reply_sla_state
from outreach.tests.outbox import NOON
from outreach.tests.test_feedback_webhooks import first_email_sent
from tests.factories import LeadFactory, MembershipFactory, UserFactory
from tests.proc import clean_env, manage_started, running_database_url
from ventures.models import AuditEvent
from ventures.roles import OPERATOR, VIEWER

pytestmark = pytest.mark.django_db
OWNER = "owner@venture.example"


@pytest.fixture
def sent():
    message = first_email_sent()
    venture = message.campaign.venture
    venture.owner_email = OWNER
    venture.save()
    return message


@pytest.fixture
def live_mail(settings, tmp_path):
    settings.AICMO_SEND_MODE = "live"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.AICMO_ARTIFACT_DIR = tmp_path


def positive_reply(message, *, at=NOON) -> FeedbackEvent:
    with time_machine.travel(at, tick=False):
        return reply_record(
            message=message, sentiment=Sentiment.POSITIVE, actor="op:t",
            notes="Yes please, call me on Friday.",
        )  # fmt: skip


def test_a_positive_reply_past_the_sla_is_escalated_to_the_owner_once(sent, live_mail):
    event = positive_reply(sent)
    assert sent.campaign.reply_sla_hours == 24
    assert replies_escalate(now=NOON + dt.timedelta(hours=23, minutes=59)) == []
    assert mail.outbox == []
    late = NOON + dt.timedelta(hours=25)
    assert [e.pk for e in replies_escalate(now=late)] == [event.pk]
    assert replies_escalate(now=late + dt.timedelta(hours=1)) == []  # once
    (email,) = mail.outbox
    assert email.to == [OWNER]
    assert sent.recipient in email.subject and "(25 h)" in email.subject
    assert "Yes please, call me on Friday." in email.body
    assert f"/admin/outreach/feedbackevent/{event.pk}/change/" in email.body
    event.refresh_from_db()
    assert (event.escalated_at, event.escalated_to) == (late, OWNER)
    audit = AuditEvent.objects.get(action="feedback.reply_escalated")
    assert audit.after["event"] == event.pk and "24 h SLA" in audit.reason


def test_a_reply_handled_in_time_is_never_escalated(sent, live_mail):
    event = positive_reply(sent)
    assert reply_sla_state(event, now=NOON + dt.timedelta(hours=1)).code == "waiting"
    assert reply_handled(event=event, actor="op:t", note="Booked the call.")
    assert not reply_handled(event=event, actor="op:t")  # handled already
    assert replies_escalate(now=NOON + dt.timedelta(days=3)) == []
    assert mail.outbox == []
    event.refresh_from_db()
    assert reply_sla_state(event).code == "handled" and event.handled_by == "op:t"
    assert AuditEvent.objects.get(action="feedback.reply_handled").reason == "Booked the call."


def test_only_positive_replies_have_an_sla(sent, live_mail):
    with time_machine.travel(NOON, tick=False):
        event = reply_record(message=sent, sentiment=Sentiment.NEUTRAL, actor="op:t")
    assert reply_sla_state(event).code == ""
    assert replies_escalate(now=NOON + dt.timedelta(days=3)) == []


def test_a_campaign_without_an_sla_escalates_nothing(sent, live_mail):
    sent.campaign.reply_sla_hours = 0
    sent.campaign.save()
    event = positive_reply(sent)
    assert reply_sla_state(event, now=NOON + dt.timedelta(days=9)).code == ""
    assert replies_escalate(now=NOON + dt.timedelta(days=9)) == []


def test_a_venture_without_an_owner_email_is_flagged_and_says_why_nobody_was_emailed(
    sent, live_mail
):
    sent.campaign.venture.owner_email = ""
    sent.campaign.venture.save()
    event = positive_reply(sent)
    (escalated,) = replies_escalate(now=NOON + dt.timedelta(hours=30))
    assert escalated.escalated_to == NO_OWNER and mail.outbox == []
    assert reply_sla_state(escalated, now=NOON + dt.timedelta(hours=30)).overdue
    assert FeedbackEvent.objects.get(pk=event.pk).escalated_to == NO_OWNER


def test_an_escalation_the_mail_server_refuses_is_tried_again_next_pass(sent, settings, smtp_sink):
    settings.AICMO_SEND_MODE = "live"
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", int(smtp_sink.url.rsplit(":", 1)[1])
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    event = positive_reply(sent)
    smtp_sink.fail_next("RCPT", 451)
    late = NOON + dt.timedelta(hours=25)
    assert replies_escalate(now=late) == []
    assert FeedbackEvent.objects.get(pk=event.pk).escalated_at is None
    assert [e.pk for e in replies_escalate(now=late)] == [event.pk]
    assert smtp_sink.recipients() == [OWNER]


def test_in_proof_mode_the_escalation_is_written_as_an_eml_file(sent, settings, tmp_path):
    settings.AICMO_SEND_MODE = "proof"
    settings.AICMO_ARTIFACT_DIR = tmp_path
    event = positive_reply(sent)
    replies_escalate(now=NOON + dt.timedelta(hours=25))
    (path,) = (tmp_path / "notifications").iterdir()
    assert path.name == f"reply-sla-{event.pk}.eml"
    assert f"To: {OWNER}" in path.read_text()


def test_the_command_escalates_and_reports_as_json(sent, live_mail, capsys):
    positive_reply(sent)
    with time_machine.travel(NOON + dt.timedelta(hours=25), tick=False):
        call_command("feedback", "escalate", "--json")
    data = json.loads(capsys.readouterr().out)
    assert (data["escalated"], data["emailed"]) == (1, 1)
    with time_machine.travel(NOON + dt.timedelta(hours=26), tick=False):
        call_command("feedback", "escalate")
    assert "No positive reply is past its SLA" in capsys.readouterr().out


def test_the_escalation_schedule_exists_after_migrate():
    schedule = Schedule.objects.get(name=REPLY_SLA_SCHEDULE)
    assert (schedule.func, schedule.minutes) == ("outreach.tasks.replies_escalate", 1)


def test_the_console_flags_overdue_replies_and_an_operator_marks_them_handled(client, sent):
    operator = UserFactory(username="op-olga", role=OPERATOR)
    MembershipFactory(user=operator, venture=sent.campaign.venture)
    event = positive_reply(sent)
    client.force_login(operator)
    with time_machine.travel(NOON + dt.timedelta(hours=2), tick=False):
        page = client.get("/admin/outreach/feedbackevent/", secure=True).content.decode()
        assert "answer by" in page and "sla-waiting" in page
    with time_machine.travel(NOON + dt.timedelta(hours=30), tick=False):
        replies_escalate()
        overdue = client.get("/admin/outreach/feedbackevent/?handling=overdue", secure=True)
        assert "past the SLA by 6 h" in overdue.content.decode()
        assert f"escalated to {OWNER}" in overdue.content.decode()
        panel = client.get(f"/admin/ventures/campaign/{sent.campaign.pk}/change/", secure=True)
        assert "1 past the 24 h SLA" in panel.content.decode()
        done = client.post(
            f"/admin/outreach/feedbackevent/{event.pk}/reply-handled/",
            {"post": "yes"},
            secure=True,
            follow=True,
        )
    assert "Marked 1" in done.content.decode()
    assert FeedbackEvent.objects.get(pk=event.pk).handled_by == "op-olga"
    listed = client.get("/admin/outreach/feedbackevent/?handling=overdue", secure=True)
    assert "past the SLA by" not in listed.content.decode()


def test_a_viewer_cannot_mark_a_reply_handled(client, sent):
    viewer = UserFactory(username="viewer-vic", role=VIEWER)
    MembershipFactory(user=viewer, venture=sent.campaign.venture)
    event = positive_reply(sent)
    client.force_login(viewer)
    page = client.get(f"/admin/outreach/feedbackevent/{event.pk}/change/", secure=True)
    assert page.status_code == 200 and "reply-handled" not in page.content.decode()
    refused = client.post(f"/admin/outreach/feedbackevent/{event.pk}/reply-handled/", secure=True)
    assert refused.status_code == 403
    assert FeedbackEvent.objects.get(pk=event.pk).handled_at is None


@pytest.mark.postgres
def test_workers_escalating_at_once_email_each_reply_once(transactional_db, tmp_path):
    """Four real processes run the escalation at the same moment: each overdue reply is
    written once (proof mode), and the audit trail has one row per reply."""
    message = first_email_sent()
    venture = message.campaign.venture
    venture.owner_email = OWNER
    venture.save()
    days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)  # the processes run in real time
    replies = [positive_reply(message, at=days_ago)]
    for lead in LeadFactory.create_batch(11, campaign=message.campaign):
        other = message.__class__.objects.get(pk=message.pk)
        other.pk, other.lead, other.idempotency_key = None, lead, f"sla-{lead.pk}"
        other.message_id = f"<sla-{lead.pk}@venture.example>"
        other.save()
        replies.append(positive_reply(other, at=days_ago))
    env = clean_env(
        DATABASE_URL=running_database_url(), AICMO_SEND_MODE="proof",
        AICMO_ARTIFACT_DIR=str(tmp_path),
    )  # fmt: skip
    procs = [manage_started("feedback", "escalate", "--json", env=env) for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    counts = [json.loads(out)["escalated"] for out, _ in results]
    assert sum(counts) == len(replies) == 12
    files = sorted(p.name for p in (tmp_path / "notifications").iterdir())
    assert files == sorted(f"reply-sla-{e.pk}.eml" for e in replies)
    assert AuditEvent.objects.filter(action="feedback.reply_escalated").count() == 12
