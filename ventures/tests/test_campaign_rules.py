"""Per-row rules of the control plane: send window, warm-up ramp, segment matching, validation,
and the worker set-up they rely on."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django_q.models import Schedule

from tests.factories import CampaignFactory, VentureFactory
from ventures.signals import HEARTBEAT_SCHEDULE

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
UTC = dt.UTC


def at(*args, tz=UTC) -> dt.datetime:
    return dt.datetime(*args, tzinfo=tz)


@pytest.fixture
def weekday_campaign(db):
    # Mon-Fri 09:00-17:00, in the venture's Europe/Berlin unless the lead has a zone.
    return CampaignFactory(
        venture=VentureFactory(timezone="Europe/Berlin"),
        send_days="12345",
        send_window_start=dt.time(9),
        send_window_end=dt.time(17),
    )


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (at(2026, 11, 23, 8, 0), True),  # Monday 09:00 Berlin: the window opens
        (at(2026, 11, 23, 7, 59), False),  # Monday 08:59 Berlin
        (at(2026, 11, 23, 15, 59), True),  # Monday 16:59 Berlin
        (at(2026, 11, 23, 16, 0), False),  # Monday 17:00 Berlin: the end is exclusive
        (at(2026, 11, 21, 12, 0), False),  # Saturday
        (at(2026, 11, 27, 12, 0), True),  # Friday
    ],
)
def test_send_window_is_read_in_the_campaign_timezone(weekday_campaign, moment, inside):
    assert weekday_campaign.is_in_send_window(moment) is inside


def test_send_window_follows_the_leads_own_timezone(weekday_campaign):
    # 15:00 UTC on a Monday: 16:00 in Berlin (inside), 10:00 in New York (inside),
    # and 21:00 UTC is 22:00 in Berlin (outside) but 16:00 in New York (inside).
    assert weekday_campaign.is_in_send_window(at(2026, 11, 23, 21, 0)) is False
    assert weekday_campaign.is_in_send_window(at(2026, 11, 23, 21, 0), NEW_YORK) is True
    # Friday 23:30 UTC is already Saturday in Berlin but still Friday in New York.
    assert weekday_campaign.is_in_send_window(at(2026, 11, 27, 23, 30), BERLIN) is False
    assert weekday_campaign.is_in_send_window(at(2026, 11, 27, 20, 30), NEW_YORK) is True


def test_campaign_timezone_overrides_the_ventures(weekday_campaign):
    weekday_campaign.timezone = "America/New_York"
    assert weekday_campaign.tzinfo == NEW_YORK
    assert weekday_campaign.is_in_send_window(at(2026, 11, 23, 21, 0)) is True


def test_warm_up_ramps_daily_and_never_exceeds_the_daily_limit(weekday_campaign):
    weekday_campaign.daily_send_limit = 40
    weekday_campaign.warmup_start_limit = 10
    weekday_campaign.warmup_daily_increase = 8
    weekday_campaign.started_at = at(2026, 11, 2, 10, 0)
    limits = [weekday_campaign.effective_daily_limit(dt.date(2026, 11, 2 + d)) for d in range(6)]
    assert limits == [10, 18, 26, 34, 40, 40]


def test_without_warm_up_or_before_start_the_daily_limit_applies(weekday_campaign):
    weekday_campaign.daily_send_limit = 40
    assert weekday_campaign.effective_daily_limit(dt.date(2026, 11, 2)) == 40
    weekday_campaign.warmup_start_limit = 5
    assert weekday_campaign.effective_daily_limit(dt.date(2026, 11, 2)) == 40  # not started


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("send_days", "1239", "ISO weekday digits"),
        ("send_days", "1123", "ISO weekday digits"),
        ("send_days", "", "This field cannot be blank"),
        ("timezone", "Mars/Olympus", "is not an IANA time zone"),
        ("send_window_end", dt.time(8), "must end after it starts"),
    ],
)
def test_invalid_campaign_configuration_is_rejected_with_a_message(
    weekday_campaign, field, value, message
):
    setattr(weekday_campaign, field, value)
    with pytest.raises(ValidationError, match=message):
        weekday_campaign.full_clean()


def test_task_queue_is_safe_for_at_least_once_delivery():
    q = settings.Q_CLUSTER
    assert q["orm"] == "default"
    assert q["timeout"] < q["retry"]
    assert 0 < q["max_attempts"] <= 5
    assert q["catch_up"] is False
    assert q["sync"] is True  # tests run tasks inline


@pytest.mark.django_db
def test_migrate_schedules_the_worker_heartbeat():
    schedule = Schedule.objects.get(name=HEARTBEAT_SCHEDULE)
    assert schedule.func == "ventures.tasks.worker_heartbeat"
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == (Schedule.MINUTES, 1, -1)
