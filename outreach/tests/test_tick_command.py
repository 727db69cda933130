"""`manage.py tick` and its schedule."""

from __future__ import annotations

import io
import json

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django_q.models import Schedule

from outreach.signals import TICK_SCHEDULE
from outreach.tests.outbox import NOON, running_campaign, two_step_sequence
from tests.factories import LeadFactory

pytestmark = pytest.mark.django_db


def test_tick_runs_one_pass_and_prints_the_run_as_json():
    campaign = running_campaign()
    two_step_sequence(campaign)
    LeadFactory.create_batch(2, campaign=campaign)
    out = io.StringIO()
    with time_machine.travel(NOON, tick=False):
        call_command("tick", "--campaign", campaign.slug, "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["counts"] == {"sent": 2}
    assert f"/runs/run-{data['run']}-" in data["artifacts"]


def test_tick_names_a_campaign_it_cannot_find_in_one_line():
    with pytest.raises(CommandError, match="No campaign with slug or id 'nope'"):
        call_command("tick", "--campaign", "nope")


def test_the_tick_schedule_exists_after_migrate_and_runs_the_task():
    schedule = Schedule.objects.get(name=TICK_SCHEDULE)
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "outreach.tasks.dispatch_tick",
        Schedule.MINUTES,
        1,
    )
    from outreach.tasks import dispatch_tick

    assert isinstance(dispatch_tick(), int)
