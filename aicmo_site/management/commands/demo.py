"""`demo`: run the demo campaign end to end in proof mode and say where to look.

Loads the demo venture, segments, campaign and templates from docs/examples/demo-campaign.toml,
starts the campaign, imports a sample lead list, renders every template for every lead and
writes one rendered example per template to the artifact directory. Idempotent: running it again
updates the same records instead of duplicating them.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from leads.models import import_counts_text
from leads.selectors import lead_counts
from leads.services.imports import leads_demo_import
from templating.services import campaign_templates_check
from ventures.campaign_code import CampaignCodeError, campaign_load
from ventures.commands import ProjectCommand
from ventures.models import Campaign, CampaignStatus, SendMode
from ventures.selectors import campaign_summary
from ventures.services import DomainError, campaign_transition

DEMO_FILE = settings.BASE_DIR / "docs" / "examples" / "demo-campaign.toml"
ACTOR = "demo"


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
        except OSError as exc:
            raise CommandError(
                f"AICMO_ARTIFACT_DIR={str(settings.AICMO_ARTIFACT_DIR)!r} is not writable: "
                f"{exc.strerror or exc}."
            ) from None
        summary = campaign_summary(campaign)
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
