"""The admin's front page is the operator's dashboard: per venture and campaign the state
badge, today's sends against the cap that binds, the outbox's queue, rates, SLA breaches,
unknown messages, tasks due, imports in progress, preflight and worker health; the same
number of queries whatever the number of campaigns."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import strip_tags

from leads.models import BatchState
from outreach.dispatch import tick
from outreach.feedback import reply_record
from outreach.models import (
    AutoPause,
    FeedbackEvent,
    FeedbackKind,
    MessageState,
    OutboundMessage,
    Sentiment,
    StepKind,
)
from outreach.sla import reply_sla_state
from outreach.tests.outbox import NOON, pooled_mailboxes, running_campaign, two_step_sequence
from tests.factories import (
    CampaignFactory,
    ImportBatchFactory,
    LeadFactory,
    MembershipFactory,
    UserFactory,
    VentureFactory,
)
from ventures.models import Campaign, WorkerHeartbeat
from ventures.roles import ADMINISTRATOR, OPERATOR
from ventures.services import campaign_set_kill_switch, campaign_transition

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]


def page_text(response) -> str:
    assert response.status_code == 200
    return re.sub(r"\s+", " ", strip_tags(response.content.decode()))


def row_of(response, name: str) -> str:
    """The text of the dashboard row of campaign `name`."""
    html = response.content.decode()
    found = re.search(r'<tr class="dash-row[^"]*">\s*<th scope="row"><a[^>]*>' + re.escape(name)
                      + r"</a>.*?</tr>", html, re.S)  # fmt: skip
    assert found, f"no dashboard row for {name}"
    return re.sub(r"\s+", " ", strip_tags(found.group(0))).strip()


def started(campaign):
    return campaign_transition(campaign=campaign, action="start", actor="setup")


@pytest.fixture
def venture():
    """(Overrides conftest's, whose `operator` and `viewer` are its members.) Acme's campaigns in each state an operator meets, as of NOON: one running that sent
    six first emails today, one auto-paused, one killed, one paused, an import running."""
    with time_machine.travel(NOON, tick=False):
        acme = VentureFactory(name="Acme Robotics", slug="acme", daily_send_limit=120)
        spring = running_campaign(venture=acme, name="Spring outreach", daily_limit=5000)
        two_step_sequence(spring)
        leads = LeadFactory.create_batch(6, campaign=spring)
        tick()
        firsts = {m.lead_id: m for m in OutboundMessage.objects.filter(step__position=1)}
        assert len(firsts) == 6 and all(m.state == MessageState.SENT for m in firsts.values())
        # A positive reply from the first lead, received 25 hours ago: past the 24 h SLA.
        reply = reply_record(message=firsts[leads[0].pk], sentiment=Sentiment.POSITIVE, actor="op")
        FeedbackEvent.objects.filter(pk=reply.pk).update(received_at=NOON - dt.timedelta(hours=25))
        FeedbackEvent.objects.create(
            source="test", event_id="bounce-1", kind=FeedbackKind.BOUNCED,
            message=firsts[leads[1].pk], lead=leads[1], venture_id=acme.pk, received_at=NOON,
        )  # fmt: skip
        follow = {m.lead_id: m for m in OutboundMessage.objects.filter(step__position=2)}
        OutboundMessage.objects.filter(pk=follow[leads[2].pk].pk).update(state=MessageState.UNKNOWN)
        OutboundMessage.objects.filter(pk=follow[leads[3].pk].pk).update(
            kind=StepKind.CALL, state=MessageState.TASK_OPEN, due_at=NOON - dt.timedelta(hours=1)
        )
        OutboundMessage.objects.filter(pk=follow[leads[4].pk].pk).update(
            due_at=NOON - dt.timedelta(minutes=1)
        )
        cold = started(CampaignFactory(venture=acme, name="Cold CTOs"))
        campaign_transition(campaign=cold, action="pause", actor="auto-pause",
                            reason="Auto-paused: bounce rate 6.0% (6 of 100 sent) is above 5.0%")  # fmt: skip
        AutoPause.objects.create(campaign=cold, reason="bounce rate 6.0% (6 of 100 sent)")
        old = started(CampaignFactory(venture=acme, name="Old list"))
        campaign_set_kill_switch(campaign=old, on=True, actor="setup", reason="Spam trap hit")
        summer = started(CampaignFactory(venture=acme, name="Summer promo"))
        campaign_transition(campaign=summer, action="pause", actor="setup")
        ImportBatchFactory(campaign=spring, state=BatchState.RUNNING, source="Apollo DACH",
                           rows_total=200, rows_done=50)  # fmt: skip
        ImportBatchFactory(campaign=spring, state=BatchState.DONE, source="Finished list",
                           rows_total=10, rows_done=10)  # fmt: skip
    return acme


@pytest.fixture
def at_noon():
    with time_machine.travel(NOON, tick=False):
        yield


def index(client, user):
    client.force_login(user)
    return client.get(reverse("admin:index"))


def test_a_running_campaign_shows_todays_sends_against_the_binding_cap_and_its_queue(
    client, operator, at_noon
):
    row = row_of(index(client, operator), "Spring outreach")
    assert "Running" in row
    assert "6 of 120 today (venture cap binds)" in row
    # queued (scheduled/deferred) 3, due now 1, unknown 1, tasks due 1, replies waiting 1
    # with 1 past the SLA, reply 1/6, bounce 1/6, complaints none.
    assert row.endswith("3 1 1 1 1 1 past SLA 16.7% 16.7% 0.0%")


def test_halted_campaigns_show_their_badges_and_the_auto_pause_why(client, operator, at_noon):
    response = index(client, operator)
    assert "Auto-paused: bounce rate 6.0% (6 of 100 sent) is above 5.0%" in row_of(
        response, "Cold CTOs"
    )
    assert "paused 2026-12-02" in row_of(response, "Cold CTOs")
    assert "Killed: Spam trap hit" in row_of(response, "Old list")
    assert "Paused" in row_of(response, "Summer promo")
    assert "0 of 50 today (campaign cap binds)" in row_of(response, "Summer promo")


def test_problems_come_first_with_links_to_where_the_operator_acts(client, operator, at_noon):
    response = index(client, operator)
    html = response.content.decode()
    problems = html[html.index("Needs you now") : html.index("dash-health")]
    spring = OutboundMessage.objects.values_list("campaign_id", flat=True).first()
    for text in (
        "No worker seen",
        "Cold CTOs: Auto-paused",
        "Old list: Killed: Spam trap hit",
        "Spring outreach: positive replies past the SLA",
        "Spring outreach: unknown messages to settle",
        "Spring outreach: manual tasks due",
    ):
        assert text in problems
    assert f"/admin/outreach/feedbackevent/?campaign={spring}&amp;handling=overdue" in problems
    assert (
        f"/admin/outreach/outboundmessage/?campaign={spring}&amp;state__exact=unknown" in problems
    )
    assert f"/admin/outreach/manualtask/?campaign={spring}&amp;state__exact=task_open" in problems
    assert "Summer promo" not in problems  # paused by a person: not a problem


def test_imports_in_progress_show_a_progress_bar(client, operator, at_noon):
    response = index(client, operator)
    text = page_text(response)
    assert "Imports in progress" in text
    assert "Apollo DACH Spring outreach Running 25% 50 of 200" in text
    assert 'value="25"' in response.content.decode()
    assert "Finished list" not in text


def test_another_ventures_campaign_is_not_shown(client, operator, at_noon):
    started(CampaignFactory(venture=VentureFactory(name="Other Co", slug="other"), name="Rival"))
    text = page_text(index(client, operator))
    assert "Spring outreach" in text
    assert "Rival" not in text and "Other Co" not in text


def test_an_administrator_sees_every_venture_and_the_kill_switch_control(client, venture, at_noon):
    started(CampaignFactory(venture=VentureFactory(name="Other Co", slug="other"), name="Rival"))
    text = page_text(index(client, UserFactory(username="admin-ann", role=ADMINISTRATOR)))
    assert "Acme Robotics" in text and "Other Co" in text and "Rival" in text
    assert "Turn on the global kill switch" in text


def test_a_viewer_sees_the_figures_but_no_controls(client, viewer, at_noon):
    response = index(client, viewer)
    assert "6 of 120 today (venture cap binds)" in row_of(response, "Spring outreach")
    html = response.content.decode()
    assert "kill-control" not in html and "<form" not in html.split('id="dashboard"')[1]


def test_a_user_of_no_venture_sees_the_hint_not_an_empty_dashboard(client, venture):
    text = page_text(index(client, UserFactory(username="op-new", role=OPERATOR)))
    assert "You are not a member of any venture yet" in text
    assert "Needs you now" not in text and "All clear" not in text


def test_all_is_calm_when_nothing_needs_the_operator(client, settings):
    venture = VentureFactory(name="Quiet Co", slug="quiet")
    started(CampaignFactory(venture=venture, name="Steady", send_days="1234567",
                            send_window_start=dt.time(0), send_window_end=dt.time(23, 59)))  # fmt: skip
    WorkerHeartbeat.objects.create(name="cluster", last_seen=dt.datetime.now(dt.UTC))
    user = UserFactory(username="op-calm", role=OPERATOR)
    MembershipFactory(venture=venture, user=user)
    text = page_text(index(client, user))
    assert "All clear." in text and "Needs you now" not in text
    assert "Worker seen 0 s ago." in text and "Preflight checks pass" in text


def test_a_failing_cheap_preflight_check_is_named(client, operator, settings, at_noon):
    settings.AICMO_ARTIFACT_DIR = settings.BASE_DIR / "manage.py" / "not-a-dir"
    text = page_text(index(client, operator))
    assert "Preflight: AICMO_ARTIFACT_DIR" in text and "(aicmo.E004)" in text


def fleet_of(venture, count: int) -> None:
    for n in range(count):
        campaign = running_campaign(venture=venture, name=f"Campaign {n}")
        two_step_sequence(campaign)
        LeadFactory.create_batch(2, campaign=campaign)
        ImportBatchFactory(campaign=campaign, state=BatchState.RUNNING, rows_total=4)
    tick()
    sent = OutboundMessage.objects.filter(state=MessageState.SENT)
    for message in sent:
        reply_record(message=message, sentiment=Sentiment.POSITIVE, actor="op")


def queries_of_index(client, user) -> int:
    client.force_login(user)
    client.get(reverse("admin:index"))  # caches of a process's first page (content types)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("admin:index")).status_code == 200
    return len(queries)


@pytest.mark.parametrize("role", [OPERATOR, ADMINISTRATOR])
def test_the_dashboard_costs_the_same_queries_for_one_campaign_or_five(client, role):
    counts = []
    for n, size in enumerate((1, 5)):
        with time_machine.travel(NOON + dt.timedelta(days=n), tick=False):
            venture = VentureFactory(name=f"Venture {size}", slug=f"v{size}")
            fleet_of(venture, size)
            user = UserFactory(username=f"user-{role}-{size}", role=role)
            MembershipFactory(venture=venture, user=user)
            counts.append(queries_of_index(client, user))
            text = page_text(client.get(reverse("admin:index")))
            assert f"Campaign {size - 1}" in text
    assert counts[0] == counts[1]


@pytest.mark.parametrize("hours, overdue", [(24, True), (48, False), (0, False)])
def test_a_reply_is_past_the_sla_by_its_own_campaigns_hours(client, operator, at_noon, hours,
                                                            overdue):  # fmt: skip
    spring = OutboundMessage.objects.values_list("campaign", flat=True).first()
    Campaign.objects.filter(pk=spring).update(reply_sla_hours=hours)
    row = row_of(index(client, operator), "Spring outreach")
    assert ("1 past SLA" in row) is overdue
    event = FeedbackEvent.objects.get(kind=FeedbackKind.REPLIED)
    assert (reply_sla_state(event, now=NOON).overdue) is overdue  # the rule it counts by


# --- Mailboxes the engine paused ------------------------------------------------------------------


@pytest.fixture
def bouncing_box(venture, operator, settings):
    """A running campaign of Acme whose first mailbox the engine paused for its bounces (the
    real path: sends, bounce reports, the health check); its second mailbox keeps sending."""
    from django.test import TestCase

    from outreach.feedback import Incoming, feedback_record
    from outreach.models import Mailbox

    settings.AICMO_AUTOPAUSE_MIN_SENDS = 20
    settings.AICMO_AUTOPAUSE_BOUNCE_RATE = 0.05
    settings.AICMO_AUTOPAUSE_CHECK_SECONDS = 0
    with time_machine.travel(NOON, tick=False):
        campaign = running_campaign(venture=venture, name="Mailbox test")
        two_step_sequence(campaign)
        boxes = pooled_mailboxes(campaign, 2, domain="acme.example")
        LeadFactory.create_batch(80, campaign=campaign)
        tick(campaign=campaign)
        bad = OutboundMessage.objects.filter(campaign=campaign, mailbox=boxes[0], step__position=1)
        for n, message in enumerate(bad[:3]):
            OutboundMessage.objects.filter(pk=message.pk).update(esp_message_id=f"esp-{n}")
            with TestCase.captureOnCommitCallbacks(execute=True):
                feedback_record(
                    Incoming(source="postmark", kind="bounced", event_id=f"bounce-box-{n}",
                             esp_message_id=f"esp-{n}", recipient=message.recipient)
                )  # fmt: skip
    boxes[0].refresh_from_db()
    assert not boxes[0].is_active and Mailbox.objects.get(pk=boxes[1].pk).is_active
    return boxes[0]


def problems_of(response) -> str:
    html = response.content.decode()
    return html[html.index("Needs you now") : html.index("dash-health")]


def test_a_mailbox_the_engine_paused_is_a_problem_line_with_its_reason_and_a_link(
    client, operator, bouncing_box, at_noon
):
    problems = problems_of(index(client, operator))
    url = reverse("admin:outreach_mailbox_change", args=[bouncing_box.pk])
    line = re.search(rf'<li><a href="{re.escape(url)}">(.*?)</a></li>', problems, re.S)
    assert line, problems
    assert line.group(1).startswith(
        "Mailbox Sam 0 &lt;sam0@acme.example&gt; (Mailbox test): Auto-paused: bounce rate "
    )
    assert line.group(1).endswith("is above 5.0%")
    assert "sam1@acme.example" not in problems  # still sending


def test_a_mailbox_switched_off_by_a_person_is_not_a_problem_line(
    client, operator, bouncing_box, at_noon
):
    from outreach.models import Mailbox
    from ventures.services import audit_changes, snapshot

    def switch(box, on: bool) -> None:
        before = snapshot(box)
        Mailbox.objects.filter(pk=box.pk).update(is_active=on)
        box.refresh_from_db()
        audit_changes(actor=operator, entity=box, before=before, action="mailbox.update")

    switch(bouncing_box, True)  # the operator fixed the list and re-activated it ...
    switch(bouncing_box, False)  # ... then switched it off themselves: their choice
    manual = Mailbox.objects.create(venture=bouncing_box.venture, name="Spare",
                                    from_email="spare@acme.example", is_active=False)  # fmt: skip
    manual.campaigns.add(*bouncing_box.campaigns.all())
    page = index(client, operator).content.decode()
    assert "sam0@acme.example" not in page.split("dash-health")[0]
    assert "spare@acme.example" not in page.split("dash-health")[0]


def test_a_paused_mailbox_of_another_venture_is_not_shown(client, bouncing_box, at_noon):
    outsider = UserFactory(username="op-other", role=OPERATOR)
    other = VentureFactory(name="Other Co", slug="other")
    MembershipFactory(venture=other, user=outsider)
    started(CampaignFactory(venture=other, name="Rival"))
    assert "sam0@acme.example" not in index(client, outsider).content.decode()


# --- Shown once -------------------------------------------------------------------------------


def test_a_missing_worker_is_said_once_in_needs_you_now(client, operator, at_noon):
    response = index(client, operator)
    text = page_text(response)
    assert text.count("No worker seen") == 1
    assert "No worker seen" in problems_of(response)


def test_a_healthy_worker_is_a_green_note_not_a_problem(client, operator, at_noon):
    WorkerHeartbeat.objects.create(name="cluster", last_seen=NOON)
    response = index(client, operator)
    assert page_text(response).count("Worker seen 0 s ago.") == 1
    assert "Worker seen" not in problems_of(response)


# --- Due now stays cheap -----------------------------------------------------------------------


def test_due_now_counts_each_campaigns_past_due_messages_up_to_its_bound(
    client, operator, at_noon, monkeypatch
):
    from aicmo_site import dashboard

    spring = Campaign.objects.get(name="Spring outreach")
    row = row_of(index(client, operator), "Spring outreach")
    assert row.endswith("3 1 1 1 1 1 past SLA 16.7% 16.7% 0.0%")  # 1 due now of 3 queued
    OutboundMessage.objects.filter(campaign=spring, state=MessageState.SCHEDULED).update(
        due_at=NOON - dt.timedelta(hours=2)
    )
    assert " 3 3 1 1 1 1 past SLA" in row_of(index(client, operator), "Spring outreach")
    monkeypatch.setattr(dashboard, "DUE_SHOWN", 2)  # past the bound: counted no further
    assert " 3 2+ 1 1 1 1 past SLA" in row_of(index(client, operator), "Spring outreach")
    assert "0 0 0 0 0" in row_of(index(client, operator), "Summer promo")


@pytest.mark.postgres
def test_due_now_is_counted_from_the_campaign_due_index(venture, at_noon):
    """PostgreSQL's plan (the production database's; SQLite's planner, without statistics,
    picks any index on tiny tables)."""
    from aicmo_site.dashboard import _due_now_counts

    spring = Campaign.objects.get(name="Spring outreach")
    query = _due_now_counts([spring.pk], NOON)
    assert list(query) == [(spring.pk, 1)]
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        # Tiny tables are cheaper to scan: forbid that, so the plan shows whether the index
        # serves the count at all.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(str(row) for row in cursor.fetchall())
    assert "outbound_campaign_due_idx" in plan, plan
