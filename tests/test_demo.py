"""`manage.py demo` runs the whole product end to end, and a second run changes nothing."""

from __future__ import annotations

import datetime as dt
import json
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.core.management import call_command

from leads.models import Lead
from outreach.models import DispatchRun, OutboundMessage
from outreach.tests.outbox import NOON
from ventures.models import AuditEvent, Campaign

# 00:10 in Berlin: the campaign's pacing lets only the first few sends of the day out.
JUST_AFTER_MIDNIGHT = dt.datetime(2026, 12, 1, 23, 10, tzinfo=dt.UTC)


def demo() -> dict:
    out = StringIO()
    call_command("demo", "--json", stdout=out)
    return json.loads(out.getvalue())


def demo_text() -> str:
    out = StringIO()
    call_command("demo", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_demo_runs_the_campaign_end_to_end_and_is_idempotent(settings):
    with time_machine.travel(NOON, tick=False):
        first = demo()

    campaign = Campaign.objects.get(slug=first["campaign"]["slug"])
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
