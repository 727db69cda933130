"""`campaign list | status C | start C | pause C | resume C | stop C | kill C | unkill C`,
`campaign load FILE.toml [--confirm-raise --reason R]` and `campaign dump C`.

Each sub-command parses its input, calls one service and reports; the rules and the audit are
the services' (the same ones the admin calls).
"""

from __future__ import annotations

import argparse

from django.core.management.base import CommandError, CommandParser

from ventures.campaign_code import (
    CampaignCodeError,
    LimitRaiseNotConfirmedError,
    campaign_dump,
    campaign_load,
)
from ventures.commands import ProjectCommand, current_user
from ventures.models import Campaign
from ventures.selectors import campaign_get, campaign_summary
from ventures.services import (
    DomainError,
    campaign_set_kill_switch,
    campaign_transition,
)

TRANSITION_ACTIONS = ("start", "pause", "resume", "stop")


class Command(ProjectCommand):
    help = "Inspect and operate campaigns (see `campaign <action> --help`)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")
        parser.add_argument(
            "--actor", default=None, help="Who is acting, for the audit trail (default: $USER)."
        )
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        def add(name: str, text: str) -> CommandParser:
            p = sub.add_parser(
                name, help=text, called_from_command_line=parser.called_from_command_line
            )
            # Accepted after the action too; SUPPRESS keeps a value given before the action.
            p.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
            p.add_argument("--actor", default=argparse.SUPPRESS)
            return p

        add("list", "List campaigns.")
        for name in ("status", "dump"):
            add(name, f"{name.capitalize()} a campaign.").add_argument(
                "campaign", metavar="C", help="Campaign slug or id."
            )
        for name in (*TRANSITION_ACTIONS, "kill", "unkill"):
            p = add(name, f"{name.capitalize()} a campaign.")
            p.add_argument("campaign", metavar="C", help="Campaign slug or id.")
            p.add_argument("--reason", default="", help="Why (recorded in the audit trail).")
        load = add("load", "Create or update a campaign from a TOML file.")
        load.add_argument("file", metavar="FILE.toml")
        load.add_argument(
            "--confirm-raise",
            action="store_true",
            help="Allow the file to raise a running or paused campaign's limits (needs --reason).",
        )
        load.add_argument(
            "--reason",
            default="",
            help="Why the limits are raised (recorded in the audit trail; with --confirm-raise).",
        )

    def handle(self, *args, **options) -> None:
        self.as_json = options["json"]
        self.actor = "cli:" + (options["actor"] or current_user())
        action = options["action"]
        try:
            if action == "list":
                return self._list()
            if action == "load":
                return self._load(options["file"], options["confirm_raise"], options["reason"])
            campaign = campaign_get(options["campaign"])
            if action == "status":
                return self.emit(campaign_summary(campaign), self._status_line(campaign))
            if action == "dump":
                return self.stdout.write(campaign_dump(campaign=campaign), ending="")
            return self._operate(campaign, action, options["reason"])
        except Campaign.DoesNotExist as exc:
            raise CommandError(str(exc)) from None
        except LimitRaiseNotConfirmedError as exc:
            raise CommandError(
                f'{exc}: load again with --confirm-raise --reason "why" {exc.confirm_to}.'
            ) from None
        except (DomainError, CampaignCodeError) as exc:
            raise CommandError(str(exc)) from None

    def _operate(self, campaign: Campaign, action: str, reason: str) -> None:
        if action in ("kill", "unkill"):
            changed = campaign_set_kill_switch(
                campaign=campaign, on=action == "kill", actor=self.actor, reason=reason
            )
            verb = "killed" if action == "kill" else "unkilled"
            text = (
                f"Campaign {campaign.slug} {verb}."
                if changed
                else f"Campaign {campaign.slug} was already {verb}."
            )
        else:
            campaign = campaign_transition(
                campaign=campaign, action=action, actor=self.actor, reason=reason
            )
            changed = True
            text = f"Campaign {campaign.slug} is now {campaign.get_status_display()}."
        campaign.refresh_from_db()
        self.emit({"changed": changed, **campaign_summary(campaign)}, text)

    def _list(self) -> None:
        campaigns = list(
            Campaign.objects.select_related("venture").order_by("venture__slug", "slug")
        )
        rows = [campaign_summary(c) for c in campaigns]
        lines = [f"{'CAMPAIGN':<28} {'VENTURE':<20} {'STATUS':<10} {'MODE':<6} KILL"]
        lines += [
            f"{r['slug']:<28} {r['venture']:<20} {r['status']:<10} {r['mode']:<6} "
            f"{'yes' if r['halted_by'] else 'no'}"
            for r in rows
        ]
        if not rows:
            lines = ["No campaigns yet. Create one in the admin or with `campaign load FILE.toml`."]
        self.emit({"campaigns": rows}, "\n".join(lines))

    def _load(self, path: str, confirm_raise: bool, reason: str) -> None:
        reason = reason.strip()
        if confirm_raise and not reason:
            raise CommandError(
                '--confirm-raise needs --reason "why": it is recorded in the audit trail.'
            )
        if reason and not confirm_raise:
            raise CommandError(
                "--reason is the reason of a confirmed raise of limits: give it with"
                " --confirm-raise (other changes a load makes are audited as `campaign load`)."
            )
        result = campaign_load(path=path, actor=self.actor, raise_reason=reason)
        self.emit(result.as_dict(), result.summary())

    def _status_line(self, campaign: Campaign) -> str:
        s = campaign_summary(campaign)
        halted = f"; HALTED by {s['halted_by']}" if s["halted_by"] else ""
        window = s["send_window"]
        return (
            f"{campaign.slug} ({campaign.venture.slug}): {campaign.get_status_display()}, "
            f"{campaign.mode} mode{halted}. Limit {s['effective_daily_limit']}/day today "
            f"({s['limit_binds']}; campaign {s['daily_send_limit']}); window {','.join(window['days'])} "
            f"{window['start']}-{window['end']} {window['timezone']}. "
            f"Actions: {', '.join(s['allowed_actions']) or 'none'}."
        )
