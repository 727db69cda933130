"""Campaign reports from the command line.

`manage.py report verify BUNDLE.zip [--manifest-sha256 HEX] [--json]`: checks a proof bundle
(`reporting.bundle`): every file the manifest lists is present, of its size and SHA-256, the
manifest matches `manifest.sha256` (and the digest you were sent, when given), and nothing
else is in the ZIP. Prints "OK: ..." and exits 0, or prints each problem and exits 1.

Each action is a pair of methods, `add_<action>` (its arguments) and `handle_<action>`, listed
in `ACTIONS`.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import CommandError, CommandParser

from reporting.bundle import bundle_verify
from ventures.commands import ProjectCommand

ACTIONS = ("verify",)


class Command(ProjectCommand):
    help = "Campaign reports and proof bundles (see `report <action> --help`)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        for action in ACTIONS:
            getattr(self, f"add_{action}")(sub, parser)

    def handle(self, *args: Any, **options: Any) -> None:
        self.as_json = options["json"]
        handlers = {action: getattr(self, f"handle_{action}") for action in ACTIONS}
        handlers[options["action"]](options)

    def _subparser(self, sub, parser: CommandParser, name: str, text: str) -> CommandParser:
        p = sub.add_parser(
            name, help=text, description=text,
            called_from_command_line=parser.called_from_command_line,
        )  # fmt: skip
        # Accepted after the action too; SUPPRESS keeps a value given before the action.
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
        return p

    def add_verify(self, sub, parser: CommandParser) -> None:
        p = self._subparser(
            sub, parser, "verify", "Check a proof bundle's files against its manifest."
        )
        p.add_argument("bundle", metavar="BUNDLE.zip")
        p.add_argument(
            "--manifest-sha256",
            metavar="HEX",
            help="The manifest digest you were sent apart from the ZIP; checked too.",
        )

    def handle_verify(self, options: dict) -> None:
        path = options["bundle"]
        result = bundle_verify(path, manifest_sha256=options["manifest_sha256"])
        if result.ok:
            text = (
                f"OK: {result.files_checked} files verified, "
                f"manifest sha256 {result.manifest_sha256}"
            )
        else:
            text = "\n".join(f"FAILED: {problem}" for problem in result.problems)
        self.emit({"bundle": str(path), **result.as_dict()}, text)
        if not result.ok:
            count = len(result.problems)
            raise CommandError(
                f"{path} did not verify: {count} problem{'s' if count > 1 else ''}"
                + ("" if self.as_json else " (listed above)")
                + "."
            )
