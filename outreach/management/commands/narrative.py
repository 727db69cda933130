"""`manage.py narrative rebuild [--venture V] [--json]`: the narrative memory's figures
computed again from the sent emails and their feedback events (`outreach.narrative`).

Run it once after upgrading (emails sent before narrative memory existed count from then on),
or to check the figures: it reports how many arms it changed (none, when the increments were
right), and audits each venture whose figures changed.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import CommandError, CommandParser

from outreach.narrative import narrative_rebuild
from ventures.commands import ProjectCommand, current_user
from ventures.ids import parse_id
from ventures.models import Venture


class Command(ProjectCommand):
    help = "Narrative memory (see `narrative rebuild --help`)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        p = sub.add_parser(
            "rebuild",
            help="Compute the figures again from the sent emails and their events.",
            description=__doc__,
            called_from_command_line=parser.called_from_command_line,
        )
        p.add_argument("--venture", metavar="V", help="A venture's slug or id (default: all).")
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        self.as_json = options["json"]
        venture = venture_get(options["venture"]) if options.get("venture") else None
        result = narrative_rebuild(venture=venture, actor=f"cli:{current_user()}")
        scope = f"venture {venture.slug}" if venture else "every venture"
        self.emit(
            result,
            f"Narrative memory rebuilt for {scope}: {result['arms']} arms from "
            f"{result['sends']} sent emails ({result['positive_replies']} positive replies); "
            f"{result['arms_changed']} arms changed.",
        )


def venture_get(ref: str) -> Venture:
    """A venture by slug or id, or a one-line error."""
    ref = ref.strip()
    pk = parse_id(ref)
    found = (Venture.objects.filter(pk=pk).first() if pk is not None else None) or (
        Venture.objects.filter(slug=ref).first()
    )
    if found is None:
        raise CommandError(f"No venture with slug or id {ref!r}.")
    return found
