"""The campaign page leads with its figures: the Figures panel reads a known campaign's funnel,
its sends and replies by day, its narrative arms, today's caps and the next sends exactly, in a
fixed number of queries; the configuration form is a section below (open and first when it has
errors); Viewers see the figures without the controls."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from outreach.enrollment import campaign_enrol
from outreach.models import (
    Mailbox,
    MessageState,
    OutboundMessage,
    SendLedger,
    Sequence,
    SequenceStep,
    StepKind,
)
from outreach.tests.outbox import NOON, running_campaign
from reporting.figures import campaign_report
from reporting.panel import campaign_glance
from reporting.tests.campaigns import known_campaign
from tests.factories import LeadFactory, MembershipFactory, MessageTemplateFactory
from ventures.tests.test_admin import campaign_form_data

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http", "report_settings")]

AT = NOON + dt.timedelta(days=3, hours=2)  # after the follow-up's tick, inside the window
BERLIN = "Europe/Berlin"


@pytest.fixture
def known(operator, viewer):
    campaign, facts = known_campaign()
    for user in (operator, viewer):
        MembershipFactory(venture=campaign.venture, user=user)
    return campaign, facts


def page(campaign) -> str:
    return reverse("admin:ventures_campaign_change", args=[campaign.pk])


def panel(body: str, title: str) -> str:
    """The HTML of the change panel titled `title`."""
    found = re.search(
        rf"<h2>{title}</h2>\s*<div class=\"change-panel-body\">(.*?)</fieldset>", body, re.S
    )
    assert found, f"no {title} panel"
    return found[1]


def cells(html: str, row_class: str) -> list[str]:
    row = re.search(rf'<tr class="{row_class}[^"]*">(.*?)</tr>', html, re.S)
    assert row, row_class
    return [
        re.sub(r"<[^>]+>", "", c).strip()
        for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row[1], re.S)
    ]


def test_the_funnel_counts_leads_as_the_full_report_does(known):
    campaign, _facts = known
    with time_machine.travel(AT, tick=False):
        glance = campaign_glance(campaign)
        report = campaign_report(campaign)
    assert glance.funnel == {
        "sent": 18, "delivered": 16, "replied": 3, "positive": 1, "bounced": 1, "unsubscribed": 1,
    }  # fmt: skip
    assert glance.funnel == {key: report.funnel[key] for key in glance.funnel}
    assert glance.rate("replied") == pytest.approx(3 / 18)


def page_at(client, user, campaign, at=AT) -> str:
    """The campaign page as `user` sees it at `at`."""
    client.force_login(user)
    with time_machine.travel(at, tick=False):
        return client.get(page(campaign)).content.decode()


def test_the_page_shows_each_figure_with_its_rate(client, operator, known):
    campaign, _facts = known
    figures = panel(page_at(client, operator, campaign), "Figures")
    assert cells(figures, "funnel-sent") == ["Leads sent to", "18", "", ""]
    assert cells(figures, "funnel-replied") == ["Replied", "3", "16.7%", ""]
    assert cells(figures, "funnel-positive") == ["Replied positively", "1", "5.6%", ""]
    assert cells(figures, "funnel-delivered")[1:3] == ["16", "88.9%"]
    assert cells(figures, "funnel-bounced")[1:3] == ["1", "5.6%"]
    assert cells(figures, "funnel-unsubscribed")[1:3] == ["1", "5.6%"]
    assert "<svg" in figures and "Sends and replies, last 14 days" in figures
    assert reverse("admin:reporting_campaign_report", args=[campaign.pk]) in figures
    assert "Open the full report" in figures


def test_sends_and_replies_by_day_cover_the_last_fourteen_days(known):
    campaign, _facts = known
    sent_day3 = OutboundMessage.objects.filter(
        campaign=campaign, state=MessageState.SENT, step__position=2
    ).count()
    with time_machine.travel(AT, tick=False):
        glance = campaign_glance(campaign)
    assert len(glance.days) == 14 and glance.days[-1] == dt.date(2026, 12, 5)
    by_day = dict(zip(glance.days, glance.sent_by_day, strict=True))
    assert by_day[dt.date(2026, 12, 2)] == 18
    assert by_day[dt.date(2026, 12, 5)] == sent_day3 > 0
    assert sum(glance.sent_by_day) == 18 + sent_day3
    replies = dict(zip(glance.days, glance.replied_by_day, strict=True))
    assert replies[dt.date(2026, 12, 2)] == 3 and sum(glance.replied_by_day) == 3
    with time_machine.travel(AT + dt.timedelta(days=14), tick=False):
        assert sum(campaign_glance(campaign).sent_by_day) == 0  # out of the window


def test_variants_show_the_ventures_narrative_arms_with_their_chances(known):
    campaign, _facts = known
    with time_machine.travel(AT, tick=False):
        glance = campaign_glance(campaign)
        report = campaign_report(campaign)
    (segment,) = [s for s in glance.standings if s.segment_name == "RevOps"]
    arms = {a.label: (a.stat.sends, a.stat.positive_replies) for a in segment.arms}
    (expected,) = [s for s in report.narratives if s.segment == "RevOps"]
    assert arms == {a.label: (a.sends, a.positive) for a in expected.arms}
    assert sum(s for s, _p in arms.values()) == 12  # the Apollo leads, in the segment
    assert sum(a.p_best for a in segment.arms) == pytest.approx(1.0, abs=0.01)


def test_cap_use_counts_todays_sends_against_each_level_and_marks_the_binding_one(
    client, operator, known
):
    campaign, _facts = known
    with time_machine.travel(AT, tick=False):
        glance = campaign_glance(campaign)
        client.force_login(operator)
        figures = panel(client.get(page(campaign)).content.decode(), "Figures")
    sent_today = OutboundMessage.objects.filter(
        campaign=campaign, state=MessageState.SENT, step__position=2
    ).count()
    caps = {cap.name: cap for cap in glance.caps}
    assert set(caps) == {"global", "venture", "campaign"}
    assert caps["campaign"].used == caps["venture"].used == caps["global"].used == sent_today
    assert caps["campaign"].limit == 1000 and caps["venture"].limit == 100_000
    assert [c.name for c in glance.caps if c.binds] == ["campaign"]
    assert cells(figures, "cap-campaign binds")[1:3] == [f"{sent_today:,}", "1,000"]
    assert "binds" in cells(figures, "cap-campaign binds")[0]
    assert "binds" not in cells(figures, "cap-venture")[0]


def test_next_sends_are_the_due_messages_at_the_send_windows_opening(client, operator):
    campaign = running_campaign()
    MembershipFactory(venture=campaign.venture, user=operator)
    # Outside the window (20:00 in Berlin): what is due goes out at tomorrow's opening.
    evening = dt.datetime(2026, 12, 2, 19, 0, tzinfo=dt.UTC)
    with time_machine.travel(evening, tick=False):
        campaign_due = _schedule_three(campaign, evening)
        glance = campaign_glance(campaign)
        client.force_login(operator)
        figures = panel(client.get(page(campaign)).content.decode(), "Figures")
    assert [n.recipient for n in glance.next_sends] == [m.recipient for m in campaign_due]
    opening = dt.datetime(2026, 12, 3, 8, 0, tzinfo=campaign.tzinfo)
    assert [n.at for n in glance.next_sends][:2] == [opening, opening]
    assert glance.next_sends[2].at == campaign_due[2].due_at  # due inside tomorrow's window
    assert "Thu 03 Dec 08:00" in figures and campaign_due[0].recipient in figures
    assert glance.scheduled == 3


def _schedule_three(campaign, now):
    """Three leads enrolled (the outbox plans their first email), then due an hour ago, now,
    and tomorrow at 10:00 in Berlin: the order the panel must show them in."""
    sequence = Sequence.objects.create(campaign=campaign, slug="main", name="Main", is_default=True)
    step = SequenceStep.objects.create(sequence=sequence, position=1, kind=StepKind.EMAIL)
    step.templates.add(MessageTemplateFactory(campaign=campaign, name="Opener"))
    for n in range(3):
        LeadFactory(campaign=campaign, email=f"next{n}@co.example", email_key=f"next{n}@co.example")
    assert campaign_enrol(campaign=campaign, now=now) == 3
    due = [now - dt.timedelta(hours=1), now, dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)]
    messages = list(OutboundMessage.objects.filter(campaign=campaign).order_by("lead__email"))
    for message, at in zip(messages, due, strict=True):
        message.due_at = at
        message.save(update_fields=["due_at"])
    return messages


def test_the_panel_reads_a_fixed_number_of_queries_whatever_the_campaign(known):
    campaign, _facts = known
    empty = running_campaign()
    with time_machine.travel(AT, tick=False):
        counts = []
        for each in (empty, campaign):
            with CaptureQueriesContext(connection) as queries:
                campaign_glance(each)
            counts.append(len(queries))
    assert counts[0] == counts[1] == 9, counts


def test_figures_come_before_the_configuration(client, operator, known):
    campaign, _facts = known
    client.force_login(operator)
    body = client.get(page(campaign)).content.decode()
    order = [body.index(s) for s in (
        "<h2>Figures</h2>", "Open the full report", "<h2>Outbox</h2>",
        '<details class="configuration"', 'name="daily_send_limit"', 'name="_save"',
    )]  # fmt: skip
    assert order == sorted(order)
    # The controls and the state badge above every figure.
    assert body.index('class="operation-pause"') < order[0]
    assert body.index('class="campaign-header"><span class="state state-') < order[0]
    assert '<details class="configuration" id="configuration">' in body  # collapsed
    assert "<summary>Configuration" in body


def save(client, operator, campaign, **changes):
    """The campaign form posted as a browser would, with `changes`."""
    client.force_login(operator)
    return client.post(page(campaign), campaign_form_data(client, campaign, **changes))


def test_a_form_with_errors_is_open_and_first(client, operator, known):
    campaign, _facts = known
    response = save(client, operator, campaign, name="")
    assert response.status_code == 200
    body = response.content.decode()
    assert '<details class="configuration" id="configuration" open>' in body
    assert (
        body.index('class="errornote"') < body.index('name="name"') < body.index("<h2>Figures</h2>")
    )
    assert body.count("<h2>Figures</h2>") == 1


def test_a_save_from_the_collapsed_section_still_saves(client, operator, known):
    campaign, _facts = known
    response = save(client, operator, campaign, objective="Book demos with RevOps leads")
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.objective == "Book demos with RevOps leads"


def test_a_viewer_sees_the_figures_but_no_controls(client, viewer, known):
    campaign, _facts = known
    body = page_at(client, viewer, campaign)
    figures = panel(body, "Figures")
    assert cells(figures, "funnel-sent")[1] == "18"
    assert 'class="state state-' in body
    for control in ("operation-pause", "operation-kill", "operation-stop", 'name="_save"'):
        assert control not in body


def test_the_mailboxes_level_counts_the_active_mailboxes_sends_today():
    with time_machine.travel(NOON, tick=False):
        campaign = running_campaign(daily_limit=5000)
        boxes = []
        for email, active in (("a@venture.example", True), ("b@venture.example", True),
                              ("c@venture.example", False)):  # fmt: skip
            box = Mailbox.objects.create(
                venture=campaign.venture, name=email, from_email=email, daily_limit=40,
                is_active=active,
            )  # fmt: skip
            box.campaigns.add(campaign)
            boxes.append(box)
        today = NOON.date()  # 11:00 UTC: the same day in the venture's and the campaign's zones
        for box, count in zip(boxes, (7, 5, 30), strict=True):
            SendLedger.objects.create(scope="mailbox", key=str(box.pk), day=today, count=count)
        SendLedger.objects.create(scope="campaign", key=str(campaign.pk), day=today, count=12)
        yesterday = today - dt.timedelta(days=1)
        SendLedger.objects.create(scope="campaign", key=str(campaign.pk), day=yesterday, count=99)
        caps = {cap.name: cap for cap in campaign_glance(campaign).caps}
    assert (caps["mailboxes"].used, caps["mailboxes"].limit, caps["mailboxes"].binds) == (
        12,
        80,
        True,
    )
    assert (caps["campaign"].used, caps["campaign"].binds) == (12, False)


def test_the_panel_counts_states_and_sends_per_day_from_the_tally_not_the_messages(settings):
    settings.AICMO_GLOBAL_DAILY_LIMIT = 100_000
    campaign, _facts = known_campaign()
    with CaptureQueriesContext(connection) as queries:
        glance = campaign_glance(campaign)
    grouped = [
        q["sql"] for q in queries.captured_queries
        if '"outreach_outboundmessage"' in q["sql"] and "GROUP BY" in q["sql"]
    ]  # fmt: skip
    assert grouped == []
    assert glance.messages["sent"] > 0
    counted = OutboundMessage.objects.filter(campaign=campaign).order_by().values_list("state")
    assert glance.messages == dict(counted.annotate(n=Count("pk")))
