"""`demo`: run the demo campaign end to end in proof mode and say where to look.

Idempotent: running it again updates the same venture and campaign instead of duplicating them.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ventures.campaign_code import CampaignCodeError, campaign_load
from ventures.management.commands.campaign import campaign_summary
from ventures.models import CampaignStatus, SendMode
from ventures.services import DomainError, campaign_transition

DEMO_FILE = settings.BASE_DIR / "docs" / "examples" / "demo-campaign.toml"
ACTOR = "demo"


class Command(BaseCommand):
    help = "Load the demo venture and campaign (proof mode), run it, and print where to look."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")

    def handle(self, *args, **options) -> None:
        try:
            loaded = campaign_load(path=DEMO_FILE, actor=ACTOR)
        except CampaignCodeError as exc:
            raise CommandError(f"demo file {DEMO_FILE} does not load: {exc}") from None
        campaign = loaded.campaign
        if campaign.mode != SendMode.PROOF:
            raise CommandError("the demo campaign must be in proof mode; it never sends mail.")
        try:
            if campaign.status == CampaignStatus.DRAFT:
                campaign = campaign_transition(campaign=campaign, action="start", actor=ACTOR)
            elif campaign.status == CampaignStatus.PAUSED:
                campaign = campaign_transition(campaign=campaign, action="resume", actor=ACTOR)
        except DomainError as exc:
            raise CommandError(str(exc)) from None
        campaign.refresh_from_db()
        summary = campaign_summary(campaign)
        if options["json"]:
            self.stdout.write(
                json.dumps({"loaded": loaded.as_dict(), "campaign": summary}, default=str)
            )
            return
        self.stdout.write(loaded.summary())
        self.stdout.write(
            f"Demo campaign '{campaign.slug}' of venture '{campaign.venture.slug}': "
            f"{campaign.get_status_display()}, {campaign.mode} mode, "
            f"{summary['effective_daily_limit']} sends allowed today."
        )
        self.stdout.write(f"Artifacts: {settings.AICMO_ARTIFACT_DIR}")
        self.stdout.write("Operator console: `make serve`, then http://127.0.0.1:8000/admin/")
