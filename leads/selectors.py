"""Non-trivial reads of the leads app (no writes here; those are `leads.services`)."""

from __future__ import annotations

from django.db.models import Count, Q
from django.db.models.functions import Lower
from django.db.models.lookups import Exact, StartsWith

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


# Columns whose lower-cased value the lead search matches by prefix, each with its own index
# (`leads/migrations/0013`; the email key has the unique index). Never a substring match: a
# LIKE '%term%' reads every row of a million-lead table.
SEARCH_PREFIX_COLUMNS = ("first_name", "last_name", "company")


def lead_search_q(term: str) -> Q:
    """The lead list's search, as a filter.

    Matched, not case-sensitive: the start of the email address ('ann', 'ann.smith@acme'), of
    the first name, of the last name or of the company name; and a first name followed by the
    start of a last name ('ann smi': first name exactly 'ann', last name starting 'smi').
    Not matched: a word inside a value ('smith' does not find 'Goldsmith', 'acme' does not
    find 'The Acme Group'), the domain part of an address alone ('acme.example'), titles,
    custom fields, accents folded ('jose' does not find 'José'). Each alternative is a range
    of its own index (LIKE 'term%' on lower(column), text_pattern_ops on PostgreSQL), so the
    search stays an index lookup on a million leads. A blank term matches everything."""
    term = " ".join(term.split()).lower()
    if not term:
        return Q()
    found = Q(email_key__startswith=term) & ~Q(email_key="")
    for column in SEARCH_PREFIX_COLUMNS:
        found |= Q(StartsWith(Lower(column), term))
    first, _, last = term.partition(" ")
    if last:
        found |= Q(Exact(Lower("first_name"), first), StartsWith(Lower("last_name"), last))
    return found
