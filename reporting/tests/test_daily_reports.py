"""The daily report: written once a day after its hour in the campaign's time zone, by the
django-q2 schedule or `report due`, kept for `keep_days`; a task run twice (django-q2 may)
or by two workers at once writes it once."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django_q.models import Schedule

from reporting.apps import REPORT_SCHEDULE
from reporting.models import ReportFile, ReportSchedule
from reporting.services import report_file_path, reports_due
from tests.factories import CampaignFactory
from tests.proc import clean_env, manage_started, running_database_url

# 06:30 and 07:30 in Berlin (UTC+1 in December).
BEFORE = dt.datetime(2026, 12, 2, 5, 30, tzinfo=dt.UTC)
AFTER = dt.datetime(2026, 12, 2, 6, 30, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def artifacts(settings, tmp_path):
    settings.AICMO_ARTIFACT_DIR = tmp_path


@pytest.fixture
def schedule(db):
    campaign = CampaignFactory(timezone="Europe/Berlin")
    return ReportSchedule.objects.create(
        campaign=campaign, hour=7, formats=["md", "html"], keep_days=2
    )


def test_the_report_is_written_after_its_hour_once_a_day(schedule):
    assert reports_due(BEFORE) == []
    written = reports_due(AFTER)
    assert sorted(r.format for r in written) == ["html", "md"]
    assert all(r.scheduled and r.generated_by == "schedule" for r in written)
    assert all(report_file_path(r).stat().st_size == r.size for r in written)
    assert reports_due(AFTER + dt.timedelta(minutes=15)) == []  # run again: nothing more
    assert len(reports_due(AFTER + dt.timedelta(days=1))) == 2
    assert ReportFile.objects.count() == 4


def test_reports_older_than_keep_days_are_deleted_with_their_files(schedule):
    first = reports_due(AFTER)
    paths = [report_file_path(r) for r in first]
    for day in (1, 2, 3):
        reports_due(AFTER + dt.timedelta(days=day))
    assert not any(p.exists() for p in paths)
    assert ReportFile.objects.count() == 2 * 3  # days 1..3 kept (2 days back from day 3), not day 0
    assert not ReportFile.objects.filter(pk__in=[r.pk for r in first]).exists()


def test_an_inactive_schedule_writes_nothing(schedule):
    schedule.is_active = False
    schedule.save()
    assert reports_due(AFTER) == []


def test_a_schedule_names_only_known_formats(schedule):
    schedule.formats = ["html", "docx"]
    with pytest.raises(ValidationError, match="Unknown format 'docx'"):
        schedule.full_clean()
    schedule.formats = []
    with pytest.raises(ValidationError, match="A list of formats"):
        schedule.full_clean()


def test_migrate_makes_the_django_q_schedule(db):
    made = Schedule.objects.get(name=REPORT_SCHEDULE)
    assert (made.func, made.schedule_type, made.minutes) == ("reporting.tasks.reports_due", "I", 15)


@pytest.mark.postgres
def test_two_workers_at_once_write_each_daily_report_once(transactional_db, tmp_path):
    """Three real processes run `report due` at the same moment: one report per schedule."""
    schedules = [
        ReportSchedule.objects.create(
            campaign=CampaignFactory(timezone="Pacific/Kiritimati"), hour=0, formats=["md"]
        )
        for _ in range(3)
    ]
    env = clean_env(DATABASE_URL=running_database_url(), AICMO_ARTIFACT_DIR=str(tmp_path))
    procs = [manage_started("report", "due", "--json", env=env) for _ in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    assert sum(json.loads(out)["written"] for out, _ in results) == len(schedules)
    assert ReportFile.objects.count() == 3
    assert sorted(ReportFile.objects.values_list("campaign_id", flat=True)) == sorted(
        s.campaign_id for s in schedules
    )


def test_the_daily_task_runs_the_same_service(schedule):
    from reporting.tasks import reports_due as task

    with time_machine.travel(AFTER, tick=False):
        assert task() == 2
