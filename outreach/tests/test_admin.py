"""The outbox in the console: mailbox secrets, scoping, the task queue, unknown messages and
the campaign page's outbox panel."""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from outreach.dispatch import tick
from outreach.models import (
    FeedbackEvent,
    Mailbox,
    MailboxPoll,
    MessageState,
    OutboundMessage,
    StepKind,
)
from outreach.tests.outbox import NOON, running_campaign, two_step_sequence
from tests.factories import LeadFactory
from tests.http import text
from ventures.models import AuditEvent

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]

SECRET = "smtp://sam:hunter2-very-secret@smtp.example:587/?tls=True"


@pytest.fixture
def campaign(venture):
    return running_campaign(venture=venture)


def mailbox_form(campaign, **changes):
    data = {
        "venture": campaign.venture_id, "name": "Sam", "from_name": "Sam", "from_email":
        "sam@venture.example", "reply_to": "", "is_active": "on", "campaigns": [campaign.pk],
        "daily_limit": 40, "warmup_start_limit": "", "warmup_daily_increase": 0,
        "warmup_started_on": "", "min_gap_seconds": 60, "gap_jitter_seconds": 30,
        "connection_url": SECRET,
    }  # fmt: skip
    data.update(changes)
    return data


def test_a_mailboxs_connection_url_is_write_only_everywhere(op_client, campaign):
    added = op_client.post(
        reverse("admin:outreach_mailbox_add"), mailbox_form(campaign), follow=True
    )
    assert added.status_code == 200
    box = Mailbox.objects.get()
    assert box.connection_url == SECRET
    page = text(op_client.get(reverse("admin:outreach_mailbox_change", args=[box.pk])))
    listing = text(op_client.get(reverse("admin:outreach_mailbox_changelist")))
    assert "hunter2" not in page and "hunter2" not in listing
    assert "its own (set, not shown)" in page
    # Saving without typing it again keeps it; the audit trail never holds it.
    op_client.post(
        reverse("admin:outreach_mailbox_change", args=[box.pk]),
        mailbox_form(campaign, connection_url="", daily_limit=35),  # lower: no confirm step
    )
    box.refresh_from_db()
    assert (box.connection_url, box.daily_limit) == (SECRET, 35)
    op_client.post(
        reverse("admin:outreach_mailbox_change", args=[box.pk]),
        mailbox_form(campaign, connection_url="", clear_connection="on", daily_limit=35),
    )
    box.refresh_from_db()
    assert box.connection_url == ""
    rows = " ".join(str(e.before) + str(e.after) for e in AuditEvent.objects.all())
    assert "hunter2" not in rows and "set (" in rows


def test_an_operator_sees_only_their_ventures_messages(op_client, campaign):
    other = running_campaign()
    two_step_sequence(campaign)
    two_step_sequence(other)
    mine = LeadFactory(campaign=campaign)
    LeadFactory(campaign=other)
    with time_machine.travel(NOON, tick=False):
        tick()
    page = op_client.get(reverse("admin:outreach_outboundmessage_changelist"))
    assert {m.lead_id for m in page.context["cl"].result_list} == {mine.pk}
    foreign = OutboundMessage.objects.exclude(lead=mine).first()
    assert (
        op_client.get(
            reverse("admin:outreach_outboundmessage_change", args=[foreign.pk])
        ).status_code
        == 404
    )


def test_the_task_queue_lists_open_tasks_and_done_plans_the_next_step(op_client, campaign):
    sequence = two_step_sequence(campaign, delay_days=1)
    sequence.steps.filter(position=1).update(kind=StepKind.LINKEDIN_CONNECT)
    lead = LeadFactory(campaign=campaign)
    with time_machine.travel(NOON, tick=False):
        tick()
    task = OutboundMessage.objects.get(lead=lead)
    queue = op_client.get(reverse("admin:outreach_manualtask_changelist"))
    assert [t.pk for t in queue.context["cl"].result_list] == [task.pk]
    assert "Hi Lena" in text(queue)
    url = reverse("admin:outreach_manualtask_operation", args=[task.pk, "task-done"])
    confirm = op_client.post(url)
    assert "Mark done: are you sure?" in text(confirm) and str(task) in text(confirm)
    task.refresh_from_db()
    assert task.state == MessageState.TASK_OPEN  # not before the confirm page comes back
    op_client.post(url, {"post": "yes", "reason": "Called her"}, follow=True)
    task.refresh_from_db()
    assert task.state == MessageState.TASK_DONE and task.settled_by == "op-otto"
    assert OutboundMessage.objects.filter(lead=lead, step__position=2).exists()


def test_a_viewer_cannot_settle_a_task(client, viewer, campaign):
    sequence = two_step_sequence(campaign)
    sequence.steps.filter(position=1).update(kind=StepKind.CALL)
    LeadFactory(campaign=campaign)
    with time_machine.travel(NOON, tick=False):
        tick()
    task = OutboundMessage.objects.get()
    client.force_login(viewer)
    url = reverse("admin:outreach_manualtask_operation", args=[task.pk, "task-done"])
    assert client.post(url).status_code == 403
    task.refresh_from_db()
    assert task.state == MessageState.TASK_OPEN


def test_an_unknown_message_is_settled_only_with_a_reason(op_client, campaign):
    two_step_sequence(campaign)
    lead = LeadFactory(campaign=campaign)
    with time_machine.travel(NOON, tick=False):
        tick()
    message = OutboundMessage.objects.get(lead=lead, step__position=1)
    OutboundMessage.objects.filter(pk=message.pk).update(state=MessageState.UNKNOWN)
    url = reverse("admin:outreach_outboundmessage_operation", args=[message.pk, "settle-not-sent"])
    refused = op_client.post(url, {"post": "yes", "reason": ""})
    assert "Give a reason" in text(refused)
    op_client.post(url, {"post": "yes", "reason": "no trace in the server log"})
    message.refresh_from_db()
    assert message.state == MessageState.FAILED


def test_the_campaign_page_shows_what_the_outbox_is_doing(op_client, campaign):
    two_step_sequence(campaign)
    LeadFactory.create_batch(2, campaign=campaign)
    LeadFactory(campaign=campaign, consent_status="dnc")
    with time_machine.travel(NOON, tick=False):
        tick()
        page = text(op_client.get(reverse("admin:ventures_campaign_change", args=[campaign.pk])))
    assert "<h2>Outbox</h2>" in page
    assert "<td>Sent</td><td>2</td>" in page and "<td>Blocked</td><td>1</td>" in page
    assert "Sent today: <strong>2</strong>" in page and "dnc (1)" in page


def test_an_operator_records_a_reply_read_in_their_mailbox(op_client, campaign, client, viewer):
    two_step_sequence(campaign)
    lead = LeadFactory(campaign=campaign)
    with time_machine.travel(NOON, tick=False):
        tick()
    message = OutboundMessage.objects.get(lead=lead, step__position=1)
    page = text(op_client.get(reverse("admin:outreach_outboundmessage_change", args=[message.pk])))
    assert "Replied: positive" in page and "Replied: objection" in page
    url = reverse("admin:outreach_outboundmessage_operation", args=[message.pk, "reply-objection"])
    op_client.post(url, {"post": "yes", "reason": "Too expensive for this quarter."}, follow=True)
    event = FeedbackEvent.objects.get()
    assert (event.source, event.kind, event.sentiment) == ("manual", "replied", "objection")
    assert event.notes == "Too expensive for this quarter." and event.message == message
    lead.refresh_from_db()
    assert lead.status == "replied"
    follow_up = OutboundMessage.objects.get(lead=lead, step__position=2)
    assert (follow_up.state, follow_up.reason_code) == ("blocked", "replied")
    client.force_login(viewer)
    assert client.post(url, {"post": "yes", "reason": "x"}).status_code == 403
    assert FeedbackEvent.objects.count() == 1


IMAP_URL = "imaps://sam%40venture.example:imap-hunter3-secret@imap.venture.example/INBOX"


def test_a_mailboxs_imap_url_is_checked_write_only_and_its_poll_state_shown(op_client, campaign):
    add = reverse("admin:outreach_mailbox_add")
    refused = op_client.post(add, mailbox_form(campaign, imap_url="imaps://imap.venture.example/"))
    assert "The IMAP URL needs the user name and password" in text(refused)
    assert not Mailbox.objects.exists()

    op_client.post(add, mailbox_form(campaign, imap_url=IMAP_URL))
    box = Mailbox.objects.get()
    assert box.imap_url == IMAP_URL
    change = reverse("admin:outreach_mailbox_change", args=[box.pk])
    page = text(op_client.get(change))
    assert "polled (URL set, not shown)" in page and "not polled yet" in page
    MailboxPoll.objects.create(
        mailbox=box,
        polled_at=timezone.now(),
        error="imap.venture.example:993 refused the login of 'sam@venture.example': "
        "[AUTHENTICATIONFAILED] Authentication failed.",
    )
    page = text(op_client.get(change))
    assert "failed: imap.venture.example:993 refused the login of" in page and "(never)" in page
    listing = text(op_client.get(reverse("admin:outreach_mailbox_changelist")))
    assert "imap-hunter3" not in page + listing

    op_client.post(change, mailbox_form(campaign, connection_url="", imap_url="", daily_limit=35))
    box.refresh_from_db()
    assert (box.imap_url, box.connection_url, box.daily_limit) == (IMAP_URL, SECRET, 35)
    op_client.post(
        change,
        mailbox_form(campaign, connection_url="", imap_url="", clear_imap="on", daily_limit=35),
    )
    box.refresh_from_db()
    assert (box.imap_url, box.connection_url) == ("", SECRET)
    rows = " ".join(str(e.before) + str(e.after) for e in AuditEvent.objects.all())
    assert "imap-hunter3" not in rows and "'imap_url': 'set (" in rows


# --- Raising a mailbox's limits while a running or paused campaign sends from it -----------


@pytest.fixture
def box(campaign):
    mailbox = Mailbox.objects.create(venture=campaign.venture, name="Sam", from_name="Sam",
                                     from_email="sam@venture.example", daily_limit=40,
                                     connection_url=SECRET)  # fmt: skip
    mailbox.campaigns.add(campaign)
    return mailbox


def change(box) -> str:
    return reverse("admin:outreach_mailbox_change", args=[box.pk])


def test_raising_a_mailbox_cap_of_a_running_campaign_confirms_old_to_new_first(
    op_client, campaign, box
):
    response = op_client.post(
        change(box), mailbox_form(campaign, connection_url="", daily_limit=400)
    )
    assert response.templates[0].name == "admin/ventures/campaign_limits_confirm.html"
    page = text(response)
    assert f"Mailbox Sam <sam@venture.example> sends for running campaign {campaign.name}." in page
    assert "<td>Daily limit</td><td>40</td><td>→</td><td><strong>400</strong></td>" in page
    assert "Now: 40 sends from it allowed today." in page
    assert "After saving: 400 sends from it allowed today." in page
    box.refresh_from_db()
    assert box.daily_limit == 40  # shown, not saved

    confirmed = mailbox_form(campaign, connection_url="", daily_limit=400, _raise_confirmed="yes")
    page = text(op_client.post(change(box), confirmed))
    assert "Give a reason: it is recorded in the audit trail." in page
    box.refresh_from_db()
    assert box.daily_limit == 40

    op_client.post(change(box), {**confirmed, "_raise_reason": "Domain warmed up"})
    box.refresh_from_db()
    assert box.daily_limit == 400
    event = AuditEvent.objects.for_entity(box).get(action="mailbox.update")
    assert event.reason == "Domain warmed up"
    assert (event.before["daily_limit"], event.after["daily_limit"]) == (40, 400)


def test_loosening_a_mailbox_warm_up_confirms_too(op_client, campaign, box):
    Mailbox.objects.filter(pk=box.pk).update(warmup_start_limit=5, warmup_daily_increase=2,
                                             warmup_started_on=timezone.now().date())  # fmt: skip
    cleared = mailbox_form(campaign, connection_url="", warmup_start_limit="",
                           warmup_daily_increase=2,
                           warmup_started_on=timezone.now().date().isoformat())  # fmt: skip
    page = text(op_client.post(change(box), cleared))
    assert "<td>Warm-up: sends on the first day</td><td>5</td><td>→</td><td><strong>none" in page
    box.refresh_from_db()
    assert box.warmup_start_limit == 5


def hidden_fields(page: str) -> list[tuple[str, str]]:
    """The hidden inputs of a confirm page, as the browser posts them back."""
    return [
        (html.unescape(name), html.unescape(value))
        for name, value in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page)
    ]


def test_a_typed_secret_is_never_echoed_by_the_confirm_page_yet_is_saved_once_confirmed(
    op_client, campaign, box
):
    other = "smtp://sam:another-secret-9@smtp.example:587/"
    page = text(op_client.post(change(box), mailbox_form(campaign, connection_url=other,
                                                          daily_limit=400)))  # fmt: skip
    assert "another-secret-9" not in page and "hunter2" not in page
    assert "Kept for this save as you typed it, and not shown on this page: Connection URL." in page
    assert "_raise_secrets" in dict(hidden_fields(page))
    # Confirmed without a reason: asked again, the typed URL still kept and still not shown.
    again = op_client.post(change(box), urlencode(hidden_fields(page)),
                           content_type="application/x-www-form-urlencoded")  # fmt: skip
    page = text(again)
    assert "Give a reason" in page and "another-secret-9" not in page
    posted = [*hidden_fields(page), ("_raise_reason", "New relay, more volume")]

    saved = op_client.post(change(box), urlencode(posted),
                           content_type="application/x-www-form-urlencoded")  # fmt: skip

    assert saved.status_code == 302
    box.refresh_from_db()
    assert (box.daily_limit, box.connection_url, box.connection_url_env) == (400, other, "")
    assert op_client.session.get("aicmo_raise_secrets") == {}  # used up
    rows = " ".join(str(e.before) + str(e.after) for e in AuditEvent.objects.all())
    assert "another-secret-9" not in rows


def test_a_confirm_token_of_another_mailbox_brings_no_secret(op_client, campaign, box):
    other = "smtp://sam:another-secret-9@smtp.example:587/"
    page = text(op_client.post(change(box), mailbox_form(campaign, connection_url=other,
                                                          daily_limit=400)))  # fmt: skip
    token = dict(hidden_fields(page))["_raise_secrets"]
    second = Mailbox.objects.create(venture=campaign.venture, name="Lena", from_name="Lena",
                                    from_email="lena@venture.example")  # fmt: skip
    op_client.post(change(second), {**mailbox_form(campaign, connection_url="", from_email=
                   "lena@venture.example", daily_limit=10, campaigns=[]),
                   "_raise_secrets": token})  # fmt: skip
    second.refresh_from_db()
    assert (second.daily_limit, second.connection_url) == (10, "")  # saved, without Sam's URL


@pytest.mark.parametrize("status", ["draft", "lowered"])
def test_a_lower_cap_or_a_mailbox_no_running_campaign_uses_saves_at_once(
    op_client, campaign, box, status
):
    if status == "draft":
        campaign.status = "draft"
        campaign.save(update_fields=["status"])
    limit = 400 if status == "draft" else 20
    op_client.post(change(box), mailbox_form(campaign, connection_url="", daily_limit=limit))
    box.refresh_from_db()
    assert box.daily_limit == limit


def test_a_lower_minimum_gap_confirms_old_to_new_as_a_raise(op_client, campaign, box):
    response = op_client.post(
        change(box), mailbox_form(campaign, connection_url="", min_gap_seconds=5)
    )
    assert response.templates[0].name == "admin/ventures/campaign_limits_confirm.html"
    assert (
        "<td>Minimum gap between sends (seconds)</td><td>60</td><td>→</td><td><strong>5</strong>"
        in text(response)
    )
    box.refresh_from_db()
    assert box.min_gap_seconds == 60
    op_client.post(change(box), mailbox_form(campaign, connection_url="", min_gap_seconds=600,
                                             gap_jitter_seconds=0))  # fmt: skip
    box.refresh_from_db()
    assert (box.min_gap_seconds, box.gap_jitter_seconds) == (600, 0)  # slower: saved at once


@pytest.fixture
def lena(campaign):
    """A second mailbox of the venture, in no campaign's pool yet."""
    return Mailbox.objects.create(venture=campaign.venture, name="Lena", from_name="Lena",
                                  from_email="lena@venture.example", daily_limit=25)  # fmt: skip


def lena_form(campaign, **changes):
    """Lena's form, with the campaign ticked: she joins its pool."""
    return mailbox_form(campaign, name="Lena", from_name="Lena",
                        from_email="lena@venture.example", **changes)  # fmt: skip


def test_joining_a_running_campaigns_pool_in_the_same_save_confirms_the_pools_raise(
    op_client, campaign, box, lena
):
    form = lena_form(campaign, connection_url="", daily_limit=25)
    response = op_client.post(change(lena), form)
    assert response.templates[0].name == "admin/ventures/campaign_limits_confirm.html"
    page = text(response)
    assert (
        f"Mailbox Lena <lena@venture.example> sends for running campaign {campaign.name}"
        " (joining its pool)." in page
    )
    assert (
        f"<td>Sends allowed today from the mailboxes of {campaign.name}</td><td>40</td><td>→"
        "</td><td><strong>65</strong>" in page
    )
    assert not lena.campaigns.exists()

    op_client.post(change(lena), {**form, "_raise_confirmed": "yes", "_raise_reason": "Volume"})
    assert list(lena.campaigns.all()) == [campaign]
    event = AuditEvent.objects.for_entity(lena).get(action="mailbox.campaigns")
    assert (event.before, event.after, event.reason) == (
        {"campaigns": []}, {"campaigns": [campaign.slug]}, "Volume")  # fmt: skip


def test_raising_a_cap_while_joining_shows_both_and_a_draft_pool_joins_at_once(
    op_client, campaign, box, lena
):
    form = lena_form(campaign, connection_url="", daily_limit=30)
    page = text(op_client.post(change(lena), form))
    assert "<td>Daily limit</td><td>25</td><td>→</td><td><strong>30</strong>" in page
    assert "<td>40</td><td>→</td><td><strong>70</strong>" in page

    campaign.status = "draft"
    campaign.save(update_fields=["status"])
    op_client.post(change(lena), form)
    lena.refresh_from_db()
    assert (lena.daily_limit, list(lena.campaigns.all())) == (30, [campaign])


def test_whether_a_mailbox_sends_is_read_only_in_its_form_and_changed_by_operations(
    op_client, campaign, box
):
    page = text(op_client.get(change(box)))
    pause = reverse("admin:outreach_mailbox_operation", args=[box.pk, "pause"])
    assert f'href="{pause}"' in page and "Pause sending…" in page
    off = mailbox_form(campaign, connection_url="", daily_limit=35)
    del off["is_active"]  # an unticked box is not posted
    op_client.post(change(box), off)
    box.refresh_from_db()
    assert (box.is_active, box.daily_limit) == (True, 35)  # the form does not switch it off

    op_client.post(pause, {"post": "yes", "reason": "Changing the domain"})
    box.refresh_from_db()
    assert box.is_active is False
    event = AuditEvent.objects.for_entity(box).get(action="mailbox.pause")
    assert (event.after, event.reason) == ({"is_active": False}, "Changing the domain")
    op_client.post(change(box), mailbox_form(campaign, connection_url="", daily_limit=35))
    box.refresh_from_db()
    assert box.is_active is False  # nor on: only "Resume sending" does


def test_resuming_a_mailbox_the_engine_paused_confirms_names_the_pause_and_audits(
    op_client, campaign, box
):
    from outreach.health import ACTOR, MAILBOX_AUTO_PAUSE
    from outreach.models import AutoPause
    from outreach.selectors import mailboxes_auto_paused
    from ventures.services import audit_record

    reason = "bounce rate 9.0% (9 of 100 sent since 2026-12-07 09:00 UTC) is above 5.0%"
    Mailbox.objects.filter(pk=box.pk).update(is_active=False)  # as outreach.health pauses it
    audit_record(actor=ACTOR, action=MAILBOX_AUTO_PAUSE, entity=box, reason=reason,
                 before={"is_active": True}, after={"is_active": False})  # fmt: skip
    AutoPause.objects.create(campaign=campaign, mailbox=box, reason=reason)
    resume = reverse("admin:outreach_mailbox_operation", args=[box.pk, "resume"])
    assert f'href="{resume}"' in text(op_client.get(change(box)))

    page = text(op_client.get(resume))
    assert f"The engine paused {box} in campaign {campaign.name}: {reason}." in page
    op_client.post(resume, {"post": "yes", "reason": ""})
    box.refresh_from_db()
    assert box.is_active is False  # a reason is required

    op_client.post(resume, {"post": "yes", "reason": "Bounced addresses removed"})
    box.refresh_from_db()
    assert box.is_active is True
    event = AuditEvent.objects.for_entity(box).get(action="mailbox.resume")
    assert event.reason == "Bounced addresses removed"
    assert event.after == {"is_active": True,
                           "auto_pause": {"campaign": campaign.slug, "reason": reason}}  # fmt: skip
    assert mailboxes_auto_paused([campaign.pk]) == []


def test_a_new_mailbox_joining_a_running_campaigns_pool_confirms_first_too(
    op_client, campaign, box
):
    form = lena_form(campaign, daily_limit=25)
    add = reverse("admin:outreach_mailbox_add")
    page = text(op_client.post(add, form))
    assert (
        f"New mailbox Lena <lena@venture.example> sends for running campaign {campaign.name}"
        " (joining its pool)." in page
    )
    assert "<td>40</td><td>→</td><td><strong>65</strong>" in page
    assert "Now: no such mailbox yet." in page
    assert "not shown on this page: Connection URL." in page
    assert "hunter2" not in page
    assert not Mailbox.objects.filter(from_email="lena@venture.example").exists()

    posted = [*hidden_fields(page), ("_raise_reason", "Second sender")]
    op_client.post(add, urlencode(posted), content_type="application/x-www-form-urlencoded")
    lena = Mailbox.objects.get(from_email="lena@venture.example")
    assert lena.connection_url == SECRET  # as typed on the add form, never shown since
    assert list(lena.campaigns.all()) == [campaign]
    event = AuditEvent.objects.for_entity(lena).get(action="mailbox.campaigns")
    assert event.reason == "Second sender"
