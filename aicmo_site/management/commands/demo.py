"""`demo`: run the demo campaign end to end in proof mode and say where to look.

Loads the demo venture, segments, campaign, templates, mailbox, sequences and routing from
docs/examples/demo-campaign.toml, starts the campaign, imports a sample lead list, renders every
template for every lead and writes one rendered example per template to the artifact directory.
Then it runs one tick of the outbox for the campaign: the leads are enrolled and routed, their
first emails are written as .eml files (proof mode sends nothing), the same day's LinkedIn
step opens a manual task per lead, and the run leaves decisions.csv, summary.md and proof.sql.
Idempotent: running it again updates the same records instead of duplicating them, and its
tick finds nothing new to send (the outbox holds one message per lead and step).
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from leads.models import import_counts_text
from leads.selectors import lead_counts
from leads.services.imports import leads_demo_import
from outreach.dispatch import tick
from outreach.models import DispatchRun
from outreach.selectors import campaign_outbox, run_held
from templating.services import campaign_templates_check
from ventures.campaign_code import CampaignCodeError, campaign_load
from ventures.commands import ProjectCommand
from ventures.models import Campaign, CampaignStatus, SendMode
from ventures.selectors import campaign_summary
from ventures.services import DomainError, campaign_transition

DEMO_FILE = settings.BASE_DIR / "docs" / "examples" / "demo-campaign.toml"
ACTOR = "demo"
RUN_ARTIFACTS = ("decisions.csv", "summary.md", "proof.sql")


class Command(ProjectCommand):
    help = "Load the demo venture and campaign (proof mode), run it, and print where to look."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")

    def handle(self, *args, **options) -> None:
        try:
            loaded = campaign_load(path=DEMO_FILE, actor=ACTOR)
            campaign = self._run(loaded.campaign)
            imported = leads_demo_import(campaign=campaign, actor=ACTOR)
            check = campaign_templates_check(campaign=campaign, actor=ACTOR)
        except (CampaignCodeError, DomainError) as exc:
            raise CommandError(f"demo failed: {exc}") from None
        try:
            previews = _write_previews(campaign, check.examples)
            run = tick(worker=ACTOR, campaign=campaign)
        except OSError as exc:
            raise CommandError(
                f"AICMO_ARTIFACT_DIR={str(settings.AICMO_ARTIFACT_DIR)!r} is not writable: "
                f"{exc.strerror or exc}."
            ) from None
        summary = campaign_summary(campaign)
        outbox = campaign_outbox(campaign)
        dispatched = _run_report(run)
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "loaded": loaded.as_dict(),
                        "campaign": summary,
                        "import": imported.as_dict(),
                        "leads": lead_counts(campaign),
                        "templates": check.as_dict(),
                        "previews": [str(p) for p in previews],
                        "tick": dispatched,
                        "outbox": outbox,
                    },
                    default=str,
                )
            )
            return
        counts = imported.counts
        self.stdout.write(loaded.summary())
        self.stdout.write(
            f"Demo campaign '{campaign.slug}' of venture '{campaign.venture.slug}': "
            f"{campaign.get_status_display()}, {campaign.mode} mode, "
            f"{summary['effective_daily_limit']} sends allowed today."
        )
        self.stdout.write(
            f"Imported {imported.file_name}: {import_counts_text(counts)} "
            f"{lead_counts(campaign)['active']} active leads in the campaign."
        )
        self.stdout.write(f"Templates: {check.summary()}")
        for path in previews:
            self.stdout.write(f"  example render: {path}")
        for line in _tick_lines(dispatched, outbox):
            self.stdout.write(line)
        self.stdout.write(f"Artifacts: {settings.AICMO_ARTIFACT_DIR}")
        self.stdout.write("Operator console: `make serve`, then http://127.0.0.1:8000/admin/")

    def _run(self, campaign: Campaign) -> Campaign:
        if campaign.mode != SendMode.PROOF:
            raise CommandError("the demo campaign must be in proof mode; it never sends mail.")
        if campaign.status == CampaignStatus.DRAFT:
            campaign = campaign_transition(campaign=campaign, action="start", actor=ACTOR)
        elif campaign.status == CampaignStatus.PAUSED:
            campaign = campaign_transition(campaign=campaign, action="resume", actor=ACTOR)
        campaign.refresh_from_db()
        return campaign


def _write_previews(campaign: Campaign, examples: dict) -> list[Path]:
    """One rendered example per template, as the operator would read it."""
    out_dir = Path(settings.AICMO_ARTIFACT_DIR) / "demo" / campaign.slug
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for slug, result in sorted(examples.items()):
        path = out_dir / f"{slug}.txt"
        path.write_text(f"Subject: {result.subject}\n\n{result.text}\n", encoding="utf-8")
        paths.append(path)
    return paths


def _run_report(run: DispatchRun) -> dict:
    """The tick's run as the demo reports it: counts, folders, files, what it held back."""
    folder = Path(run.artifact_dir)
    emls = sorted((folder / "eml").glob("*.eml"))
    return {
        "run": run.pk,
        "mode": run.mode,
        "counts": run.counts,
        "artifact_dir": str(folder),
        "artifacts": [str(folder / name) for name in RUN_ARTIFACTS if (folder / name).is_file()],
        "eml_dir": str(folder / "eml"),
        "eml_files": len(emls),
        "held": run_held(run),
    }


def _tick_lines(dispatched: dict, outbox: dict) -> list[str]:
    counts = dispatched["counts"]
    done = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
    lines = [
        f"Tick: run #{dispatched['run']} ({dispatched['mode']} mode): "
        + (done if done else "nothing was due, so nothing new was sent")
        + "."
    ]
    for row in dispatched["held"]:
        lines.append(
            f"  {row['messages']} {row['outcome']} ({row['reason_code']}), e.g. {row['reason']};"
            " a later tick (`manage.py tick`) takes them up"
        )
    if dispatched["eml_files"]:
        lines.append(f"  .eml files ({dispatched['eml_files']}): {dispatched['eml_dir']}")
    lines.append(f"  run artifacts: {dispatched['artifact_dir']} ({', '.join(RUN_ARTIFACTS)})")
    enrolled = ", ".join(f"{leads} in {slug}" for slug, leads in outbox["enrolled"].items())
    lines.append(f"Leads by sequence: {enrolled or 'none'}.")
    lines.append(
        f"Open manual tasks: {outbox['open_tasks']} (an operator's steps, such as LinkedIn "
        "notes; settling one as done or skipped plans its lead's next step)."
    )
    due = outbox["next_due"]
    lines.append(
        f"Next message due: {due:%Y-%m-%d %H:%M %Z}."
        if due
        else "Next message due: none yet; the next steps are planned as tasks are settled."
    )
    return lines
