"""Auto-pause: a bad list must never burn a sending domain.

After each tick, and after each bounce or complaint reported, the campaign's figures are
read over a rolling window (`AICMO_AUTOPAUSE_WINDOW_HOURS`, and never from before its last
auto-pause, so that an operator who resumes starts from a clean slate):

- bounce rate: hard bounces (the mail server's 5xx for the recipient at hand-over, and those
  the ESP reports) over emails sent; above `AICMO_AUTOPAUSE_BOUNCE_RATE`;
- complaint rate: spam complaints over emails sent; above `AICMO_AUTOPAUSE_COMPLAINT_RATE`;
- both only once at least `AICMO_AUTOPAUSE_MIN_SENDS` emails were sent in the window;
- sending errors over the last hour: messages deferred for a transient failure, given up or
  left unknown, over those and the ones sent; above `AICMO_AUTOPAUSE_ERROR_RATE`, once
  there were at least ERROR_MIN_ATTEMPTS.

A campaign that trips is paused (`campaign_transition`, audited with the figures) and an
`AutoPause` row keeps them for the console. The same figures per mailbox pause the mailbox
(its sends wait, every campaign's). Resuming is the operator's audited decision.

Reading the figures counts a campaign's sends over the window, which costs the more the
more it sent; an ESP posts bounces in batches, several a second. So feedback reads a
campaign's health at most every `AICMO_AUTOPAUSE_CHECK_SECONDS` (`health_check_soon`: the
first batch after the gap claims the check with a conditional UPDATE), and the tick, before
it claims anything, reads it for every running campaign with a bounce or complaint received
since its last check (`health_catch_up`): nothing is sent on figures that were not read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from outreach.models import (
    AutoPause,
    FeedbackEvent,
    FeedbackKind,
    Mailbox,
    MessageState,
    OutboundMessage,
    StepKind,
)
from ventures.console import AUTO_PAUSE_ACTOR, AUTO_PAUSE_PREFIX
from ventures.db import sending_gates
from ventures.models import Campaign, CampaignStatus
from ventures.services import audit_record, campaign_transition

ACTOR = AUTO_PAUSE_ACTOR  # the console reads an auto-pause by it (ventures.console)
MAILBOX_AUTO_PAUSE = "mailbox.auto_pause"  # the audit action (outreach.selectors reads it)
# Feedback that moves a campaign's figures (a rejection may be a spam block or a bad address).
ALARM_KINDS = (FeedbackKind.BOUNCED, FeedbackKind.COMPLAINED, FeedbackKind.REJECTED)
ERROR_MIN_ATTEMPTS = 20
ERROR_WINDOW = dt.timedelta(hours=1)


@dataclass
class Health:
    since: dt.datetime
    sent: int
    bounces: int
    complaints: int
    attempts_last_hour: int
    errors_last_hour: int

    @property
    def bounce_rate(self) -> float:
        return self.bounces / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.sent if self.sent else 0.0

    def tripped(self) -> str | None:
        """Why this must pause, with the figures, or None."""
        if self.sent >= settings.AICMO_AUTOPAUSE_MIN_SENDS:
            limit = settings.AICMO_AUTOPAUSE_BOUNCE_RATE
            if self.bounce_rate > limit:
                return (
                    f"bounce rate {self.bounce_rate:.1%} ({self.bounces} of {self.sent} sent "
                    f"since {self.since:%Y-%m-%d %H:%M} UTC) is above {limit:.1%}"
                )
            limit = settings.AICMO_AUTOPAUSE_COMPLAINT_RATE
            if self.complaint_rate > limit:
                return (
                    f"complaint rate {self.complaint_rate:.2%} ({self.complaints} of {self.sent} "
                    f"sent since {self.since:%Y-%m-%d %H:%M} UTC) is above {limit:.2%}"
                )
        if self.attempts_last_hour >= ERROR_MIN_ATTEMPTS:
            rate = self.errors_last_hour / self.attempts_last_hour
            if rate > settings.AICMO_AUTOPAUSE_ERROR_RATE:
                return (
                    f"sending errors: {self.errors_last_hour} of {self.attempts_last_hour} "
                    f"attempts in the last hour failed ({rate:.0%}, above "
                    f"{settings.AICMO_AUTOPAUSE_ERROR_RATE:.0%})"
                )
        return None

    def figures(self) -> dict:
        data = asdict(self)
        data["since"] = self.since.isoformat()
        return {**data, "bounce_rate": round(self.bounce_rate, 4),
                "complaint_rate": round(self.complaint_rate, 4)}  # fmt: skip


def health_of(campaign: Campaign, mailbox: Mailbox | None = None, *, now=None) -> Health:
    now = now or timezone.now()
    since = now - dt.timedelta(hours=settings.AICMO_AUTOPAUSE_WINDOW_HOURS)
    last = AutoPause.objects.filter(campaign=campaign, mailbox=mailbox).order_by("-paused_at")
    if (latest := last.values_list("paused_at", flat=True).first()) is not None:
        since = max(since, latest)
    emails = OutboundMessage.objects.filter(campaign=campaign, kind=StepKind.EMAIL)
    events = FeedbackEvent.objects.filter(message__campaign=campaign, received_at__gte=since)
    if mailbox is not None:
        emails = emails.filter(mailbox=mailbox)
        events = events.filter(message__mailbox=mailbox)
    refused = emails.filter(
        state=MessageState.FAILED, reason_code="hard_bounce", updated_at__gte=since
    ).count()
    sent = emails.filter(sent_at__gte=since).count() + refused
    reported = dict(
        events.filter(kind__in=[FeedbackKind.BOUNCED, FeedbackKind.COMPLAINED])
        .order_by()
        .values_list("kind")
        .annotate(n=Count("id"))
    )
    hour_ago = now - ERROR_WINDOW
    errors = emails.filter(
        Q(reason_code__in=["transient", "gave_up"]) | Q(state=MessageState.UNKNOWN),
        updated_at__gte=hour_ago,
    ).count()
    sent_last_hour = emails.filter(sent_at__gte=hour_ago).count()
    return Health(
        since=since,
        sent=sent,
        bounces=refused + reported.get(FeedbackKind.BOUNCED, 0),
        complaints=reported.get(FeedbackKind.COMPLAINED, 0),
        attempts_last_hour=sent_last_hour + errors,
        errors_last_hour=errors,
    )


def health_check_soon(campaign_ids, *, now=None) -> dict[int, list[AutoPause]]:
    """`health_check` for each campaign not checked in the last AICMO_AUTOPAUSE_CHECK_SECONDS
    (claimed by a conditional UPDATE, so concurrent batches check once); the others wait for
    the next batch after the gap or the tick's catch-up. Returns the pauses per campaign."""
    now = now or timezone.now()
    gap = dt.timedelta(seconds=settings.AICMO_AUTOPAUSE_CHECK_SECONDS)
    done = {}
    for campaign_id in sorted(set(campaign_ids)):
        claimed = (
            Campaign.objects.filter(pk=campaign_id)
            .filter(Q(health_checked_at__isnull=True) | Q(health_checked_at__lte=now - gap))
            .update(health_checked_at=now)
        )
        if claimed:
            done[campaign_id] = health_check(campaign_id, now=now)
    return done


def health_catch_up(*, now=None, campaign: Campaign | None = None) -> list[AutoPause]:
    """For the tick, before it sends: every running campaign with a bounce or complaint
    received since its last health check is checked now."""
    from django.db.models import DateTimeField, Exists, OuterRef, Value
    from django.db.models.functions import Coalesce

    never = Value(dt.datetime(1970, 1, 1, tzinfo=dt.UTC), output_field=DateTimeField())
    unread = FeedbackEvent.objects.filter(
        kind__in=ALARM_KINDS,
        message__campaign=OuterRef("pk"),
        received_at__gt=Coalesce(OuterRef("health_checked_at"), never),
    )
    unchecked = Campaign.objects.filter(status=CampaignStatus.RUNNING).filter(Exists(unread))
    if campaign is not None:
        unchecked = unchecked.filter(pk=campaign.pk)
    return [p for pk in unchecked.values_list("pk", flat=True) for p in health_check(pk, now=now)]


def health_check(campaign_id: int, *, now=None) -> list[AutoPause]:
    """Pause the campaign, and each of its mailboxes, whose figures trip a threshold (the
    campaign read afresh: its status decides)."""
    now = now or timezone.now()
    Campaign.objects.filter(pk=campaign_id).update(health_checked_at=now)
    pauses = []
    campaign = Campaign.objects.select_related("venture").get(pk=campaign_id)
    if campaign.status == CampaignStatus.RUNNING:
        health = health_of(campaign, now=now)
        reason = health.tripped()
        if reason is not None:
            campaign_transition(
                campaign=campaign, action="pause", actor=ACTOR, reason=AUTO_PAUSE_PREFIX + reason
            )
            pauses.append(
                AutoPause.objects.create(
                    campaign=campaign, reason=reason[:500], figures=health.figures(), paused_at=now
                )
            )
    for box in Mailbox.objects.filter(campaigns=campaign, is_active=True):
        health = health_of(campaign, box, now=now)
        reason = health.tripped()
        if reason is None:
            continue
        with transaction.atomic():
            # Waits for the batches handing over through it; the next ones see it paused.
            sending_gates(mailbox_ids=[box.pk], exclusive=True)
            Mailbox.objects.filter(pk=box.pk).update(is_active=False)
        audit_record(
            actor=ACTOR,
            action=MAILBOX_AUTO_PAUSE,
            entity=box,
            before={"is_active": True},
            after={"is_active": False, "figures": health.figures()},
            reason=f"Auto-paused in campaign {campaign.slug}: {reason}",
        )
        pauses.append(
            AutoPause.objects.create(
                campaign=campaign,
                mailbox=box,
                reason=reason[:500],
                figures=health.figures(),
                paused_at=now,
            )
        )
    return pauses
