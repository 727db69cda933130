"""The campaign page's Figures panel: what an operator looks at first, read on every page view.

`campaign_glance` reads the figures in a fixed number of small queries, whatever the
campaign's size (the full report, `reporting.figures.campaign_report`, is about twenty
queries: it stays on the report page):
- the funnel per lead, with the report's definitions: leads sent an email and leads with a
  delivered, replied, positive or bounced event (the leads' kept facts, `outreach.facts`),
  leads unsubscribed (status or a row); the messages by state (the messages' tally,
  `outreach.tally`, a few hundred rows whatever the campaign's size);
- sends and replies per day over the last `DAYS` days in the campaign's time zone (the sends
  from the tally's quarter hours, `outreach.tally.sent_by_day`);
- the narrative memory of the campaign's venture (`outreach.selectors.narrative_standings`:
  sends, positive replies, rate and chance of being best per segment and arm; every campaign
  of the venture counts, as the engine's choice of arm does);
- today's cap use: every level of `ventures.console.campaign_limits` with what its ledger
  counted today (the mailboxes' level sums the campaign's active mailboxes);
- the next due messages, each with when it can go out: its due time, moved to the send
  window's next opening as the tick defers it, and nothing while the campaign is not running.

`campaign_figures_panel` renders it (format_html only) with the timeline as an SVG chart
(`reporting.charts.timeline_chart`) and, under the figures, the page's one link to the full
report with its last kept copy and daily schedule (two small reads).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import CharField, Count, F, Q, Sum
from django.db.models.functions import Cast, Coalesce, TruncDate
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from leads.models import Lead, LeadStatus, Unsubscribe
from outreach.facts import FACT_BITS
from outreach.models import (
    DUE_STATES,
    FeedbackEvent,
    FeedbackKind,
    LeadFacts,
    Mailbox,
    NarrativeStat,
    OutboundMessage,
    SendLedger,
)
from outreach.selectors import SegmentStanding, narrative_standings
from outreach.tally import sent_by_day as tally_sent_by_day
from outreach.tally import tally
from reporting.models import ReportFile, ReportSchedule
from ventures.console import CampaignLimits, campaign_limits
from ventures.models import Campaign, CampaignStatus

DAYS = 14  # the timeline's days, today included
NEXT_SHOWN = 5  # next due messages shown
# The panel's funnel: (key, label), per lead sent to (as the report's).
GLANCE_FUNNEL = (
    ("sent", "Leads sent to"),
    ("delivered", "Delivered"),
    ("replied", "Replied"),
    ("positive", "Replied positively"),
    ("bounced", "Bounced"),
    ("unsubscribed", "Unsubscribed"),
)


@dataclass(frozen=True)
class CapUse:
    name: str
    limit: int
    used: int
    detail: str
    binds: bool
    held: str = ""  # why nothing under this level can be sent today (ventures.console)
    held_brief: str = ""  # the same in a few words: the page's state badge says it in full


@dataclass(frozen=True)
class NextSend:
    at: dt.datetime | None  # None: not while the campaign is not running
    due_at: dt.datetime
    recipient: str
    step: str


@dataclass
class Glance:
    funnel: dict[str, int]
    days: list[dt.date]
    sent_by_day: list[int]
    replied_by_day: list[int]
    standings: list[SegmentStanding]
    caps: list[CapUse]
    effective: int
    next_sends: list[NextSend]
    scheduled: int
    running: bool
    messages: dict[str, int] = field(default_factory=dict)

    def rate(self, key: str) -> float | None:
        sent = self.funnel["sent"]
        return self.funnel[key] / sent if sent else None


def campaign_glance(campaign: Campaign, *, now: dt.datetime | None = None) -> Glance:
    """The panel's figures (see the module docstring), in a fixed number of queries."""
    now = now or timezone.now()
    tz = campaign.tzinfo
    messages = OutboundMessage.objects.filter(campaign=campaign).order_by()
    by_state: dict[str, int] = defaultdict(int)
    for _step, state, *_rest, n in tally(campaign.pk):  # the messages' tally, not the messages
        by_state[state] += n
    by_state = dict(by_state)
    funnel = _lead_facts(campaign)
    funnel["unsubscribed"] = (
        Lead.objects.filter(campaign=campaign)
        .filter(
            Q(status=LeadStatus.UNSUBSCRIBED)
            | Q(pk__in=Unsubscribe.objects.filter(lead__campaign=campaign).values("lead_id"))
        )
        .count()
    )
    today = now.astimezone(tz).date()
    days = [today - dt.timedelta(days=DAYS - 1 - n) for n in range(DAYS)]
    since = dt.datetime.combine(days[0], dt.time(0, 0), tzinfo=tz)
    sent = tally_sent_by_day(campaign.pk, tz, since)
    replied = dict(
        FeedbackEvent.objects.filter(lead__campaign=campaign, kind=FeedbackKind.REPLIED)
        .annotate(at=Coalesce("occurred_at", "received_at"))
        .filter(at__gte=since)
        .annotate(day=TruncDate("at", tzinfo=tz))
        .order_by()
        .values_list("day")
        .annotate(n=Count("id"))
    )
    running = campaign.status == CampaignStatus.RUNNING
    limits = campaign_limits(campaign, now)
    return Glance(
        funnel=funnel,
        days=days,
        sent_by_day=[sent.get(day, 0) for day in days],
        replied_by_day=[replied.get(day, 0) for day in days],
        standings=narrative_standings(
            # A template with neither angle nor variant (a plain follow-up) is no narrative.
            NarrativeStat.objects.filter(venture_id=campaign.venture_id).exclude(
                narrative_angle="", variant_label=""
            )
        ),
        caps=_cap_use(campaign, limits, now),
        effective=limits.effective,
        next_sends=_next_sends(campaign, messages, now, running),
        scheduled=sum(by_state.get(state, 0) for state in DUE_STATES),
        running=running,
        messages=by_state,
    )


def _lead_facts(campaign: Campaign) -> dict[str, int]:
    """Leads sent an email, and leads with a delivered, replied, positive or bounced event:
    one aggregate of the leads' kept facts (`outreach.facts`: a narrow row per lead)."""
    keys = ("delivered", "replied", "positive", "bounced")
    facts = LeadFacts.objects.filter(campaign=campaign).annotate(
        **{f"{key}_bit": F("event_flags").bitand(FACT_BITS[key]) for key in keys}
    )
    return facts.aggregate(
        sent=Count("pk", filter=Q(emails_sent__gt=0)),
        **{key: Count("pk", filter=~Q(**{f"{key}_bit": 0})) for key in keys},
    )


def _zone(name: str) -> dt.tzinfo:
    """A venture's day (as the tick's caps read it): its zone, else the site's."""
    try:
        return zoneinfo.ZoneInfo(name or settings.TIME_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def _cap_use(campaign: Campaign, limits: CampaignLimits, now: dt.datetime) -> list[CapUse]:
    """Each level with today's count in its ledger (`outreach.dispatch.caps_of`'s slots)."""
    site_day = now.astimezone(zoneinfo.ZoneInfo(settings.TIME_ZONE)).date()
    venture_day = now.astimezone(_zone(campaign.venture.timezone)).date()
    campaign_day = now.astimezone(campaign.tzinfo).date()
    boxes = Mailbox.objects.filter(campaigns=campaign, is_active=True).annotate(
        key=Cast("pk", output_field=CharField())
    )
    rows = (
        SendLedger.objects.filter(
            Q(scope="global", key="all", day=site_day)
            | Q(scope="venture", key=str(campaign.venture_id), day=venture_day)
            | Q(scope="campaign", key=str(campaign.pk), day=campaign_day)
            | Q(scope="mailbox", key__in=boxes.values("key"), day=venture_day)
        )
        .order_by()
        .values_list("scope")
        .annotate(n=Sum("count"))
    )
    used = {"mailboxes" if scope == "mailbox" else scope: n for scope, n in rows}
    return [
        CapUse(level.name, level.limit, used.get(level.name, 0), level.detail,
               level.limit == limits.effective, level.held, level.held_brief or level.held)
        for level in limits.levels
    ]  # fmt: skip


def _next_sends(campaign, messages, now: dt.datetime, running: bool) -> list[NextSend]:
    due = (
        messages.filter(state__in=DUE_STATES)
        .select_related("step__sequence")
        .order_by("due_at", "id")[:NEXT_SHOWN]
    )
    tz = campaign.tzinfo
    out = []
    for message in due:
        at = campaign.next_window_opening(tz, max(message.due_at, now)) if running else None
        step = message.step
        out.append(
            NextSend(
                at=at,
                due_at=message.due_at,
                recipient=message.recipient or "(address read when it is sent)",
                step=f"{step.sequence.slug} #{step.position} · {step.get_kind_display()}",
            )
        )
    return out


# --- The panel -----------------------------------------------------------------------------------


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.1%}"


def _bar(part: int, whole: int, tone: str = "") -> str:
    width = 0 if not whole else min(part / whole, 1.0) * 100
    return format_html(
        '<span class="glance-bar{}"><span style="width:{}%"></span></span>',
        f" glance-bar-{tone}" if tone else "",
        f"{width:.1f}",
    )


def _funnel_html(glance: Glance) -> str:
    sent = glance.funnel["sent"]
    rows = format_html_join(
        "",
        '<tr class="funnel-{}"><th scope="row">{}</th><td class="num">{}</td>'
        '<td class="num">{}</td><td class="bar">{}</td></tr>',
        (
            (key, label, f"{glance.funnel[key]:,}",
             "" if key == "sent" else _percent(glance.rate(key)),
             _bar(glance.funnel[key], sent, "bad" if key in ("bounced", "unsubscribed") else ""))
            for key, label in GLANCE_FUNNEL
        ),
    )  # fmt: skip
    return format_html(
        '<table class="glance-table glance-funnel"><thead><tr><th>Leads</th>'
        '<th class="num">Count</th><th class="num">Rate</th><th></th></tr></thead>'
        "<tbody>{}</tbody></table>",
        rows,
    )


def _caps_html(glance: Glance) -> str:
    rows = format_html_join(
        "",
        '<tr class="cap-{}{}"><th scope="row">{}{}</th><td class="num">{}</td>'
        '<td class="num">{}</td><td class="bar">{}</td></tr>',
        (
            (cap.name, " binds" if cap.binds else "", cap.detail, _cap_badge(cap),
             f"{cap.used:,}", f"{cap.limit:,}", _bar(cap.used, cap.limit, "cap"))
            for cap in glance.caps
        ),
    )  # fmt: skip
    return format_html(
        '<table class="glance-table glance-caps"><thead><tr><th>Cap today</th>'
        '<th class="num">Sent</th><th class="num">Limit</th><th></th></tr></thead>'
        "<tbody>{}</tbody></table>",
        rows,
    )


def _cap_badge(cap: CapUse) -> str:
    """ "binds" beside the binding level; a level that holds every send says so instead, in a
    few words (the campaign's state badge, at the top of the page, says why in full)."""
    if cap.held:
        return format_html(' <span class="state state-stop">{}</span>', cap.held_brief)
    return format_html(' <span class="state state-wait">{}</span>', "binds") if cap.binds else ""


def _variants_html(glance: Glance) -> str:
    if not glance.standings:
        return format_html("<p>{}</p>", "No narrative arm has sent yet.")
    rows = []
    for standing in glance.standings:
        for arm in standing.arms:
            rows.append(
                (
                    standing.segment_name,
                    format_html("<strong>{}</strong>", arm.label) if arm.winner else arm.label,
                    f"{arm.stat.sends:,}",
                    f"{arm.stat.positive_replies:,}",
                    _percent(arm.rate if arm.stat.sends else None),
                    arm.p_best_text,
                    _bar(round(arm.p_best * 1000), 1000),
                )
            )
    body = format_html_join(
        "",
        '<tr><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td>'
        '<td class="num">{}</td><td class="num">{}</td><td class="bar">{}</td></tr>',
        rows,
    )
    return format_html(
        '<table class="glance-table glance-variants"><thead><tr><th>Segment</th><th>Narrative</th>'
        '<th class="num">Sends</th><th class="num">Positive</th><th class="num">Rate</th>'
        '<th class="num">P(best)</th><th></th></tr></thead><tbody>{}</tbody></table>'
        '<p class="help">The narrative memory of the venture (every campaign of it).</p>',
        body,
    )


def _next_html(glance: Glance, tz) -> str:
    if not glance.next_sends:
        return format_html("<p>{}</p>", "Nothing is scheduled.")
    rows = format_html_join(
        "",
        '<tr><td class="num">{}</td><td>{}</td><td>{}</td></tr>',
        (
            (f"{n.at.astimezone(tz):%a %d %b %H:%M}" if n.at else "when resumed",
             n.recipient, n.step)
            for n in glance.next_sends
        ),
    )  # fmt: skip
    return format_html(
        '<table class="glance-table glance-next"><thead><tr><th class="num">When ({})</th>'
        "<th>To</th><th>Step</th></tr></thead><tbody>{}</tbody></table>"
        '<p class="help">{} messages scheduled or deferred.</p>',
        tz,
        rows,
        f"{glance.scheduled:,}",
    )


def campaign_figures_panel(request, campaign: Campaign) -> str:
    """The campaign page's Figures panel (see the module docstring)."""
    # matplotlib takes 0.4 s to import: only a page that draws the chart pays for it, not
    # every process that loads the admin (each `manage.py` command did).
    from reporting.charts import timeline_chart

    glance = campaign_glance(campaign)
    chart = timeline_chart(
        glance.days,
        {"Sends": glance.sent_by_day, "Replies": glance.replied_by_day},
        title=f"Sends and replies, last {DAYS} days",
    )
    return format_html(
        '<link rel="stylesheet" href="{}"><div class="glance">'
        '<section class="glance-part"><h3>Funnel</h3>{}</section>'
        '<section class="glance-part glance-chart"><h3>Sends and replies</h3>{}</section>'
        '<section class="glance-part"><h3>Cap use today</h3>{}</section>'
        '<section class="glance-part"><h3>Next sends</h3>{}</section>'
        '<section class="glance-part glance-wide"><h3>Variant performance</h3>{}</section>'
        "</div>{}",
        static("reporting/panel.css"),
        _funnel_html(glance),
        # Our own SVG, drawn from counts and a fixed title: nothing of an operator's in it.
        mark_safe(chart),
        _caps_html(glance),
        _next_html(glance, campaign.tzinfo),
        _variants_html(glance),
        _report_html(request, campaign),
    )


def _report_html(request, campaign: Campaign) -> str:
    """The way to the full report, its last kept copy and the daily schedule; nothing for a
    user who may not read reports."""
    if not request.user.has_perm("reporting.view_reportfile"):
        return ""
    kept = ReportFile.objects.filter(campaign=campaign).first()
    schedule = ReportSchedule.objects.filter(campaign=campaign, is_active=True).first()
    return format_html(
        '<p class="glance-report"><a class="button" href="{}">Open the full report</a> {} {}</p>',
        reverse("admin:reporting_campaign_report", args=[campaign.pk]),
        f"Last kept copy: {kept.generated_at:%Y-%m-%d %H:%M} UTC ({kept.get_format_display()})."
        if kept
        else "No copy kept yet.",
        f"Daily report after {schedule.hour:02d}:00 ({campaign.timezone})."
        if schedule
        else "No daily report.",
    )
