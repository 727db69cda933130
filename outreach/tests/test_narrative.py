"""Narrative memory: figures per venture, segment, angle and variant, counted once per email
as sends and feedback arrive and equal to a rebuild; Thompson sampling with an exploration
floor, reproducible from its seed; and what the console and the command show."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from leads.models import Lead
from outreach.dispatch import tick
from outreach.feedback import Incoming, feedback_record, reply_record
from outreach.models import FeedbackEvent, MessageState, NarrativeStat, OutboundMessage, StepKind
from outreach.narrative import (
    Arm,
    NarrativeBoard,
    choice_replay,
    history_figures,
    narrative_feedback_record,
    narrative_rebuild,
    probability_best,
    rate_interval,
    variant_choose,
)
from outreach.services import unknown_message_settle
from outreach.tests.outbox import (
    NOON,
    VARIANTS,
    narrative_stats,
    running_campaign,
    two_step_sequence,
    variant_sequence,
)
from tests.factories import IcpSegmentFactory, LeadFactory, VentureFactory
from tests.http import text
from ventures.models import AuditEvent

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]


@pytest.fixture(autouse=True)
def open_caps(settings):
    settings.AICMO_GLOBAL_DAILY_LIMIT = 1_000_000
    settings.AICMO_RECIPIENT_DOMAIN_DAILY_LIMIT = 1_000_000


def variant_campaign(*, venture=None, variants=VARIANTS):
    """A running campaign whose only step is an email with one template per variant."""
    campaign = running_campaign(daily_limit=1_000_000, venture=venture)
    return campaign, variant_sequence(campaign, variants)


def send(campaign, count: int, *, segment=None) -> list[OutboundMessage]:
    """`count` new leads (in `segment`) enrolled and sent to by a real tick, at noon."""
    leads = LeadFactory.build_batch(count, campaign=campaign, segment=segment)
    created = Lead.objects.bulk_create(leads)
    with time_machine.travel(NOON, tick=False):
        tick()
    return list(
        OutboundMessage.objects.filter(lead__in=created, state=MessageState.SENT).order_by("id")
    )


def arm_of(message) -> tuple:
    version = message.template_version
    return (message.venture_id, message.segment_id, version.narrative_angle, version.variant_label)


def event(message, kind: str, n: int | str, **fields):
    recorded, _ = feedback_record(
        Incoming(source=fields.pop("source", "postmark"), kind=kind, event_id=f"{kind}-{n}",
                 recipient=message.recipient, thread_ids=[message.message_id], **fields)
    )  # fmt: skip
    return recorded


# --- Counting -----------------------------------------------------------------------------------


def test_a_send_counts_in_its_venture_segment_angle_and_variant():
    campaign, _ = variant_campaign()
    segment = IcpSegmentFactory(venture=campaign.venture, name="RevOps leads")
    in_segment = send(campaign, 30, segment=segment)
    outside = send(campaign, 12)
    assert len(in_segment) == 30 and len(outside) == 12
    expected = Counter(arm_of(m) for m in in_segment + outside)
    assert {k: v[0] for k, v in narrative_stats().items()} == dict(expected)
    assert {m.segment_id for m in in_segment} == {segment.pk}
    assert {m.segment_id for m in outside} == {None}
    # A lead that moves to another segment later takes none of its history along.
    Lead.objects.filter(pk=in_segment[0].lead_id).update(segment=None)
    assert (
        narrative_stats() == {k: (v, 0, 0, 0, 0) for k, v in expected.items()} == history_figures()
    )


def test_delivery_reply_positive_and_objection_count_once_per_email():
    campaign, _ = variant_campaign()
    message = send(campaign, 1)[0]
    arm = arm_of(message)
    event(message, "delivered", 1)
    event(message, "delivered", 2, source="import")  # the same delivery, reported twice
    assert narrative_stats()[arm] == (1, 1, 0, 0, 0)
    event(message, "replied", 1, text="Thanks, tell me more.")  # no reading yet
    assert narrative_stats()[arm] == (1, 1, 1, 0, 0)
    reply_record(message=message, sentiment="positive", actor="op", notes="Wants a call.")
    assert narrative_stats()[arm] == (1, 1, 1, 1, 0)
    # Read again: an objection after all. It moves; nothing counts twice.
    reply_record(message=message, sentiment="objection", actor="op", notes="Budget is gone.")
    assert narrative_stats()[arm] == (1, 1, 1, 0, 1)
    event(message, "replied", 2, text="Actually, yes: let's talk.")  # no reading: the last stays
    event(message, "autoresponded", 3, text="I am out of office.")
    event(message, "opened", 4)
    assert narrative_stats()[arm] == (1, 1, 1, 0, 1)
    reply_record(message=message, sentiment="positive", actor="op", notes="They came round.")
    assert narrative_stats()[arm] == (1, 1, 1, 1, 0) == history_figures()[arm]


def test_an_unknown_email_settled_as_sent_counts_once():
    campaign, _ = variant_campaign()
    first, second = send(campaign, 2)
    OutboundMessage.objects.filter(pk__in=[first.pk, second.pk]).update(state=MessageState.UNKNOWN)
    NarrativeStat.objects.update(sends=0)
    unknown_message_settle(
        message=first, sent=True, actor="op", reason="The mail server's log shows it."
    )
    event(second, "delivered", 1)  # proof of sending settles it too, and counts its delivery
    assert sum(v[0] for v in narrative_stats().values()) == 2
    assert sum(v[1] for v in narrative_stats().values()) == 1
    assert narrative_stats() == history_figures()


def test_feedback_on_an_email_never_sent_counts_nothing():
    campaign, _ = variant_campaign()
    message = send(campaign, 1)[0]
    before = narrative_stats()
    feedback_record(
        Incoming(source="postmark", kind="delivered", event_id="x", recipient="nobody@else.example")
    )
    OutboundMessage.objects.filter(pk=message.pk).update(state=MessageState.FAILED)
    event(message, "replied", 1, sentiment="positive")
    assert narrative_stats() == before


def test_a_batch_reads_and_counts_its_narratives_in_a_fixed_number_of_queries():
    campaign, _ = variant_campaign()
    segment = IcpSegmentFactory(venture=campaign.venture)
    counts = []
    for n in (4, 40):
        Lead.objects.bulk_create(LeadFactory.build_batch(n, campaign=campaign, segment=segment))
        with time_machine.travel(NOON, tick=False), CaptureQueriesContext(connection) as queries:
            tick()
        counts.append(sum("narrativestat" in q["sql"] for q in queries.captured_queries))
    # The figures read once, then the sends: rows made if missing, locked, incremented.
    assert counts == [4, 4]
    assert sum(v[0] for v in narrative_stats().values()) == 44


def test_a_list_of_stored_events_counts_in_a_fixed_number_of_queries():
    campaign, _ = variant_campaign()
    messages = send(campaign, 12)
    counts = []
    for part in (messages[:3], messages[3:]):
        events = [
            FeedbackEvent.objects.create(
                source="esp", event_id=f"{kind}-{m.pk}", kind=kind, message=m, lead_id=m.lead_id,
                venture_id=m.venture_id, sentiment="positive" if kind == "replied" else "",
            )
            for m in part
            for kind in ("delivered", "replied")
        ]  # fmt: skip
        with CaptureQueriesContext(connection) as queries:
            narrative_feedback_record(events=events)
        counts.append(len(queries.captured_queries))
    assert counts[0] == counts[1] == 5  # emails locked, their events, the three for the figures
    assert sum(v[1] for v in narrative_stats().values()) == 12
    assert sum(v[3] for v in narrative_stats().values()) == 12
    assert narrative_stats() == history_figures()


def test_rebuild_equals_the_incremental_figures_after_a_mixed_history():
    campaign, _ = variant_campaign()
    segments = [IcpSegmentFactory(venture=campaign.venture, name=f"S{n}") for n in range(2)]
    messages = send(campaign, 24, segment=segments[0]) + send(campaign, 24, segment=segments[1])
    messages += send(campaign, 12)
    other, _ = variant_campaign(variants=VARIANTS[:2])  # another venture
    messages += send(other, 10)
    rng = random.Random(7)  # noqa: S311 - a seeded history
    for n, m in enumerate(messages):
        roll = rng.random()
        if roll < 0.7:
            event(m, "delivered", n)
        if roll < 0.2:
            event(m, "delivered", f"again-{n}", source="import")
        if 0.3 < roll < 0.6:
            event(m, "replied", n, text=rng.choice(["Sounds good.", "Too expensive.", "Later."]))
        if 0.4 < roll < 0.55:
            reply_record(message=m, sentiment=rng.choice(["positive", "objection"]), actor="op")
        if 0.45 < roll < 0.5:
            reply_record(message=m, sentiment=rng.choice(["positive", "negative"]), actor="op")
        if roll > 0.9:
            event(m, "bounced", n, reason="550 5.1.1")
    incremental = narrative_stats()
    assert sum(v[3] for v in incremental.values()) > 0  # the history has every kind in it
    assert sum(v[4] for v in incremental.values()) > 0
    result = narrative_rebuild()
    assert narrative_stats() == incremental == history_figures()
    assert result["arms_changed"] == 0
    assert result["sends"] == len(messages)
    # Figures that drifted (edited behind the engine's back) are set right, and audited.
    NarrativeStat.objects.filter(venture=campaign.venture).update(replies=999)
    again = narrative_rebuild(venture=campaign.venture, actor="cli:ops")
    assert narrative_stats() == incremental
    assert again["arms_changed"] == sum(1 for k in incremental if k[0] == campaign.venture_id)
    audit = AuditEvent.objects.get(action="narrative.rebuilt")
    assert (audit.actor, audit.venture_id) == ("cli:ops", campaign.venture_id)


def test_the_rebuild_command_reports_in_text_and_json(capsys):
    campaign, _ = variant_campaign()
    send(campaign, 5)
    NarrativeStat.objects.all().delete()
    call_command("narrative", "rebuild", "--venture", campaign.venture.slug)
    out = capsys.readouterr().out
    assert f"rebuilt for venture {campaign.venture.slug}" in out
    assert "from 5 sent emails" in out
    call_command("narrative", "rebuild", "--json")
    assert '"arms_changed": 0' in capsys.readouterr().out
    with pytest.raises(CommandError, match="No venture with slug or id 'nope'"):
        call_command("narrative", "rebuild", "--venture", "nope")


# --- The choice ---------------------------------------------------------------------------------


def test_the_choice_and_its_reasons_are_stored_and_replay_to_the_same_choice(settings):
    campaign, templates = variant_campaign()
    messages = send(campaign, 40)
    for m in messages:
        choice = m.narrative_choice
        assert choice["method"] in ("thompson", "explore")
        assert choice["chosen"] == m.template_id
        assert choice["seed"] == f"{settings.AICMO_NARRATIVE_SEED}:{m.idempotency_key}"
        assert [a["template"] for a in choice["arms"]] == sorted(t.pk for t in templates)
        assert all(set(a) >= {"mean", "draw", "sends", "positive"} for a in choice["arms"])
        replayed = choice_replay(choice)
        assert replayed == {k: v for k, v in choice.items() if k != "segment"}
    # Once figures exist, the posterior means at decision time are stored; the same figures
    # and seed choose the same again, and another seed draws differently.
    for n, m in enumerate(messages[:10]):
        reply_record(message=m, sentiment="positive", actor="op", notes=f"yes {n}")
    state = {arm: (figures[0], figures[3]) for arm, figures in narrative_stats().items()}
    later = send(campaign, 30)
    figures = {
        a["template"]: (a["sends"], a["positive"]) for a in later[0].narrative_choice["arms"]
    }
    assert sum(p for _, p in figures.values()) == 10
    assert later[0].narrative_choice["arms"][0]["mean"] == round(
        (1 + figures[templates[0].pk][1]) / (2 + figures[templates[0].pk][0]), 6
    )
    pool = sorted(templates, key=lambda t: t.pk)
    again = [NarrativeBoard(state).pick(m, pool) for m in later]
    assert [(t.pk, c) for t, c in again] == [(m.template_id, m.narrative_choice) for m in later]
    settings.AICMO_NARRATIVE_SEED = "another audit"
    other = [NarrativeBoard(state).pick(m, pool)[0].pk for m in later]
    assert other != [m.template_id for m in later]


def test_a_pool_of_one_needs_no_draw_and_a_manual_task_counts_in_no_narrative():
    campaign = running_campaign(daily_limit=1_000_000)
    sequence = two_step_sequence(campaign, second=StepKind.CALL, delay_days=0)
    LeadFactory(campaign=campaign)
    with time_machine.travel(NOON, tick=False):
        tick()
    email, call = OutboundMessage.objects.order_by("step__position")
    assert email.narrative_choice["method"] == "single"
    assert "draw" not in email.narrative_choice["arms"][0]
    assert email.template == sequence.steps.get(position=1).templates.get()
    assert call.state == MessageState.TASK_OPEN and call.narrative_choice == {}
    assert [v[0] for v in narrative_stats().values()] == [1]  # the email only


def test_the_message_page_shows_the_choice_readably(op_client, venture):
    campaign, _ = variant_campaign(venture=venture)
    message = send(campaign, 3)[0]
    page = text(op_client.get(reverse("admin:outreach_outboundmessage_change", args=[message.pk])))
    chosen = message.narrative_choice
    method = "Thompson sampling" if chosen["method"] == "thompson" else "Exploration"
    assert method in page
    assert f"Seed <code>{chosen['seed']}</code>" in page
    assert f"✓ {message.template.narrative_angle} · {message.template.variant_label}" in page
    assert "Posterior mean" in page and "50.00%" in page  # Beta(1, 1) before any send


def choices(arms, n: int, exploration: float) -> Counter:
    return Counter(
        variant_choose(arms, seed=f"floor:{i}", exploration=exploration)["chosen"] for i in range(n)
    )


def test_the_exploration_floor_keeps_every_variant_in_traffic():
    # A is far ahead: Thompson sampling alone would almost never send B or C.
    arms = [Arm(1, "a", "A", 2000, 200), Arm(2, "b", "B", 2000, 20), Arm(3, "c", "C", 2000, 20)]
    draws = 6000
    greedy = choices(arms, draws, 0.0)
    assert greedy[2] + greedy[3] < draws * 0.001
    floored = choices(arms, draws, 0.1)
    for template in (2, 3):  # each at least about floor / k
        assert floored[template] >= draws * 0.1 / 3 * 0.85
    assert floored[1] >= draws * 0.88
    methods = Counter(
        variant_choose(arms, seed=f"floor:{i}", exploration=0.1)["method"] for i in range(draws)
    )
    assert 0.08 < methods["explore"] / draws < 0.12


def test_the_interval_and_the_probability_of_being_best():
    low, high = rate_interval(8, 200)
    assert 0.020 < low < 0.021 and 0.076 < high < 0.078  # Wilson, 4% of 200
    assert rate_interval(0, 50)[0] == 0 and 0.07 < rate_interval(0, 50)[1] < 0.072
    assert rate_interval(0, 0) == (0.0, 1.0)
    even = probability_best([(100, 5), (100, 5)])
    assert abs(even[0] - 0.5) < 0.03 and sum(even) == pytest.approx(1)
    clear = probability_best([(1000, 20), (1000, 40), (1000, 80)])
    assert clear[2] > 0.99 and clear == probability_best([(1000, 20), (1000, 40), (1000, 80)])
    assert probability_best([(10, 1)]) == [1.0]


@pytest.mark.django_db(transaction=True, reset_sequences=True)
def test_selection_converges_to_the_best_variant_on_a_simulated_campaign():
    """2,400 emails in 20 batches; each variant's leads say yes at a known rate (2%, 4%, 8%),
    fed back through the real reply path before the next batch. Seeded: deterministic."""
    true_rate = {"A": 0.02, "B": 0.04, "C": 0.08}
    campaign, templates = variant_campaign()
    label_of = {t.pk: t.variant_label for t in templates}
    outcomes = random.Random(2026)  # noqa: S311 - a seeded simulation
    sent: list[str] = []
    for _ in range(20):
        for m in send(campaign, 120):
            sent.append(label_of[m.template_id])
            if outcomes.random() < true_rate[label_of[m.template_id]]:
                event(m, "replied", m.pk, sentiment="positive", text="Yes, let's talk.")
    assert len(sent) == 2400
    last = Counter(sent[1600:])
    assert last["C"] > 0.7 * 800  # the best variant takes most of the traffic at the end
    assert min(last["A"], last["B"]) > 0.1 / 3 * 800 * 0.5  # the others still get some
    rows = {s.variant_label: s for s in NarrativeStat.objects.all()}
    chances = probability_best([(rows[v].sends, rows[v].positive_replies) for v in "ABC"])
    assert max(chances) == chances[2] and chances[2] > 0.9
    assert narrative_stats() == history_figures()


# --- The console --------------------------------------------------------------------------------


def test_the_console_shows_which_narrative_wins_per_segment_and_how_sure(op_client, venture):
    segment = IcpSegmentFactory(venture=venture, name="RevOps leads")
    for (angle, label), positives in zip(VARIANTS, (8, 20, 40), strict=True):
        NarrativeStat.objects.create(
            venture=venture, segment=segment, narrative_angle=angle, variant_label=label,
            sends=400, replies=positives + 10, positive_replies=positives, objections=3,
        )  # fmt: skip
    for angle, label in VARIANTS[:2]:
        NarrativeStat.objects.create(
            venture=venture, narrative_angle=angle, variant_label=label, sends=30
        )
    other = VentureFactory(name="Other Co")
    NarrativeStat.objects.create(venture=other, narrative_angle="secret angle", sends=900)
    page = text(op_client.get(reverse("admin:outreach_narrativestat_changelist")))
    assert "RevOps leads" in page
    assert "★ peer proof · C (winning)" in page
    assert "peer proof · C leads: clear winner (99% chance it is the best)." in page
    assert "10.0% (7.4%–13.3%)" in page  # 40 of 400, with its 95% interval
    assert "No segment" in page and "Too early to tell: no positive replies yet (60 sent)." in page
    assert "secret angle" not in page and "Other Co" not in page
    # The standings keep to the venture filter; a filter value that is no id is ignored.
    filtered = op_client.get(reverse("admin:outreach_narrativestat_changelist") + "?venture=abc")
    assert filtered.status_code == 200 and "RevOps leads" in text(filtered)
