"""Applying a venture's and a campaign's rules to leads: re-scoring with the venture's current
segments and scoring rules (`lead_rescore`), and setting the campaign's cross-campaign policy
(`campaign_lead_policy_set`; the importer reads it with `leads.selectors.lead_policy_of`).
Both audit what they change; the scoring itself is `leads.scoring`.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet

from leads.models import (
    CampaignLeadPolicy,
    CrossCampaignPolicy,
    Lead,
    LeadStatus,
)
from leads.scoring import LeadScorer
from leads.selectors import lead_policy_of
from ventures.models import Campaign, Venture
from ventures.services import Actor, DomainError, audit_record


def campaign_lead_policy_set(*, campaign: Campaign, cross_campaign: str, actor: Actor) -> None:
    """Set what an import does with people active in another campaign of the venture (a
    CrossCampaignPolicy value; DomainError otherwise). Audited as `leads.policy` when it
    changes."""
    if cross_campaign not in CrossCampaignPolicy.values:
        raise DomainError(f"Unknown cross-campaign policy {cross_campaign!r}.")
    with transaction.atomic():
        before = lead_policy_of(campaign)
        _policy, _ = CampaignLeadPolicy.objects.update_or_create(
            campaign=campaign, defaults={"cross_campaign": cross_campaign}
        )
        if before != cross_campaign:
            audit_record(
                actor=actor,
                action="leads.policy",
                entity=campaign,
                before={"cross_campaign": before},
                after={"cross_campaign": cross_campaign},
            )


def lead_rescore(*, leads: QuerySet[Lead], actor: Actor) -> int:
    """Re-match segments and re-score the given leads (one venture at a time, in chunks) with
    the venture's current rules; returns how many changed."""
    changed = 0
    venture_ids = list(leads.order_by().values_list("venture_id", flat=True).distinct())
    for venture in Venture.objects.filter(pk__in=venture_ids):
        scorer = LeadScorer.for_venture(venture)
        batch: list[Lead] = []
        fields = ("segment_id", "fit_score", "grade", "score_explanation")
        for lead in (
            leads.filter(venture=venture)
            .exclude(status=LeadStatus.ERASED)
            .only("title", "industry", "country", "company_size", "custom_fields", *fields)
            .iterator(chunk_size=5000)
        ):
            score = scorer.score(
                title=lead.title,
                industry=lead.industry,
                country=lead.country,
                company_size=lead.company_size,
                signals=scorer.signals_present(lead.custom_fields or {}),
            )
            new = (score.segment_id, score.fit_score, score.grade, score.explanation)
            if new != tuple(getattr(lead, f) for f in fields):
                lead.segment_id, lead.fit_score, lead.grade, lead.score_explanation = new
                batch.append(lead)
            if len(batch) >= 2000:
                changed += _save_scores(batch, fields)
                batch = []
        changed += _save_scores(batch, fields)
        audit_record(
            actor=actor, action="leads.rescore", entity=venture, after={"changed": changed}
        )
    return changed


def _save_scores(batch: list[Lead], fields: tuple[str, ...]) -> int:
    if batch:
        Lead.objects.bulk_update(batch, fields, batch_size=1000)
    return len(batch)
