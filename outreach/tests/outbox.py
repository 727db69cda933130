"""A running campaign with a two-step email sequence, as the outbox tests need it."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from outreach.models import Mailbox, Sequence, SequenceStep, StepKind
from tests.factories import CampaignFactory, MessageTemplateFactory, VentureFactory
from ventures.models import CampaignStatus

# A Wednesday, 12:00 in Berlin: inside the campaign's window.
NOON = dt.datetime(2026, 12, 2, 11, 0, tzinfo=dt.UTC)


def running_campaign(*, daily_limit: int = 1000, venture=None, **fields):
    venture = venture or VentureFactory(daily_send_limit=100_000)
    campaign = CampaignFactory(
        venture=venture,
        status=CampaignStatus.RUNNING,
        started_at=NOON - dt.timedelta(days=3),
        daily_send_limit=daily_limit,
        send_days="1234567",
        send_window_start=dt.time(8, 0),
        send_window_end=dt.time(18, 0),
        timezone="Europe/Berlin",
        **fields,
    )
    return campaign


def two_step_sequence(campaign, *, second=StepKind.EMAIL, delay_days: int = 3) -> Sequence:
    sequence = Sequence.objects.create(campaign=campaign, slug="main", name="Main", is_default=True)
    first = SequenceStep.objects.create(sequence=sequence, position=1, kind=StepKind.EMAIL)
    first.templates.add(MessageTemplateFactory(campaign=campaign, name="Opener"))
    follow = SequenceStep.objects.create(
        sequence=sequence, position=2, kind=second, delay_days=delay_days
    )
    follow.templates.add(
        MessageTemplateFactory(
            campaign=campaign,
            name="Follow-up",
            channel="email",
        )
    )
    return sequence


def first_emails_sent(count: int, *, esp_id: str = "") -> list:
    """`count` first emails of a running campaign sent at NOON (proof mode), oldest first;
    with `esp_id` (a format with {n}, {pk}), each is given the ESP's id it names."""
    import time_machine

    from outreach.dispatch import tick
    from outreach.models import OutboundMessage
    from tests.factories import LeadFactory

    with time_machine.travel(NOON, tick=False):
        campaign = running_campaign()
        two_step_sequence(campaign)
        LeadFactory.create_batch(count, campaign=campaign)
        tick()
    messages = list(OutboundMessage.objects.filter(step__position=1).order_by("id"))
    assert len(messages) == count
    if esp_id:
        for n, m in enumerate(messages):
            m.esp_message_id = esp_id.format(n=n, pk=m.pk)
        OutboundMessage.objects.bulk_update(messages, ["esp_message_id"])
    return messages


VARIANTS = (("cost of manual reporting", "A"), ("hours saved", "B"), ("peer proof", "C"))


def variant_sequence(campaign, variants=VARIANTS) -> list:
    """The campaign's default sequence: one email step whose pool has a template per variant
    (narrative angle, variant label); returns the templates."""
    sequence = Sequence.objects.create(campaign=campaign, slug="main", name="Main", is_default=True)
    step = SequenceStep.objects.create(sequence=sequence, position=1, kind=StepKind.EMAIL)
    templates = [
        MessageTemplateFactory(
            campaign=campaign, name=f"Opener {label}", narrative_angle=angle, variant_label=label
        )
        for angle, label in variants
    ]
    step.templates.add(*templates)
    return templates


def narrative_stats() -> dict[tuple, tuple]:
    """Every narrative arm's counters: (venture, segment, angle, variant) -> (sends,
    deliveries, replies, positive replies, objections)."""
    from outreach.models import NarrativeStat

    return {
        (s.venture_id, s.segment_id, s.narrative_angle, s.variant_label): (
            s.sends, s.deliveries, s.replies, s.positive_replies, s.objections,
        )
        for s in NarrativeStat.objects.all()
    }  # fmt: skip


def midday_zone() -> str:
    """A time zone where it is now well inside the day, so an all-day window is open (for
    tests whose real processes run at the real time)."""
    now = dt.datetime.now(dt.UTC)
    for zone in ("UTC", "Asia/Tokyo", "America/New_York", "Asia/Kolkata"):
        if 2 <= now.astimezone(zoneinfo.ZoneInfo(zone)).hour <= 20:
            return zone
    return "UTC"


def all_day_campaign(*, venture_cap: int):
    """A running campaign open all day, now, whose venture's daily cap is `venture_cap`; the
    campaign's own limit is far above it."""
    zone = midday_zone()
    venture = VentureFactory(daily_send_limit=venture_cap, timezone=zone)
    return CampaignFactory(
        venture=venture,
        status=CampaignStatus.RUNNING,
        daily_send_limit=1_000_000,
        send_days="1234567",
        send_window_start=dt.time(0, 0),
        send_window_end=dt.time(23, 59),
        timezone=zone,
    )


def tick_processes_stop(procs) -> list[str]:
    """SIGTERM to `manage.py tick --loop` processes, each once it has begun its first pass
    (until then it has no SIGTERM handler and would die of the signal); their stderr. Each
    must stop cleanly."""
    import signal
    import time

    from outreach.models import DispatchRun

    for proc in procs:
        started = DispatchRun.objects.filter(worker__endswith=f":{proc.pid}")
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
    errors = []
    for proc in procs:
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        errors.append(err)
    return errors


def pooled_mailboxes(campaign, count: int, *, domain: str = "venture.example") -> list[Mailbox]:
    """`count` mailboxes of the campaign's venture in its pool ("Sam N" <samN@domain>), with
    no gap between sends so that one tick sends every due message."""
    boxes = [
        Mailbox.objects.create(venture=campaign.venture, name=f"Box {n}", from_name=f"Sam {n}",
                               from_email=f"sam{n}@{domain}", daily_limit=1000,
                               min_gap_seconds=0, gap_jitter_seconds=0)
        for n in range(count)
    ]  # fmt: skip
    for box in boxes:
        box.campaigns.add(campaign)
    return boxes
