"""A running campaign with a two-step email sequence, as the outbox tests need it."""

from __future__ import annotations

import datetime as dt

from outreach.models import Sequence, SequenceStep, StepKind
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
