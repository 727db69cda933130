"""What the console says about a campaign: its one state badge and the daily limit the
outbox really enforces today, with the extension points the outbox fills in.

- **State.** `campaign_state` turns the campaign's status, its kill switches (through
  `Campaign.halt_reason`, the one rule), its send window (`Campaign.next_window_opening`, the
  tick's own reading) and the reason of its last pause into one badge: a label and a tone.
  Auto-pause is read from the audit trail: the engine pauses through `campaign_transition`
  with the actor `AUTO_PAUSE_ACTOR`, so the control plane needs no outreach model for it.
  `with_last_pause` annotates a queryset with that reason in the same query, so a list of
  campaigns costs no query per row; the global reason is read once per page by the caller.
- **Limits.** `campaign_limits` lists every daily cap a campaign's emails count against, as
  the tick computes them (global `AICMO_GLOBAL_DAILY_LIMIT`, the venture's cap, the
  campaign's limit after its warm-up ramp today, and what sources registered with
  `register_cap_source` add: the outbox adds its mailboxes), and says which one binds.
- **Raises.** `ramp_raises` is the one rule of what a change "raises" (lets a daily limit
  with its warm-up send more); `limit_raises` applies it to a running or paused campaign, and
  the outbox to a mailbox serving one: the admin's save and `campaign load` both confirm such
  a change and audit it with the operator's reason.
- **Deleting.** `campaign_delete_refusal` says why a campaign may not be deleted (it is
  running; its history would go with it); `register_delete_guard` lets the outbox add its
  own reasons (a paused campaign with messages).

Sources and guards are registered in the right-hand app's `AppConfig.ready()`; registering
the same function again replaces it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import CharField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Cast
from django.utils import timezone

from ventures.models import AuditEvent, Campaign, CampaignStatus

AUTO_PAUSE_ACTOR = "auto-pause"  # the actor of the engine's own pauses (outreach.health)
AUTO_PAUSE_PREFIX = "Auto-paused: "  # how outreach.health starts the audit reason

# --- State ---------------------------------------------------------------------------------------

OK, WAIT, STOP, IDLE = "ok", "wait", "stop", "idle"  # the badge tones (admin.css .state-*)


@dataclass(frozen=True)
class CampaignState:
    label: str
    tone: str
    # Why nothing can be sent, in full, when the badge is a running campaign's that a cap
    # level holds (`CampaignLimits.held`); a `brief` badge then names it only briefly.
    held: str = ""


def with_last_pause(campaigns: QuerySet[Campaign]) -> QuerySet[Campaign]:
    """`campaigns` with the actor and reason of each one's latest pause (audit_entity_idx)."""
    pauses = AuditEvent.objects.filter(
        entity_type=Campaign._meta.label_lower,
        entity_id=Cast(OuterRef("pk"), output_field=CharField()),
        action="campaign.pause",
    ).order_by("-created_at", "-id")
    return campaigns.annotate(
        last_pause_actor=Subquery(pauses.values("actor")[:1]),
        last_pause_reason=Subquery(pauses.values("reason")[:1]),
    )


def _last_pause(campaign: Campaign) -> tuple[str | None, str]:
    if hasattr(campaign, "last_pause_actor"):
        return campaign.last_pause_actor, campaign.last_pause_reason or ""
    event = (
        AuditEvent.objects.for_entity(campaign)
        .filter(action="campaign.pause")
        .order_by("-created_at", "-id")
        .values("actor", "reason")
        .first()
    )
    return (event["actor"], event["reason"]) if event else (None, "")


def _window_state(campaign: Campaign, now: dt.datetime) -> CampaignState:
    tz = campaign.tzinfo
    opening = campaign.next_window_opening(tz, now)
    if opening is None:
        return CampaignState("Running, halted: no send day is set", STOP)
    if opening <= now:
        return CampaignState("Running", OK)
    local, today = opening.astimezone(tz), now.astimezone(tz).date()
    when = f"{local:%H:%M}" if local.date() == today else f"{local:%a %H:%M}"
    return CampaignState(f"Outside send window until {when} ({tz})", WAIT)


def campaign_state(
    campaign: Campaign,
    *,
    global_reason: str | None,
    now: dt.datetime | None = None,
    limits: CampaignLimits | None = None,
    brief: bool = False,
) -> CampaignState:
    """The one badge of a campaign, from the state the outbox enforces. `global_reason` is
    `ventures.selectors.global_kill_reason()`, read once by the caller for a whole page;
    `limits` (`campaigns_limits`, read once for a page's campaigns) lets a running campaign
    that no cap level lets send at all (every mailbox of its pool paused) say so: in full,
    or with `brief` only its short form ("Running, no mailbox can send"), for a page that
    says the whole of it once elsewhere (the dashboard's "Needs you now")."""
    status = campaign.status
    if status == CampaignStatus.COMPLETED:
        return CampaignState("Finished", IDLE)
    if status == CampaignStatus.STOPPED:
        return CampaignState("Finished (stopped)", IDLE)
    if campaign.kill_switch:
        return CampaignState(f"Killed: {campaign.kill_reason or 'no reason given'}", STOP)
    if status == CampaignStatus.DRAFT:
        return CampaignState("Draft", IDLE)
    if status == CampaignStatus.PAUSED:
        actor, reason = _last_pause(campaign)
        if actor == AUTO_PAUSE_ACTOR:
            return CampaignState("Auto-paused: " + reason.removeprefix(AUTO_PAUSE_PREFIX), STOP)
        return CampaignState("Paused", WAIT)
    halt = campaign.halt_reason(global_reason=global_reason)
    if halt:
        return CampaignState(f"Running, halted: {halt}", STOP)
    if limits is not None and limits.held:
        shown = limits.held_brief if brief else limits.held
        return CampaignState(f"Running, {shown}", STOP, held=limits.held)
    return _window_state(campaign, now or timezone.now())


# --- Limits --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CapLevel:
    """One daily cap a campaign's emails count against today."""

    name: str  # "global", "venture", "campaign", "mailboxes"...
    limit: int
    detail: str  # how a person reads it, e.g. "campaign 5,000, warm-up day 3: 30"
    # Why nothing under this level can be sent today, when that is so: "no mailbox can send:
    # every mailbox of the pool is paused (...)". Shown instead of "N of 0 (... cap binds)".
    held: str = ""
    # The same in a few words ("no mailbox can send"), where the page says `held` elsewhere.
    held_brief: str = ""


@dataclass(frozen=True)
class CampaignLimits:
    levels: list[CapLevel] = field(default_factory=list)

    @property
    def effective(self) -> int:
        return min(level.limit for level in self.levels)

    @property
    def binding(self) -> list[CapLevel]:
        return [level for level in self.levels if level.limit == self.effective]

    @property
    def held(self) -> str:
        """Why nothing can be sent today (a level that holds every send), or ""."""
        return next((level.held for level in self.levels if level.held), "")

    @property
    def held_brief(self) -> str:
        """`held` in a few words, for a page that shows the whole of it once elsewhere."""
        level = next((level for level in self.levels if level.held), None)
        return (level.held_brief or level.held) if level is not None else ""

    @property
    def binds(self) -> str:
        if self.held:
            return self.held
        names = [level.name for level in self.binding]
        return " and ".join(names) + (" caps bind" if len(names) > 1 else " cap binds")

    def sent_text(self, sent: int) -> str:
        """Today's sends against the limit: "37 of 120 today (venture cap binds)", or, when a
        level holds every send, "4 sent today; no mailbox can send: ..." (never "4 of 0")."""
        if self.held:
            return f"{sent:,} sent today; {self.held}"
        return f"{sent:,} of {self.effective:,} today ({self.binds})"

    def short(self) -> str:
        """For a list: "120 (venture cap binds)"."""
        return f"{self.effective:,} ({self.binds})"

    def sentence(self, *, brief: bool = False) -> str:
        """For a page: every level, the binding one named first; with `brief`, a level that
        holds every send only in a few words (for a page whose state badge says it in full)."""
        details = "; ".join(level.detail for level in self.levels)
        binds = (
            f"{self.held_brief}, as the campaign's state says"
            if brief and self.held
            else self.binds
        )
        return f"Effective today: {self.effective:,} ({binds}; {details})"


CapSource = Callable[[list[Campaign], dt.datetime], dict[int, CapLevel]]
_CAP_SOURCES: dict[str, CapSource] = {}

DeleteGuard = Callable[[Campaign], str | None]
_DELETE_GUARDS: dict[str, DeleteGuard] = {}


def register_cap_source(name: str, source: CapSource) -> None:
    """Add a level to every campaign's limits: `source(campaigns, now)` returns a CapLevel per
    campaign id it caps (in a fixed number of queries for the whole list)."""
    _CAP_SOURCES[name] = source


def register_delete_guard(name: str, guard: DeleteGuard) -> None:
    """`guard(campaign)` returns why the campaign may not be deleted, or None."""
    _DELETE_GUARDS[name] = guard


def _campaign_level(campaign: Campaign) -> CapLevel:
    limit = campaign.effective_daily_limit()
    detail = f"campaign {campaign.daily_send_limit:,}"
    day = campaign.warmup_day()
    if day is not None:
        detail += f", warm-up day {day}: {limit:,}"
    elif campaign.warmup_start_limit is not None:
        detail += f", warm-up from {campaign.warmup_start_limit:,} once started"
    return CapLevel("campaign", limit, detail)


def campaigns_limits(
    campaigns: Iterable[Campaign], now: dt.datetime | None = None
) -> dict[int, CampaignLimits]:
    """Every campaign's caps today, by id (each source asked once for the whole list)."""
    campaigns = list(campaigns)
    now = now or timezone.now()
    extra = {name: source(campaigns, now) for name, source in _CAP_SOURCES.items()}
    global_limit = settings.AICMO_GLOBAL_DAILY_LIMIT
    result = {}
    for campaign in campaigns:
        levels = [CapLevel("global", global_limit, f"global {global_limit:,}")]
        venture_limit = campaign.venture.daily_send_limit
        if venture_limit is not None:
            levels.append(CapLevel("venture", venture_limit, f"venture {venture_limit:,}"))
        levels.append(_campaign_level(campaign))
        levels.extend(found[campaign.pk] for found in extra.values() if campaign.pk in found)
        result[campaign.pk] = CampaignLimits(levels)
    return result


def campaign_limits(campaign: Campaign, now: dt.datetime | None = None) -> CampaignLimits:
    return campaigns_limits([campaign], now)[campaign.pk]


# --- Raises --------------------------------------------------------------------------------------

# A raise of these campaigns' limits asks for confirmation: they send, or will on resume.
RAISE_CONFIRM_STATUSES = (CampaignStatus.RUNNING, CampaignStatus.PAUSED)
RAISE_REASON_MAX = 500  # characters of a raise's reason kept in the audit trail


@dataclass(frozen=True)
class LimitRaise:
    attr: str  # the model field
    label: str  # how the admin names it
    old: int | bool | dt.date | None
    new: int | bool | dt.date | None

    @staticmethod
    def shown(value: int | bool | dt.date | None) -> str:
        if value is None:
            return "none"
        if isinstance(value, bool):  # a mailbox switched back on
            return "active" if value else "paused"
        return f"{value:,}" if isinstance(value, int) else str(value)

    @property
    def old_shown(self) -> str:
        return self.shown(self.old)

    @property
    def new_shown(self) -> str:
        return self.shown(self.new)


@dataclass(frozen=True)
class RampFields:
    """The fields of a daily limit with its warm-up ramp, and how the admin names them: a
    campaign's (the ramp starts when it starts) or a mailbox's (`since`: its own start day)."""

    limit: tuple[str, str]
    start: tuple[str, str]
    increase: tuple[str, str]
    since: tuple[str, str] | None = None


CAMPAIGN_RAMP = RampFields(
    limit=("daily_send_limit", "Daily send limit"),
    start=("warmup_start_limit", "Warm-up: sends on the first day"),
    increase=("warmup_daily_increase", "Warm-up: more each day"),
)


def ramp_raises(before, after, fields: RampFields) -> list[LimitRaise]:
    """Each change from `before` to `after` (the same record edited) that lets it send more:
    a higher daily limit, a warm-up cleared or started higher, a faster warm-up, or (with
    `since`) a warm-up moved earlier or its start day cleared (no day: no ramp)."""

    def change(names: tuple[str, str]) -> tuple[str, str, object, object]:
        attr, label = names
        return attr, label, getattr(before, attr), getattr(after, attr)

    raised = []
    attr, label, old, new = change(fields.limit)
    if new > old:
        raised.append(LimitRaise(attr, label, old, new))
    attr, label, old_start, new_start = change(fields.start)
    if old_start is not None and (new_start is None or new_start > old_start):
        raised.append(LimitRaise(attr, label, old_start, new_start))
    attr, label, old, new = change(fields.increase)
    if new_start is not None and new > old:
        raised.append(LimitRaise(attr, label, old, new))
    if fields.since is not None and old_start is not None and new_start is not None:
        attr, label, old, new = change(fields.since)
        if old is not None and (new is None or new < old):
            raised.append(LimitRaise(attr, label, old, new))
    return raised


def limit_raises(before: Campaign, after: Campaign) -> list[LimitRaise]:
    """Each change from `before` (the stored campaign) to `after` (the same one edited) that
    lets it send more while it runs or is paused (`ramp_raises`). Empty for any other status:
    a draft or stopped campaign sends nothing, so its limits change without confirmation."""
    if before.status not in RAISE_CONFIRM_STATUSES:
        return []
    return ramp_raises(before, after, CAMPAIGN_RAMP)


def campaign_delete_refusal(campaign: Campaign) -> str | None:
    """Why the console refuses to delete the campaign, or None."""
    if campaign.status == CampaignStatus.RUNNING:
        return (
            f"Campaign '{campaign.name}' is running and cannot be deleted: stop it first. "
            "A stopped campaign keeps its history for its report."
        )
    for guard in _DELETE_GUARDS.values():
        refusal = guard(campaign)
        if refusal:
            return refusal
    return None
