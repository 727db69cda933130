"""`demo`: run the demo campaign end to end in proof mode and say where to look.

Loads the demo venture, segments, campaign, templates, mailbox, sequences and routing from
docs/examples/demo-campaign.toml, starts the campaign, imports a sample lead list, renders every
template for every lead and writes one rendered example per template to the artifact directory.
Then it runs one tick of the outbox for the campaign: the leads are enrolled and routed, their
first emails are written as .eml files (proof mode sends nothing), the same day's LinkedIn
step opens a manual task per lead, and the run leaves decisions.csv, summary.md and proof.sql.
Then it simulates what the ESP and the leads would answer (proof mode sent nothing, so
nothing answers on its own), through the same path real feedback takes: deliveries, opens and
clicks, two hard bounces and a soft one, replies (a positive one, an objection on price,
another on the solution they already have), an out-of-office with its return date, and an
unsubscribe.
Idempotent: running it again updates the same records instead of duplicating them, its tick
finds nothing new to send (the outbox holds one message per lead and step), and its feedback
events are stored already (each has the same id each time).
Last it makes the local demo login (`aicmo_site.demo_login`: user `demo`, an Operator of the
demo venture, only with DEBUG on and a database on this machine) and prints how to log in, or,
when it may not make one, the `createsuperuser` command to run instead.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from aicmo_site.demo_login import demo_login_ensure, password_file
from leads.models import import_counts_text
from leads.selectors import lead_counts
from leads.services.imports import leads_demo_import
from outreach.dispatch import tick
from outreach.feedback import Incoming, feedback_record_many
from outreach.models import DispatchRun, FeedbackKind, MessageState, OutboundMessage
from outreach.selectors import campaign_outbox, run_held
from reporting.models import ReportFile
from reporting.pdf import ReportRenderError
from reporting.services import ReportError, report_file_path, report_keep
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
            feedback = _simulate_feedback(campaign)
        except OSError as exc:
            raise CommandError(
                f"AICMO_ARTIFACT_DIR={str(settings.AICMO_ARTIFACT_DIR)!r} is not writable: "
                f"{exc.strerror or exc}."
            ) from None
        try:
            bundle = _write_bundle(campaign)
        except (ReportError, ReportRenderError) as exc:
            raise CommandError(f"demo failed writing the report: {exc}") from None
        try:
            login = demo_login_ensure(venture=campaign.venture, actor=ACTOR)
        except OSError as exc:
            raise CommandError(
                f"the demo login's password file {password_file()} cannot be written: "
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
                        "feedback": feedback,
                        "report": bundle,
                        "login": login.as_dict(),
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
        self.stdout.write(_feedback_line(feedback))
        self.stdout.write(f"Artifacts: {settings.AICMO_ARTIFACT_DIR}")
        self.stdout.write(
            f"Report: proof bundle {bundle['path']} ({bundle['files']} files, ZIP SHA-256 "
            f"{bundle['sha256'][:16]}…): the report as HTML, PDF and Markdown, the CSVs, the "
            f"emails the run wrote and a manifest; check it with "
            f"`.venv/bin/python manage.py report verify {bundle['path']}`."
        )
        self.stdout.write("Operator console: `make serve`, then http://127.0.0.1:8000/admin/")
        for line in login.lines(campaign.venture):
            self.stdout.write(line)

    def _run(self, campaign: Campaign) -> Campaign:
        if campaign.mode != SendMode.PROOF:
            raise CommandError("the demo campaign must be in proof mode; it never sends mail.")
        if campaign.status == CampaignStatus.DRAFT:
            campaign = campaign_transition(campaign=campaign, action="start", actor=ACTOR)
        elif campaign.status == CampaignStatus.PAUSED:
            campaign = campaign_transition(campaign=campaign, action="resume", actor=ACTOR)
        campaign.refresh_from_db()
        return campaign


def _write_bundle(campaign: Campaign) -> dict:
    """The campaign's proof bundle, kept (listed under Reporting in the console). It replaces
    the one an earlier run of the demo kept, so there is always one demo bundle."""
    for old in ReportFile.objects.filter(campaign=campaign, generated_by=ACTOR):
        report_file_path(old).unlink(missing_ok=True)
        old.delete()
    kept = report_keep(campaign, "zip", actor=ACTOR)
    path = report_file_path(kept)
    with zipfile.ZipFile(path) as archive:
        files = len(archive.namelist())
    return {"path": str(path), "files": files, "size": kept.size, "sha256": kept.sha256}


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


# What the demo's leads answer, by their position among the first emails (oldest first).
DEMO_REPLIES = {
    2: ("positive", "Sounds interesting. Could we talk on Thursday afternoon?"),
    5: ("", "Thanks, but this is too expensive for us this year."),
    8: ("", "We already use a tool for pipeline reviews and we are happy with it."),
}
DEMO_OUT_OF_OFFICE = 11
DEMO_HARD_BOUNCES = (14, 17)
DEMO_SOFT_BOUNCE = 20
DEMO_UNSUBSCRIBE = 23
OUT_OF_OFFICE = (
    "Thank you for your message. I am out of the office until {back:%A %d %B %Y} with "
    "limited access to email, and will reply when I am back."
)


def _simulate_feedback(campaign: Campaign) -> dict:
    """Feedback for the demo's sent emails, through `feedback_record_many` as an ESP's batch
    and its inbound replies would arrive; what it stored, by kind, and the replies' readings."""
    import datetime as dt

    from django.utils import timezone

    sent = list(
        OutboundMessage.objects.filter(campaign=campaign, state=MessageState.SENT)
        .exclude(message_id="")
        .order_by("id")
    )
    now = timezone.now()
    esp = "demo-esp"
    events = []
    for n, m in enumerate(sent):
        base = {"source": esp, "recipient": m.recipient, "thread_ids": [m.message_id],
                "occurred_at": now}  # fmt: skip
        if n in DEMO_HARD_BOUNCES:
            events.append(Incoming(kind=FeedbackKind.BOUNCED, event_id=f"bounce-{m.pk}",
                                   reason="smtp;550 5.1.1 The email account does not exist",
                                   **base))  # fmt: skip
            continue
        if n == DEMO_SOFT_BOUNCE:
            events.append(Incoming(kind=FeedbackKind.DEFERRED, event_id=f"soft-{m.pk}",
                                   reason="452 4.2.2 Mailbox full", **base))  # fmt: skip
        events.append(Incoming(kind=FeedbackKind.DELIVERED, event_id=f"delivered-{m.pk}", **base))
        if n % 3 == 0:
            events.append(Incoming(kind=FeedbackKind.OPENED, event_id=f"open-{m.pk}", **base))
        if n % 10 == 1:
            events.append(Incoming(kind=FeedbackKind.CLICKED, event_id=f"click-{m.pk}",
                                   url="https://northwind.example/demo", **base))  # fmt: skip
        if n == DEMO_UNSUBSCRIBE:
            events.append(Incoming(kind=FeedbackKind.UNSUBSCRIBED, event_id=f"unsub-{m.pk}",
                                   **base))  # fmt: skip
    inbound = []
    for n, m in enumerate(sent):
        base = {"source": "demo-inbox", "recipient": m.recipient, "thread_ids": [m.message_id],
                "occurred_at": now, "subject": f"Re: {m.subject}"}  # fmt: skip
        if n in DEMO_REPLIES:
            sentiment, text = DEMO_REPLIES[n]
            inbound.append(Incoming(kind=FeedbackKind.REPLIED, event_id=f"reply-{m.pk}",
                                    text=text, sentiment=sentiment, **base))  # fmt: skip
        elif n == DEMO_OUT_OF_OFFICE:
            back = (now + dt.timedelta(days=9)).date()
            inbound.append(Incoming(kind=FeedbackKind.AUTORESPONDED, event_id=f"ooo-{m.pk}",
                                    text=OUT_OF_OFFICE.format(back=back), **base))  # fmt: skip
    stored = [e for e, created in feedback_record_many(events) + feedback_record_many(inbound)
              if created]  # fmt: skip
    by_kind: dict[str, int] = {}
    for event in stored:
        by_kind[event.kind] = by_kind.get(event.kind, 0) + 1
    replies = [
        {"recipient": e.recipient, "sentiment": e.sentiment, "objection": e.objection,
         "effect": e.effect}
        for e in stored if e.kind in (FeedbackKind.REPLIED, FeedbackKind.AUTORESPONDED)
    ]  # fmt: skip
    return {"stored": len(stored), "by_kind": by_kind, "replies": replies}


def _feedback_line(feedback: dict) -> str:
    if not feedback["stored"]:
        return "Feedback (simulated): stored already; nothing new."
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(feedback["by_kind"].items()))
    readings = "; ".join(
        f"{r['recipient']}: {r['objection'] or r['sentiment'] or 'auto-reply'} ({r['effect']})"
        for r in feedback["replies"]
    )
    return (
        f"Feedback (simulated, as the ESP and the leads would answer): {feedback['stored']} "
        f"events ({kinds}). Replies: {readings}. Outreach -> Feedback events lists them."
    )
