"""Lead -> template context: the one place that decides what a template can see of a lead.

templating renders plain dicts and does not know what a lead is (DESIGN.md). This module builds
those dicts from leads, declares their shape to templating (`LEAD_CONTEXT_SCHEMA`, so unknown
attributes are refused when a template is saved) and gives the operator console its recipients
(`LeadRecipients`). Both are registered in `OutreachConfig.ready()`.

Blank lead fields are left out of the context, so a template's fallback applies:
`{{ first_name | default("there") }}` prints "there" for a lead without a first name, and a
bare `{{ first_name }}` blocks the send instead of printing "Hi ,".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from leads.models import PROFILE_FIELDS, Lead, LeadStatus
from outreach.unsubscribe import unsubscribe_url
from templating.hooks import Recipient
from templating.sandbox import ContextSchema
from templating.services import render_logs_erase_subject
from ventures.ids import parse_id
from ventures.models import Campaign

LEAD_FIELDS = ("email", *PROFILE_FIELDS, "full_name", "grade")
SEGMENT_FIELDS = ("name", "slug")
CAMPAIGN_FIELDS = ("name", "slug", "objective")
VENTURE_FIELDS = ("name", "offer_summary", "primary_cta", "owner_name", "postal_address")
SENDER_FIELDS = ("name", "email", "reply_to")
TEMPLATE_FIELDS = ("name", "variant_label", "narrative_angle")
NAMESPACES = ("lead", "custom", "segment", "campaign", "venture", "sender", "template")
RESERVED_NAMES = frozenset(
    {*NAMESPACES, *LEAD_FIELDS, "unsubscribe_url", "choose", "range", "loop"}
)

LEAD_CONTEXT_SCHEMA = ContextSchema(
    namespaces={
        "lead": frozenset({*LEAD_FIELDS, "custom"}),
        "segment": frozenset(SEGMENT_FIELDS),
        "campaign": frozenset(CAMPAIGN_FIELDS),
        "venture": frozenset(VENTURE_FIELDS),
        "sender": frozenset(SENDER_FIELDS),
        "template": frozenset(TEMPLATE_FIELDS),
    },
    open_namespaces=frozenset({("custom",), ("lead", "custom")}),
    descriptions={
        "first_name, last_name, full_name, title, company, ...": (
            "the lead's fields (also as lead.<field>); blank fields are undefined"
        ),
        "<custom column>": (
            "each extra column of the import, e.g. icebreaker (also custom.<name>); names are "
            "lower-cased with spaces and punctuation as _"
        ),
        "segment.name": "the lead's ICP segment",
        "campaign.name, campaign.objective": "the campaign",
        "venture.name, venture.offer_summary, venture.primary_cta, venture.postal_address": (
            "the venture"
        ),
        "sender.name, sender.email, sender.reply_to": "the campaign's sender identity",
        "unsubscribe_url": "the lead's one-click unsubscribe link",
        'choose("Hi", "Hello", key="greeting")': "the same choice for the same lead, always",
    },
)


def _present(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, "")}


def custom_key(name: str) -> str:
    """ "Intent Signal" -> "intent_signal": a custom column's name as a template variable."""
    key = re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")
    return key if key and not key[0].isdigit() else f"col_{key}"


def lead_subject_ref(lead: Lead) -> str:
    """How render logs name a lead (templating stores it as a plain string)."""
    return f"lead:{lead.pk}"


def lead_choice_seed(lead: Lead) -> str:
    """The seed of `choose()`: the identity hash, so a person gets the same wording in every
    campaign and on every re-render."""
    return lead.identity_hash or lead_subject_ref(lead)


def lead_context(*, lead: Lead, campaign: Campaign, template: Any = None) -> dict[str, Any]:
    """The template context for `lead` in `campaign` (see LEAD_CONTEXT_SCHEMA for its shape)."""
    venture = campaign.venture
    fields = _present({name: getattr(lead, name) for name in LEAD_FIELDS})
    custom = _present(
        {
            custom_key(k): v
            for k, v in (lead.custom_fields or {}).items()
            if not isinstance(v, dict | list)
        }
    )
    context: dict[str, Any] = {
        **{k: v for k, v in custom.items() if k not in RESERVED_NAMES},
        **fields,
        "lead": {**fields, "custom": custom},
        "custom": custom,
        "campaign": _present({name: getattr(campaign, name) for name in CAMPAIGN_FIELDS}),
        "venture": _present({name: getattr(venture, name) for name in VENTURE_FIELDS}),
        "sender": _present(
            {
                "name": campaign.sender_name or venture.owner_name,
                "email": campaign.sender_email or venture.owner_email,
                "reply_to": campaign.reply_to or campaign.sender_email or venture.owner_email,
            }
        ),
        "unsubscribe_url": unsubscribe_url(lead),
    }
    segment = lead.segment if lead.segment_id else None
    if segment is not None:
        context["segment"] = _present({name: getattr(segment, name) for name in SEGMENT_FIELDS})
    if template is not None:
        context["template"] = _present({name: getattr(template, name) for name in TEMPLATE_FIELDS})
    return context


def sample_lead(campaign: Campaign) -> Lead:
    """The documented fictitious lead of the preview ("Alex Sample"), never saved."""
    lead = Lead(
        campaign=campaign,
        venture=campaign.venture,
        email="alex.sample@example.com",
        first_name="Alex",
        last_name="Sample",
        title="Head of Sales",
        company="Example Analytics GmbH",
        company_domain="example.com",
        website="https://example.com",
        city="Berlin",
        country="Germany",
        timezone="Europe/Berlin",
        industry="Software",
        company_size=120,
        custom_fields={"icebreaker": "I enjoyed your post on pipeline reviews."},
    )
    lead.segment = campaign.venture.segments.order_by("priority", "name").first()
    return lead


def lead_recipient(*, lead: Lead, campaign: Campaign) -> Recipient:
    context = lead_context(lead=lead, campaign=campaign)
    if lead.pk is None:
        return Recipient(
            ref="sample",
            label="Sample lead (Alex Sample, Example Analytics GmbH)",
            context=context,
            seed="sample",
            unsubscribe_url=context["unsubscribe_url"],
            is_sample=True,
        )
    return Recipient(
        ref=lead_subject_ref(lead),
        label=_label(lead),
        context=context,
        seed=lead_choice_seed(lead),
        unsubscribe_url=context["unsubscribe_url"],
    )


def _label(lead: Lead) -> str:
    name = lead.full_name
    return f"{name} <{lead.email}>" if name and lead.email else str(lead)


class LeadRecipients:
    """templating's RecipientSource for leads. The check covers active leads only (others are
    never sent to); the preview may pick any lead of the campaign that is not erased."""

    def choices(self, *, campaign: Campaign, limit: int, search: str = "") -> list[tuple[str, str]]:
        leads = Lead.objects.filter(campaign=campaign).exclude(status=LeadStatus.ERASED)
        if search:
            # A range of the unique (email key, campaign) index: any lead of a big campaign.
            leads = leads.filter(email_key__startswith=search.strip().lower())
        leads = leads.order_by("pk").only("pk", "email", "first_name", "last_name", "status")
        return [(lead_subject_ref(lead), _label(lead)) for lead in leads[:limit]]

    def get(self, *, campaign: Campaign, ref: str) -> Recipient | None:
        if ref == "sample":
            return self.sample(campaign=campaign)
        pk = parse_id(ref.removeprefix("lead:"))
        if not ref.startswith("lead:") or pk is None:
            return None
        lead = (
            Lead.objects.filter(campaign=campaign, pk=pk)
            .exclude(status=LeadStatus.ERASED)
            .select_related("segment")
            .first()
        )
        return None if lead is None else lead_recipient(lead=lead, campaign=campaign)

    def sample(self, *, campaign: Campaign) -> Recipient:
        return lead_recipient(lead=sample_lead(campaign), campaign=campaign)

    def count(self, *, campaign: Campaign) -> int:
        return Lead.objects.filter(campaign=campaign, status=LeadStatus.ACTIVE).count()

    def iterate(self, *, campaign: Campaign, limit: int) -> Iterator[Recipient]:
        leads = (
            Lead.objects.filter(campaign=campaign, status=LeadStatus.ACTIVE)
            .select_related("segment")
            .order_by("pk")[:limit]
        )
        for lead in leads.iterator(chunk_size=500):
            yield lead_recipient(lead=lead, campaign=campaign)


def erase_render_logs(sender: Any = None, *, lead_ids: list[int], **kwargs: Any) -> None:
    """leads.signals.lead_erased receiver: the erased leads' render logs go too (inside the
    erasure's transaction, so a failure here rolls the erasure back)."""
    render_logs_erase_subject(subject_refs=[f"lead:{pk}" for pk in lead_ids])
