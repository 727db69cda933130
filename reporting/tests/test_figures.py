"""The report's figures reconcile exactly with the database: a campaign with a known history,
every figure checked against what was done to it and against a naive per-lead count."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from leads.models import Lead, LeadStatus, Unsubscribe
from outreach.models import FeedbackEvent, MessageState, OutboundMessage
from reporting.figures import FUNNEL, campaign_report
from reporting.intelligence import Anomaly, anomalies, next_best_actions
from reporting.tests.campaigns import known_campaign

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http", "report_settings")]


@pytest.fixture
def known():
    return known_campaign()


def naive_funnel(campaign) -> dict[str, int]:
    """The funnel counted lead by lead with the ORM, the slow and obvious way."""
    counts = Counter()
    for lead in Lead.objects.filter(campaign=campaign):
        kinds = set(FeedbackEvent.objects.filter(lead=lead).values_list("kind", flat=True))
        sent = OutboundMessage.objects.filter(
            lead=lead, kind="email", state=MessageState.SENT
        ).count()
        counts["imported"] += 1
        counts["enrolled"] += hasattr(lead, "enrollment")
        kept_out = lead.status == LeadStatus.SUPPRESSED or lead.consent_status == "dnc"
        counts["suppressed_dnc"] += kept_out and not sent
        counts["erased"] += lead.status == LeadStatus.ERASED and not kept_out and not sent
        counts["sent"] += sent > 0
        for flag, kind in (("delivered", "delivered"), ("opened", "opened"), ("clicked", "clicked"),
                           ("replied", "replied"), ("autoreplied", "autoresponded"),
                           ("bounced", "bounced"), ("complained", "complained")):  # fmt: skip
            counts[flag] += kind in kinds
        counts["positive"] += FeedbackEvent.objects.filter(
            lead=lead, kind="replied", sentiment="positive"
        ).exists()
        counts["unsubscribed"] += (
            lead.status == LeadStatus.UNSUBSCRIBED or Unsubscribe.objects.filter(lead=lead).exists()
        )
    counts["eligible"] = counts["imported"] - counts["suppressed_dnc"] - counts["erased"]
    return {key: counts[key] for key, _label in FUNNEL}


def test_the_funnel_is_what_happened_to_the_leads(known):
    campaign, _facts = known
    report = campaign_report(campaign)
    assert report.funnel == {
        "imported": 20, "enrolled": 19, "suppressed_dnc": 2, "erased": 0, "eligible": 18,
        "sent": 18, "delivered": 16, "opened": 5, "clicked": 2, "replied": 3, "positive": 1,
        "autoreplied": 1, "bounced": 1, "complained": 1, "unsubscribed": 1,
    }  # fmt: skip
    assert report.funnel == naive_funnel(campaign)
    assert report.rate("replied") == pytest.approx(3 / 18)


def test_messages_steps_and_blocked_reasons_count_every_outbox_row(known):
    campaign, _facts = known
    report = campaign_report(campaign)
    states = Counter(
        OutboundMessage.objects.filter(campaign=campaign).values_list("state", flat=True)
    )
    assert report.messages["messages"] == sum(states.values()) == 37
    assert report.messages["emails_sent"] == states[MessageState.SENT] == 30
    assert report.messages["blocked"] == states[MessageState.BLOCKED] == 7
    assert report.messages["unknown"] == 0
    assert dict(report.blocked_by_reason) == {
        "replied": 3, "bounced": 1, "complained": 1, "dnc": 1, "unsubscribed": 1,
    }  # fmt: skip
    first, follow = report.steps
    assert (first.position, first.sent, first.blocked) == (1, 18, 1)
    assert (first.replied, first.positive, first.bounced) == (3, 1, 1)
    assert (follow.position, follow.sent, follow.blocked, follow.replied) == (2, 12, 6, 0)
    assert first.reply_rate == pytest.approx(3 / 18)
    assert [s["enrolled"] for s in report.sequences] == [19]


def test_attribution_splits_every_figure_by_where_the_leads_came_from(known):
    campaign, _facts = known
    report = campaign_report(campaign)
    lists = {b.value: b.counts for b in report.attribution["source_list"]}
    stages = ("imported", "enrolled", "suppressed_dnc", "erased", "eligible", "sent", "delivered",
              "opened", "clicked", "replied", "positive", "autoreplied", "bounced", "complained",
              "unsubscribed")  # fmt: skip
    assert lists == {
        "Apollo Q3": dict(
            zip(stages, (12, 12, 0, 0, 12, 12, 11, 5, 2, 2, 1, 1, 1, 0, 1), strict=True)
        ),
        "HubSpot": dict(zip(stages, (8, 7, 2, 0, 6, 6, 5, 0, 0, 1, 0, 0, 0, 1, 0), strict=True)),
    }
    for dimension, rows in report.attribution.items():
        for column in stages:
            assert sum(b.counts[column] for b in rows) == report.funnel[column], (dimension, column)
    assert {b.value for b in report.attribution["utm_campaign"]} == {"q3-outbound", "(not set)"}
    assert {b.value for b in report.attribution["segment"]} == {"RevOps", "(no segment)"}
    batches = [b.value for b in report.attribution["source_batch"]]
    assert any("apollo.csv" in b for b in batches) and any("hubspot.csv" in b for b in batches)
    apollo = next(b for b in report.attribution["source_list"] if b.value == "Apollo Q3")
    assert apollo.reply_rate == pytest.approx(2 / 12)
    assert apollo.positive_rate == pytest.approx(1 / 12)


def test_narratives_count_sends_replies_and_positives_per_segment_and_variant(known):
    campaign, facts = known
    report = campaign_report(campaign)
    arms = {(s.segment, a.label): (a.sends, a.replies, a.positive, a.objections)
            for s in report.narratives for a in s.arms}  # fmt: skip
    # Naive: every sent first email (the only step with narratives), by segment and variant.
    naive = Counter()
    for m in OutboundMessage.objects.filter(campaign=campaign, state="sent", step__position=1):
        segment = "RevOps" if m.segment_id else "(no segment)"
        version = m.template_version
        naive[(segment, f"{version.narrative_angle} · {version.variant_label}")] += 1
    assert {k: v[0] for k, v in arms.items()} == dict(naive)
    assert sum(v[1] for v in arms.values()) == 3 and sum(v[2] for v in arms.values()) == 1
    assert sum(v[3] for v in arms.values()) == 1  # the price objection
    positive_message = OutboundMessage.objects.get(lead=facts["positive"], step__position=1)
    version = positive_message.template_version
    assert arms[("RevOps", f"{version.narrative_angle} · {version.variant_label}")][2] == 1
    for segment in report.narratives:
        assert sum(a.p_best for a in segment.arms) == pytest.approx(1, abs=0.01)
        for arm in segment.arms:
            assert 0 <= arm.interval[0] <= (arm.positive / arm.sends) <= arm.interval[1] <= 1
    assert report.objections == [("Price", 1)]


def test_timeline_roi_and_unsubscribe_reasons(known):
    campaign, _facts = known
    report = campaign_report(campaign)
    days = {d.day: (d.sent, d.replied, d.bounced, d.unsubscribed) for d in report.timeline}
    assert days == {
        dt.date(2026, 12, 2): (18, 3, 1, 1),
        dt.date(2026, 12, 3): (0, 0, 0, 0),
        dt.date(2026, 12, 4): (0, 0, 0, 0),
        dt.date(2026, 12, 5): (12, 0, 0, 0),
    }
    assert report.unsubscribe_reasons == [("Not relevant to me", 1)]
    # The positive lead's own estimate (4,000) wins over the campaign's 1,500 per reply; the
    # cost is the fixed 100 plus 30 emails at 0.50.
    roi = report.roi
    assert (roi.value, roi.valued_by_lead, roi.cost) == (Decimal("4000.00"), 1, Decimal("115.00"))
    assert roi.multiple == Decimal("34.78") and roi.cost_per_positive == Decimal("115.00")


def test_next_best_actions_name_the_figures_that_triggered_them(known):
    campaign, _facts = known
    report = campaign_report(campaign)
    finished = Lead.objects.filter(campaign=campaign, enrollment__state="finished").exclude(
        feedbackevent__kind="replied"
    )
    assert report.finished_without_reply == finished.count() == 12
    titles = {a.title: a.because for a in report.actions}
    assert titles["Start a nurture sequence"] == "12 leads finished the sequence without a reply."
    assert "3 messages were blocked for replied" in titles["Look at messages blocked: replied"]


def test_the_report_reads_in_a_fixed_number_of_queries(known):
    campaign, _facts = known
    with CaptureQueriesContext(connection) as small:
        campaign_report(campaign)
    Lead.objects.bulk_create(
        Lead(campaign=campaign, venture=campaign.venture, email=f"x{n}@more.example",
             email_key=f"x{n}@more.example", identity_hash=f"{n:064x}", source_list=f"List {n}")
        for n in range(40)
    )  # fmt: skip
    with CaptureQueriesContext(connection) as big:
        campaign_report(campaign)
    assert len(big.captured_queries) == len(small.captured_queries) <= 25


def test_an_empty_campaign_reports_zeros_and_no_rates():
    from outreach.tests.outbox import running_campaign

    report = campaign_report(running_campaign())
    assert set(report.funnel.values()) == {0}
    assert report.rate("replied") is None
    assert report.timeline == [] and report.narratives == [] and report.actions == []
    assert report.verdicts == {"worked": [], "didnt": ["Nothing has been sent yet."]}


# --- Intelligence rules on figures made to trip them --------------------------------------------


def figures(**fields):
    base = {
        "funnel": {key: 0 for key, _label in FUNNEL}, "messages": {"unknown": 0}, "narratives": [],
        "attribution": {"source_list": [], "source_batch": []}, "finished_without_reply": 0,
        "blocked_by_reason": [], "steps": [], "timeline": [], "campaign": SimpleNamespace(send_days="12345"),
    }  # fmt: skip
    base.update(fields)
    return SimpleNamespace(**base)


def test_a_variant_very_likely_best_is_named_with_its_probability():
    from reporting.figures import Arm, SegmentArms

    arms = [Arm("RevOps", "cost", "A", 400, 30, 24, 0, p_best=0.97),
            Arm("RevOps", "proof", "B", 400, 12, 6, 1, p_best=0.03)]  # fmt: skip
    actions = next_best_actions(figures(narratives=[SegmentArms("RevOps", arms, "")]))
    assert [a.title for a in actions] == ["Shift traffic to cost · A in segment RevOps"]
    assert actions[0].because.startswith("cost · A beats the others with 97% probability")


def test_a_list_that_bounces_six_percent_is_to_be_cleaned():
    from reporting.figures import Breakdown

    rows = [Breakdown("Purchased list", {"imported": 100, "sent": 100, "delivered": 94,
                                          "replied": 1, "positive": 0, "bounced": 6})]  # fmt: skip
    funnel = {key: 0 for key, _label in FUNNEL} | {"sent": 100, "bounced": 6}
    actions = next_best_actions(
        figures(funnel=funnel, attribution={"source_list": rows, "source_batch": []})
    )
    assert actions[0].title == "Clean list Purchased list"
    assert "bounce rate from list Purchased list is 6.0% (6 of 100" in actions[0].because


def test_a_day_far_above_or_below_the_weeks_before_is_an_anomaly():
    start = dt.date(2026, 11, 2)  # a Monday
    days = [
        SimpleNamespace(day=start + dt.timedelta(d), sent=50, replied=1, bounced=1)
        for d in range(10)
    ]
    days[8].bounced = 9  # a spike of bounces on a Tuesday
    days[9].sent = 5  # a drop of sends on the Wednesday after
    found = anomalies(figures(timeline=days, campaign=SimpleNamespace(send_days="1234567")))
    assert found == [
        Anomaly("2026-11-11", "emails sent", 5, 50, "drop"),
        Anomaly("2026-11-10", "bounces", 9, 1, "spike"),
    ]
