"""Reads of the control plane that more than one caller needs."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower
from django.db.models.lookups import StartsWith

from ventures.console import campaign_limits
from ventures.ids import parse_id
from ventures.models import Campaign, SystemControl, Venture, VentureApiToken

AUDIT_SEARCH_PREFIX_COLUMNS = ("action", "actor", "entity_repr")

ADMINISTRATOR_GROUP = "Administrator"
OPERATOR_GROUP = "Operator"
VIEWER_GROUP = "Viewer"


def user_sees_all_ventures(user) -> bool:
    """Superusers and Administrators see every venture; everyone else only their own."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    # Cached on the user object: the admin asks several times per request.
    cached = getattr(user, "_aicmo_sees_all_ventures", None)
    if cached is None:
        cached = user.groups.filter(name=ADMINISTRATOR_GROUP).exists()
        user._aicmo_sees_all_ventures = cached
    return cached


def ventures_visible_to(user) -> QuerySet[Venture]:
    if user_sees_all_ventures(user):
        return Venture.objects.all()
    if not user.is_authenticated:
        return Venture.objects.none()
    return Venture.objects.filter(memberships__user=user)


def campaigns_visible_to(user) -> QuerySet[Campaign]:
    if user_sees_all_ventures(user):
        return Campaign.objects.all()
    return Campaign.objects.filter(venture__in=ventures_visible_to(user))


def global_kill_reason() -> str | None:
    """Why every campaign is halted right now, or None: the setting, then the admin toggle."""
    if settings.AICMO_KILL_SWITCH:
        return "global kill switch (AICMO_KILL_SWITCH)"
    if SystemControl.objects.filter(pk=1, kill_switch=True).exists():
        return "global kill switch (admin)"
    return None


def global_kill_switch_on() -> bool:
    """The global switch is on if the setting says so or the admin toggle is on."""
    return global_kill_reason() is not None


def campaign_halt_reason(campaign: Campaign) -> str | None:
    """Why this campaign may not send right now because of a kill switch, or None."""
    return campaign.halt_reason(global_reason=global_kill_reason())


def campaign_summary(campaign: Campaign) -> dict[str, Any]:
    """What `campaign status`/`list --json` and the demo print about a campaign."""
    halt = campaign_halt_reason(campaign)
    limits = campaign_limits(campaign)
    return {
        "id": campaign.pk,
        "slug": campaign.slug,
        "name": campaign.name,
        "venture": campaign.venture.slug,
        "status": campaign.status,
        "mode": campaign.mode,
        "kill_switch": campaign.kill_switch,
        "halted_by": halt,
        "daily_send_limit": campaign.daily_send_limit,
        # What the outbox enforces today at every level (ventures.console), not only the
        # campaign's own limit after its warm-up.
        "effective_daily_limit": limits.effective,
        "limit_binds": limits.binds,
        "send_window": {
            "days": campaign.send_weekdays,
            "start": campaign.send_window_start.strftime("%H:%M"),
            "end": campaign.send_window_end.strftime("%H:%M"),
            "timezone": str(campaign.tzinfo),
        },
        "allowed_actions": campaign.allowed_actions(),
    }


def campaign_get(ref: str | int) -> Campaign:
    """Find a campaign by slug or numeric id (the `C` of the command line)."""
    qs = Campaign.objects.select_related("venture")
    ref = str(ref).strip()
    pk = parse_id(ref)
    found = (qs.filter(pk=pk).first() if pk is not None else None) or qs.filter(slug=ref).first()
    if found is None:
        raise Campaign.DoesNotExist(f"No campaign with slug or id {ref!r}.")
    return found


def api_token_authenticate(plaintext: str) -> VentureApiToken | None:
    """The active token matching `plaintext` (constant-time by hash lookup), or None."""
    from django.utils import timezone

    from ventures.services import hash_api_token

    if not plaintext or not plaintext.startswith("aicmo_"):
        return None
    token = (
        VentureApiToken.objects.select_related("venture")
        .filter(token_hash=hash_api_token(plaintext), revoked_at__isnull=True)
        .first()
    )
    if token is not None:
        VentureApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token


def audit_search_q(term: str) -> Q:
    """The audit log's search, as a filter: the whole term (spaces kept, so an entity named
    "Spring outreach" is found), not case-sensitive, matched against the start of the action
    ('campaign.' finds every campaign action), of the actor, or of the entity's name; or the
    entity's exact id. Not matched: a word inside a value, the reason's text. Each alternative
    is a range of its own index (ventures migration 0013_audit_search_indexes), so a
    search stays an index lookup however long the trail grows. A blank term matches all."""
    term = " ".join(term.split())
    if not term:
        return Q()
    found = Q(entity_id=term)
    for column in AUDIT_SEARCH_PREFIX_COLUMNS:
        found |= Q(StartsWith(Lower(column), term.lower()))
    return found
