"""The operator's dashboard: the figures of the admin's front page (`admin/index.html`).

`dashboard_for(request)` reads, for every campaign the user may see (`visible_campaigns`),
its one state badge (`ventures.console.campaign_state`, the global switch read once per
request), today's sends against each cap that binds (`outreach.selectors.campaigns_sent`,
the Outbox panel's "Sent today", against `ventures.console.campaigns_limits`), queued and
due-now messages, unknown messages to settle, manual tasks past due, positive replies past
their SLA (`outreach.sla.replies_waiting_counts`), the latest auto-pause of an auto-paused campaign, and reply,
bounce and complaint rates over the last seven days. Around them: the mailboxes the engine has
paused in the pools of running and paused campaigns (`outreach.selectors.mailboxes_auto_paused`,
each a problem line with its reason and a link to the mailbox), imports in progress, the
preflight checks that cost nothing (no database or network round trip) and worker health
(a stale worker is a problem line, a healthy one a green note: shown once either way).

**Set-wise.** Each figure is one grouped query over all the visible campaigns, so the page
costs the same number of queries for one campaign or five hundred. Each query uses an index
that matches it on a million messages: message counts by (campaign, state)
(`outbound_campaign_state_idx`), due-now by one bounded range per campaign of
`outbound_campaign_due_idx` (counted up to DUE_SHOWN, then "10,000+"), sends from the `SendLedger`
rows (one per campaign and day), feedback by (kind, received_at) and the partial index of
waiting replies. No report is computed here.

The rates follow `outreach.health` (what auto-pause reads): per email sent, where a mail
server's refusal at hand-over is both a send and a hard bounce. Its window is the auto-pause
window since the last pause, per campaign; the dashboard's is a fixed seven days.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from leads.models import BatchState, ImportBatch
from outreach.models import (
    DUE_STATES,
    AutoPause,
    FeedbackEvent,
    FeedbackKind,
    MessageState,
    OutboundMessage,
    StepKind,
)
from outreach.selectors import PausedMailbox, campaigns_sent, mailboxes_auto_paused
from outreach.sla import replies_waiting_counts
from ventures.admin_toolkit import (
    request_global_kill_reason,
    visible_campaigns,
    visible_venture_ids,
)
from ventures.console import (
    AUTO_PAUSE_PREFIX,
    STOP,
    CampaignLimits,
    CampaignState,
    campaign_state,
    campaigns_limits,
    with_last_pause,
)
from ventures.models import Campaign, CampaignStatus, SendMode, Venture
from ventures.preflight import (
    check_artifact_dir,
    check_live_settings,
    check_secret_key,
    heartbeat_age_seconds,
)

RATE_DAYS = 7
DUE_SHOWN = 10_000  # "due now" counts this far, then shows "10,000+"
IN_USE = (CampaignStatus.RUNNING, CampaignStatus.PAUSED)  # campaigns whose mailboxes matter
COUNTED_STATES = (*DUE_STATES, MessageState.UNKNOWN, MessageState.TASK_OPEN)


def _changelist(name: str, **query) -> str:
    url = reverse(f"admin:{name}_changelist")
    return f"{url}?{urlencode(query)}" if query else url


@dataclass
class Rate:
    count: int
    sent: int

    @property
    def text(self) -> str:
        return f"{self.count / self.sent:.1%}" if self.sent else "–"


@dataclass
class CampaignFigures:
    campaign: Campaign
    state: CampaignState
    limits: CampaignLimits
    sent_today: int = 0
    queued: int = 0
    due_now: int = 0
    unknown: int = 0
    tasks_due: int = 0
    replies_waiting: int = 0
    sla_overdue: int = 0
    sent_week: int = 0
    replies: int = 0
    bounces: int = 0
    complaints: int = 0
    auto_pause: AutoPause | None = None

    @property
    def url(self) -> str:
        return reverse("admin:ventures_campaign_change", args=[self.campaign.pk])

    @property
    def due_now_text(self) -> str:
        return f"{DUE_SHOWN:,}+" if self.due_now > DUE_SHOWN else f"{self.due_now:,}"

    @property
    def sends_text(self) -> str:
        """ "37 of 120 today (venture cap binds)", or why nothing can be sent."""
        return self.limits.sent_text(self.sent_today)

    @property
    def cap_share(self) -> int:
        """Today's sends as a share of the binding cap, in percent (for the bar)."""
        effective = self.limits.effective
        return min(100, round(100 * self.sent_today / effective)) if effective else 100

    @property
    def reply_rate(self) -> Rate:
        return Rate(self.replies, self.sent_week)

    @property
    def bounce_rate(self) -> Rate:
        return Rate(self.bounces, self.sent_week)

    @property
    def complaint_rate(self) -> Rate:
        return Rate(self.complaints, self.sent_week)

    @property
    def bounce_alarm(self) -> bool:
        """Above the auto-pause threshold (red on the page)."""
        return self.bounces > settings.AICMO_AUTOPAUSE_BOUNCE_RATE * self.sent_week

    @property
    def complaint_alarm(self) -> bool:
        return self.complaints > settings.AICMO_AUTOPAUSE_COMPLAINT_RATE * self.sent_week

    def link(self, name: str, **query) -> str:
        return _changelist(name, campaign=self.campaign.pk, **query)

    @property
    def links(self) -> dict[str, str]:
        message = "outreach_outboundmessage"
        return {
            "sent": self.link(message, state__exact=MessageState.SENT),
            "queued": self.link(message, state__exact=MessageState.SCHEDULED),
            "unknown": self.link(message, state__exact=MessageState.UNKNOWN),
            "tasks": self.link("outreach_manualtask", state__exact=MessageState.TASK_OPEN),
            "sla": self.link("outreach_feedbackevent", handling="overdue"),
            "waiting": self.link("outreach_feedbackevent", handling="waiting"),
            "replies": self.link("outreach_feedbackevent", kind__exact=FeedbackKind.REPLIED),
            "bounces": self.link("outreach_feedbackevent", kind__exact=FeedbackKind.BOUNCED),
            "complaints": self.link("outreach_feedbackevent", kind__exact=FeedbackKind.COMPLAINED),
            "auto_pause": self.link("outreach_autopause"),
        }


@dataclass
class VentureFigures:
    venture: Venture
    campaigns: list[CampaignFigures] = field(default_factory=list)


@dataclass
class Problem:
    """One thing that needs the operator, with the page where they act on it."""

    text: str
    url: str
    count: int = 0


@dataclass
class ImportProgress:
    batch: ImportBatch

    @property
    def percent(self) -> int:
        total = self.batch.rows_total
        return min(100, round(100 * self.batch.rows_done / total)) if total else 0

    @property
    def url(self) -> str:
        return reverse("admin:leads_importbatch_change", args=[self.batch.pk])


@dataclass
class Worker:
    age_seconds: float | None
    url: str = ""

    @property
    def stale(self) -> bool:
        return self.age_seconds is None or self.age_seconds > settings.AICMO_HEARTBEAT_MAX_AGE

    @property
    def text(self) -> str:
        if self.age_seconds is None:
            return "No worker seen: nothing is sent until a worker runs (make serve)."
        age = int(self.age_seconds)
        when = f"{age} s" if age < 120 else f"{age // 60} min"
        if self.stale:
            return f"No worker seen for {when}: is the django-q2 cluster running?"
        return f"Worker seen {when} ago."


@dataclass
class Dashboard:
    ventures: list[VentureFigures]
    problems: list[Problem]
    imports: list[ImportProgress]
    preflight: list[str]
    worker: Worker
    paused_mailboxes: list[PausedMailbox] = field(default_factory=list)

    @property
    def campaigns(self) -> list[CampaignFigures]:
        return [c for v in self.ventures for c in v.campaigns]


def dashboard_for(request, *, now: dt.datetime | None = None) -> Dashboard | None:
    """The front page's figures for the request's user; None for a member of no venture
    (the index shows them the no-venture hint instead)."""
    if visible_venture_ids(request) == []:
        return None
    now = now or timezone.now()
    campaigns = list(with_last_pause(visible_campaigns(request)))
    reason = request_global_kill_reason(request)
    limits = campaigns_limits(campaigns, now)
    rows = {
        c.pk: CampaignFigures(
            c,
            # Brief: "Needs you now" says in full why a running campaign cannot send.
            campaign_state(c, global_reason=reason, now=now, limits=limits[c.pk], brief=True),
            limits[c.pk],
        )
        for c in campaigns
    }
    for read in (_sends, _messages, _replies, _rates, _auto_pauses):
        read(rows, now)
    ventures: dict[int, VentureFigures] = {}
    # Within a venture, halted campaigns first (red), then the rest by name.
    for figures in sorted(rows.values(), key=lambda r: r.state.tone != STOP):
        venture = figures.campaign.venture
        ventures.setdefault(venture.pk, VentureFigures(venture)).campaigns.append(figures)
    worker_url = (
        _changelist("ventures_workerheartbeat")
        if request.user.has_perm("ventures.view_workerheartbeat")
        else ""
    )
    board = Dashboard(
        ventures=list(ventures.values()),
        problems=[],
        imports=_imports(list(rows)),
        preflight=_preflight(campaigns),
        worker=Worker(heartbeat_age_seconds(), worker_url),
        paused_mailboxes=mailboxes_auto_paused([c.pk for c in campaigns if c.status in IN_USE]),
    )
    board.problems = _problems(board)
    return board


def _sends(rows: dict[int, CampaignFigures], now: dt.datetime) -> None:
    campaigns = [r.campaign for r in rows.values()]
    for pk, n in campaigns_sent(campaigns, now=now).items():
        rows[pk].sent_today = n
    for pk, n in campaigns_sent(campaigns, days=RATE_DAYS, now=now).items():
        rows[pk].sent_week = n


def _messages(rows: dict[int, CampaignFigures], now: dt.datetime) -> None:
    """Queued, unknown and open-task counts by (campaign, state); due-now from the due index;
    tasks past due among the open ones."""
    messages = OutboundMessage.objects.filter(campaign_id__in=list(rows)).order_by()
    counts = (
        messages.filter(state__in=COUNTED_STATES)
        .values_list("campaign_id", "state")
        .annotate(n=Count("*"))
    )
    for pk, state, n in counts:
        if state in DUE_STATES:
            rows[pk].queued += n
        elif state == MessageState.UNKNOWN:
            rows[pk].unknown = n
    for pk, n in _due_now_counts(list(rows), now):
        rows[pk].due_now = n
    tasks = messages.filter(state=MessageState.TASK_OPEN, due_at__lte=now)
    for pk, n in tasks.values_list("campaign_id").annotate(n=Count("*")):
        rows[pk].tasks_due = n


class _CountOf(Subquery):
    """The number of rows of a (sliced) subquery: `SELECT COUNT(*) FROM (<subquery>)`."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) AS counted)"
    output_field = IntegerField()


def _due_now_counts(campaign_ids: list[int], now: dt.datetime):
    """(campaign id, messages due now) of each campaign, each count stopping past DUE_SHOWN:
    per campaign, one range of `outbound_campaign_due_idx` of at most DUE_SHOWN + 1 entries,
    however many messages wait (a paused campaign's backlog, say)."""
    due = (
        OutboundMessage.objects.filter(
            campaign_id=OuterRef("pk"), state__in=DUE_STATES, due_at__lte=now
        )
        .order_by()
        .values("pk")[: DUE_SHOWN + 1]
    )
    return (
        Campaign.objects.filter(pk__in=campaign_ids)
        .order_by()
        .annotate(due=_CountOf(due))
        .values_list("pk", "due")
    )


def _replies(rows: dict[int, CampaignFigures], now: dt.datetime) -> None:
    """Positive replies nobody has handled, and those past their campaign's SLA."""
    counts = replies_waiting_counts([r.campaign for r in rows.values()], now=now)
    for pk, (waiting, overdue) in counts.items():
        rows[pk].replies_waiting, rows[pk].sla_overdue = waiting, overdue


def _rates(rows: dict[int, CampaignFigures], now: dt.datetime) -> None:
    """Replies, bounces and complaints over the last RATE_DAYS days, per email sent; a hard
    bounce at hand-over counts as sent and bounced, as `outreach.health` counts it."""
    since = now - dt.timedelta(days=RATE_DAYS)
    kinds = (FeedbackKind.REPLIED, FeedbackKind.BOUNCED, FeedbackKind.COMPLAINED)
    events = (
        FeedbackEvent.objects.filter(
            kind__in=kinds, received_at__gte=since, message__campaign_id__in=list(rows)
        )
        .order_by()
        .values_list("message__campaign_id", "kind")
        .annotate(n=Count("*"))
    )
    for pk, kind, n in events:
        attr = {"replied": "replies", "bounced": "bounces", "complained": "complaints"}[kind]
        setattr(rows[pk], attr, n)
    refused = (
        OutboundMessage.objects.filter(
            campaign_id__in=list(rows),
            state=MessageState.FAILED,
            kind=StepKind.EMAIL,
            reason_code="hard_bounce",
            updated_at__gte=since,
        )
        .order_by()
        .values_list("campaign_id")
        .annotate(n=Count("*"))
    )
    for pk, n in refused:
        rows[pk].sent_week += n
        rows[pk].bounces += n


def _auto_pauses(rows: dict[int, CampaignFigures], now: dt.datetime) -> None:
    """The latest pause of each campaign the engine has paused (its badge says why)."""
    paused = [pk for pk, r in rows.items() if r.state.label.startswith("Auto-paused")]
    latest = AutoPause.objects.filter(campaign_id__in=paused, mailbox__isnull=True)
    for pause in latest.order_by("campaign_id", "-paused_at", "-id"):
        if rows[pause.campaign_id].auto_pause is None:
            rows[pause.campaign_id].auto_pause = pause


def _imports(campaign_ids: list[int]) -> list[ImportProgress]:
    batches = ImportBatch.objects.filter(
        campaign_id__in=campaign_ids, state__in=[BatchState.PENDING, BatchState.RUNNING]
    ).select_related("campaign")
    return [ImportProgress(b) for b in batches.order_by("created_at", "id")]


def _preflight(campaigns: list[Campaign]) -> list[str]:
    """The failing preflight checks that cost nothing to run (settings and the artifact
    directory; the database and worker are read elsewhere), live ones when anything is live."""
    messages = check_secret_key() + check_artifact_dir()
    live = any(c.mode == SendMode.LIVE and c.status == CampaignStatus.RUNNING for c in campaigns)
    if live or settings.AICMO_SEND_MODE == SendMode.LIVE:
        messages += check_live_settings()
    return [f"{m.msg} ({m.id})" for m in messages if m.is_serious()]


def _problems(board: Dashboard) -> list[Problem]:
    """What needs the operator now, worst first; empty when all is well."""
    problems = []
    if board.worker.stale:
        problems.append(Problem(board.worker.text, board.worker.url))
    problems += [Problem(f"Preflight: {text}", "") for text in board.preflight]
    for c in board.campaigns:
        name = c.campaign.name
        if c.state.held:  # the one place the dashboard says it in full
            problems.append(Problem(f"{name}: running, but {c.state.held}", c.url))
        elif c.state.tone == STOP:
            problems.append(Problem(f"{name}: {c.state.label}", c.url))
        if c.sla_overdue:
            problems.append(
                Problem(f"{name}: positive replies past the SLA", c.links["sla"], c.sla_overdue)
            )
        if c.unknown:
            problems.append(Problem(f"{name}: unknown messages to settle", c.links["unknown"],
                                    c.unknown))  # fmt: skip
        if c.tasks_due:
            problems.append(Problem(f"{name}: manual tasks due", c.links["tasks"], c.tasks_due))
    for paused in board.paused_mailboxes:
        url = reverse("admin:outreach_mailbox_change", args=[paused.mailbox.pk])
        where = paused.pause.campaign.name
        text = f"Mailbox {paused.mailbox} ({where}): {AUTO_PAUSE_PREFIX}{paused.pause.reason}"
        problems.append(Problem(text, url))
    return problems
