"""`manage.py demo` runs the whole product end to end, and a second run changes nothing; with
DEBUG on it makes a local login for `make serve`, with DEBUG off it says how to make one."""

from __future__ import annotations

import datetime as dt
import json
import re
import zipfile
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from aicmo_site.demo_login import database_is_local, demo_login_refusal
from leads.models import Lead
from outreach.models import DispatchRun, OutboundMessage
from outreach.tests.outbox import NOON
from tests.factories import objection_rules_restore
from ventures.models import AuditEvent, Campaign
from ventures.roles import OPERATOR

# 00:10 in Berlin: the campaign's pacing lets only the first few sends of the day out.
JUST_AFTER_MIDNIGHT = dt.datetime(2026, 12, 1, 23, 10, tzinfo=dt.UTC)


def demo() -> dict:
    objection_rules_restore()  # the demo's replies are filed under the starting rules
    out = StringIO()
    call_command("demo", "--json", stdout=out)
    return json.loads(out.getvalue())


def demo_text() -> str:
    objection_rules_restore()
    out = StringIO()
    call_command("demo", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_demo_runs_the_campaign_end_to_end_and_is_idempotent(settings):
    with time_machine.travel(NOON, tick=False):
        first = demo()

    campaign = Campaign.objects.get(slug=first["campaign"]["slug"])
    # It ends with the campaign's proof bundle, kept (listed in the console) and verifiable.
    from reporting.bundle import bundle_verify
    from reporting.models import ReportFile

    bundle = first["report"]
    assert bundle_verify(bundle["path"]).ok
    assert ReportFile.objects.get(campaign__slug=first["campaign"]["slug"]).format == "zip"
    with zipfile.ZipFile(bundle["path"]) as archive:
        names = archive.namelist()
        markdown = archive.read("northwind-pipeline-q3-report.md").decode("utf-8")
    assert "northwind-pipeline-q3-report.pdf" in names and len(names) == bundle["files"]
    assert sum(n.endswith(".eml") for n in names) == 51
    assert "| Sent at least one email | 51 |" in markdown
    assert "| Replied positively | 1 |" in markdown
    assert campaign.status == "running"
    assert campaign.mode == "proof"
    assert first["import"]["counts"]["created"] == 51  # the Apollo sample's unique valid emails
    assert first["leads"]["active"] == 45  # after the simulated feedback (see below)
    assert first["templates"]["blocked"] == []
    for path in first["previews"]:
        text = Path(path).read_text(encoding="utf-8")
        assert text.startswith("Subject: ")
        assert "{{" not in text
        assert "Unsubscribe" in text or "linkedin" in path  # the LinkedIn note is no email
    # One tick: every lead's first email (.eml, nothing sent) and its same-day LinkedIn task.
    tick = first["tick"]
    assert tick["counts"] == {"sent": 51, "task_open": 51}
    emls = sorted(Path(tick["eml_dir"]).glob("*.eml"))
    assert tick["eml_files"] == len(emls) == 51
    assert "Unsubscribe" in emls[0].read_text(encoding="utf-8")
    assert [Path(p).name for p in tick["artifacts"]] == ["decisions.csv", "summary.md", "proof.sql"]
    assert "| sent | 51 |" in (Path(tick["artifact_dir"]) / "summary.md").read_text()
    # The simulated feedback stopped sixteen sequences (three replies and, as the sequence
    # stops on a reply from the same company, eleven colleagues'; two hard bounces; an
    # unsubscribe): their LinkedIn tasks are blocked, the other 35 stay open.
    assert first["outbox"]["open_tasks"] == 35
    assert first["outbox"]["enrolled"] == {"pipeline-review": 51, "dach-priority": 0}
    feedback = first["feedback"]
    assert feedback["by_kind"] == {
        "delivered": 49, "opened": 17, "clicked": 5, "bounced": 2, "deferred": 1,
        "unsubscribed": 1, "replied": 3, "autoresponded": 1,
    }  # fmt: skip
    assert feedback["stored"] == 79
    readings = sorted((r["sentiment"], r["objection"]) for r in feedback["replies"])
    assert readings == [("", ""), ("objection", "has_solution"), ("objection", "price"),
                        ("positive", "")]  # fmt: skip
    away = next(r for r in feedback["replies"] if r["effect"].startswith("an auto-reply"))
    # Its lead's next step is a LinkedIn task, not an email: nothing to move.
    assert "away until" in away["effect"] and "no pending step" in away["effect"]
    leads = Lead.objects.filter(campaign=campaign)
    assert (leads.filter(status="bounced").count(), leads.filter(status="replied").count(),
            leads.filter(status="unsubscribed").count()) == (2, 3, 1)  # fmt: skip

    audit_rows = AuditEvent.objects.count()
    with time_machine.travel(NOON + dt.timedelta(minutes=5), tick=False):
        second = demo()

    assert second["loaded"]["changed"] is False
    assert second["import"]["counts"]["created"] == 0
    assert Lead.objects.filter(campaign=campaign).count() == 51
    # A re-run records the (forced) import batch, but changes no configuration.
    assert not AuditEvent.objects.filter(pk__gt=audit_rows, action__endswith=".update").exists()
    # ... and its tick finds nothing new: one message per lead and step, already there.
    assert second["tick"]["run"] != tick["run"]
    assert (second["tick"]["counts"], second["tick"]["eml_files"]) == ({}, 0)
    assert OutboundMessage.objects.filter(campaign=campaign).count() == 102
    assert second["feedback"] == {"stored": 0, "by_kind": {}, "replies": []}
    # Its bundle replaces the first one: one demo bundle, the first one's file gone.
    assert ReportFile.objects.filter(campaign=campaign).count() == 1
    assert not Path(bundle["path"]).exists() and bundle_verify(second["report"]["path"]).ok


@pytest.mark.django_db
def test_demo_prints_the_run_its_files_and_the_open_tasks():
    with time_machine.travel(NOON, tick=False):
        text = demo_text()
        again = demo_text()

    run = OutboundMessage.objects.filter(state="sent").first().run
    assert f"Tick: run #{run.pk} (proof mode): 51 sent, 51 task_open.\n" in text
    assert f"  .eml files (51): {run.artifact_dir}/eml\n" in text
    assert f"  run artifacts: {run.artifact_dir} (decisions.csv, summary.md, proof.sql)\n" in text
    assert "Leads by sequence: 51 in pipeline-review, 0 in dach-priority.\n" in text
    assert "Open manual tasks: 35 " in text
    assert "Feedback (simulated, as the ESP and the leads would answer): 79 events (" in text
    assert "Feedback (simulated): stored already; nothing new." in again
    assert (
        f"Tick: run #{run.pk + 1} (proof mode): nothing was due, so nothing new was sent." in again
    )
    assert ".eml files" not in again


@pytest.mark.django_db
def test_demo_says_how_many_sends_its_pacing_held_back():
    with time_machine.travel(JUST_AFTER_MIDNIGHT, tick=False):
        text = demo_text()
        again = demo()

    run = DispatchRun.objects.order_by("pk").first()
    sent, deferred = run.counts["sent"], run.counts["deferred"]
    assert (sent + deferred, set(run.counts)) == (51, {"sent", "deferred", "task_open"})
    assert 0 < sent < 51
    assert f"Tick: run #{run.pk} (proof mode): {deferred} deferred, {sent} sent, " in text
    assert (
        f"  {deferred} deferred (pacing), e.g. paced across the send window: next slot at " in text
    )
    assert f"  .eml files ({sent}): " in text
    # A moment later the held messages still wait for their slots: nothing is due yet.
    assert again["tick"]["counts"] == {}
    assert dt.datetime.fromisoformat(again["outbox"]["next_due"]) > JUST_AFTER_MIDNIGHT


# --- The demo login -------------------------------------------------------------------------
@pytest.fixture
def local_debug(settings, tmp_path, plain_http):
    """`make demo` on a developer's machine: DEBUG on, proof mode, var/ of its own."""
    settings.DEBUG = True
    settings.VAR_DIR = tmp_path
    return tmp_path


@pytest.mark.django_db
def test_demo_with_debug_on_makes_a_login_that_works_with_the_printed_password(local_debug, client):
    with time_machine.travel(NOON, tick=False):
        text = demo_text()
    printed = re.search(r"  Log in as demo with password (\S+) \(an Operator of venture", text)
    assert printed, text
    password = printed.group(1)
    assert text.index("Operator console: `make serve`") < text.index("Log in as demo")
    assert f"the password kept in {local_debug / 'demo_password'}" in text
    assert (local_debug / "demo_password").stat().st_mode & 0o077 == 0  # the owner's only

    assert client.login(username="demo", password=password)
    campaigns = client.get(reverse("admin:ventures_campaign_changelist"))
    assert campaigns.status_code == 200
    assert "Northwind" in campaigns.content.decode()  # the demo venture's campaign
    user = get_user_model().objects.get(username="demo")
    assert [g.name for g in user.groups.all()] == [OPERATOR] and not user.is_superuser
    assert list(user.venture_memberships.values_list("venture__slug", flat=True)) == [
        Campaign.objects.get().venture.slug
    ]
    assert AuditEvent.objects.filter(action="membership.create", actor="demo").count() == 1


@pytest.mark.django_db
def test_a_second_demo_run_prints_the_same_password_and_restores_it(local_debug, client):
    with time_machine.travel(NOON, tick=False):
        first = demo()["login"]
        user = get_user_model().objects.get(username="demo")
        user.set_password("changed-by-someone-1")
        user.save()
        second = demo()["login"]
    assert first["created"] is True and second["created"] is False
    assert second["password"] == first["password"]
    assert client.login(username="demo", password=first["password"])
    assert AuditEvent.objects.filter(action="membership.create").count() == 1


@pytest.mark.django_db
def test_demo_with_debug_off_makes_no_login_and_prints_the_command_instead(settings, tmp_path):
    settings.DEBUG = False
    settings.VAR_DIR = tmp_path
    with time_machine.travel(NOON, tick=False):
        text = demo_text()
    assert (
        "  No demo login: DEBUG is off (it is made for local use only). Create your login "
        "with: .venv/bin/python manage.py createsuperuser\n" in text
    )
    assert not get_user_model().objects.filter(username="demo").exists()
    assert not (tmp_path / "demo_password").exists()


def test_demo_login_is_refused_in_live_mode_and_on_a_remote_database(settings):
    settings.DEBUG = True
    settings.AICMO_SEND_MODE = "live"
    assert demo_login_refusal() == "AICMO_SEND_MODE is live"
    pg = "django.db.backends.postgresql"
    assert not database_is_local({"ENGINE": pg, "HOST": "db.example.com"})
    assert database_is_local({"ENGINE": pg, "HOST": "127.0.0.1"})
    assert database_is_local({"ENGINE": pg, "HOST": "/var/run/postgresql"})
    assert database_is_local({"ENGINE": "django.db.backends.sqlite3", "NAME": "x.sqlite3"})
