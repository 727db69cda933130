"""Non-trivial reads of the leads app (no writes here; those are `leads.services`)."""

from __future__ import annotations

from leads.models import (
    CampaignLeadPolicy,
    ConsentStatus,
    CrossCampaignPolicy,
    Lead,
    LeadStatus,
)
from ventures.models import Campaign


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
