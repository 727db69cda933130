"""Non-trivial reads of the leads app (no writes here; those are `leads.services`)."""

from __future__ import annotations

from django.db.models import Count

from leads.models import (
    CampaignLeadPolicy,
    ConsentStatus,
    CrossCampaignPolicy,
    Lead,
    LeadStatus,
    Unsubscribe,
    UnsubscribeReason,
)
from ventures.models import Campaign, Venture


def lead_policy_of(campaign: Campaign) -> str:
    """The campaign's cross-campaign policy (SKIP_ACTIVE unless set otherwise)."""
    found = CampaignLeadPolicy.objects.filter(campaign=campaign).values_list(
        "cross_campaign", flat=True
    )
    return next(iter(found), CrossCampaignPolicy.SKIP_ACTIVE)


def lead_counts(campaign: Campaign) -> dict[str, int]:
    """Small summary used by commands and the demo."""
    qs = Lead.objects.filter(campaign=campaign)
    return {
        "total": qs.count(),
        "active": qs.filter(status=LeadStatus.ACTIVE).count(),
        "dnc": qs.filter(consent_status=ConsentStatus.DNC).count(),
    }


def unsubscribe_reason_counts(
    *, venture: Venture | None = None, campaign: Campaign | None = None
) -> dict[str, int]:
    """How many people unsubscribed, by the reason they gave, in a venture or a campaign (the
    campaign whose message they answered): every `UnsubscribeReason` in order, then "" for
    those who gave none. One grouped query."""
    if (venture is None) == (campaign is None):
        raise ValueError("Give a venture or a campaign.")
    rows = Unsubscribe.objects.filter(
        **({"venture": venture} if venture is not None else {"campaign": campaign})
    )
    found = dict(rows.order_by().values_list("reason").annotate(n=Count("id")))
    return {reason: found.get(reason, 0) for reason in [*UnsubscribeReason.values, ""]}
