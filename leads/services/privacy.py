"""Data-protection requests about one person: erasure (`lead_erase`) and access
(`lead_data_export`). Both reach every lead of the person in every campaign and venture by
identity hash (erasure also by email key).

Erasure blanks every field in PERSONAL_FIELDS of every lead of the person (status ERASED,
consent DNC), blanks the comments they left when they unsubscribed, deletes every
finished import's kept upload (any may hold their row), replaces their email
suppression with a global identity-hash entry so they are never imported or contacted again,
and sends `leads.signals.lead_erased(lead_ids, identity_hash)` inside its transaction: later
apps erase their copies there, and a receiver that fails rolls the whole erasure back. On
PostgreSQL it first takes SHARE ROW EXCLUSIVE on the lead table. Every import chunk takes ROW
EXCLUSIVE before its lookups, and the two conflict, so the erasure waits for the chunks being
written and holds new ones back until it commits: no chunk can look the person up before the
erasure and write them back after it. Readers are not blocked. (SQLite has one writer at a
time anyway.)

Audit rows name ids and identity hashes only, never the personal data itself.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from leads.models import (
    ConsentStatus,
    Lead,
    LeadStatus,
    SuppressionEntry,
    SuppressionKind,
    Unsubscribe,
    identity_hash_of,
)
from leads.normalise import InvalidValue, email_key_of, email_normalise
from leads.services.runs import import_uploads_forget
from leads.signals import lead_erased
from ventures.services import Actor, DomainError, audit_record

# Every field of a lead that can identify or describe the person. Erasure blanks them all.
PERSONAL_FIELDS: dict[str, Any] = {
    "email": "",
    "email_key": "",
    "identity_hash": "",
    "first_name": "",
    "last_name": "",
    "title": "",
    "company": "",
    "company_domain": "",
    "website": "",
    "phone": "",
    "linkedin_url": "",
    "city": "",
    "state": "",
    "country": "",
    "timezone": "",
    "industry": "",
    "company_size": None,
    "value_estimate": None,
    "custom_fields": {},
    "consent_at": None,
    "consent_source": "",
    "utm_source": "",
    "utm_medium": "",
    "utm_campaign": "",
    "utm_content": "",
    "score_explanation": "",
    "source_row": None,
}


@dataclass
class ErasureResult:
    identity_hash: str
    lead_ids: list[int]


def _same_identity(identity: str) -> Q:
    """Leads with this identity hash in any venture: one probe of the identity index (its
    field's lookup adds the index's key)."""
    return Q(identity_hash=identity)


def lead_erase(*, email: str, actor: Actor, reason: str = "") -> ErasureResult:
    """GDPR erasure of a person, everywhere in every venture.

    Every lead with this address is blanked (status ERASED, consent DNC) and a global
    identity-hash suppression entry is kept so the person is never imported or contacted
    again. `leads.signals.lead_erased` is sent inside the transaction with the lead ids and the
    identity hash: receivers in later apps erase their own copies, and if one fails the whole
    erasure rolls back (nothing is half-erased).
    """
    try:
        key = email_key_of(email_normalise(email))
    except InvalidValue:
        key = email.strip().lower()
    if not key or "@" not in key:
        raise DomainError("Give the email address of the person to erase.")
    identity = identity_hash_of(email_key=key)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Waits for the import chunks being written and holds new ones back until this
            # commits (they take ROW EXCLUSIVE first thing): a chunk never looks the person up
            # before the erasure and writes them back after it. Readers are not blocked.
            with connection.cursor() as cur:
                cur.execute(f"LOCK TABLE {Lead._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")
        leads = Lead.objects.select_for_update().filter(Q(email_key=key) | _same_identity(identity))
        lead_ids = sorted(leads.values_list("pk", flat=True))
        Lead.objects.filter(pk__in=lead_ids).update(
            **PERSONAL_FIELDS,
            status=LeadStatus.ERASED,
            consent_status=ConsentStatus.DNC,
            updated_at=timezone.now(),
        )
        # Their own words; the unsubscribe itself (ids, hash, reason code) stays on record.
        Unsubscribe.objects.filter(Q(identity_hash=identity) | Q(lead_id__in=lead_ids)).update(
            comment=""
        )
        SuppressionEntry.objects.filter(kind=SuppressionKind.EMAIL, value=key).delete()
        entry, _ = SuppressionEntry.objects.get_or_create(
            kind=SuppressionKind.IDENTITY,
            value=identity,
            venture=None,
            defaults={"identity_hash": identity, "reason": "GDPR erasure", "source": "erasure"},
        )
        audit_record(
            actor=actor,
            action="leads.erase",
            entity=entry,
            after={"identity_hash": identity, "lead_ids": lead_ids},
            reason=reason,
        )
        lead_erased.send(sender=Lead, lead_ids=lead_ids, identity_hash=identity)
        # Any finished import's kept upload may hold the person's row (rejected or not).
        import_uploads_forget()
    return ErasureResult(identity_hash=identity, lead_ids=lead_ids)


def erasure_reach(lead: Lead, venture_ids: list[int] | None) -> str:
    """What erasing `lead`'s person would blank, in words for the confirm page: how many leads
    in which campaigns (named only within `venture_ids`, None for all; the others counted)."""
    key, identity = lead.email_key, lead.identity_hash
    same = Q(email_key=key) if key else Q(pk=lead.pk)
    if identity:
        same |= _same_identity(identity)
    leads = Lead.objects.filter(same).exclude(status=LeadStatus.ERASED)
    rows = list(leads.values_list("campaign__name", "venture_id").order_by("campaign__name"))
    seen = sorted({name for name, v in rows if venture_ids is None or v in venture_ids})
    hidden = sum(1 for _, v in rows if venture_ids is not None and v not in venture_ids)
    text = f"This erases {len(rows)} lead{'s' if len(rows) != 1 else ''} of this person"
    text += f", in {', '.join(seen)}" if seen else ""
    text += f", and {hidden} in ventures you cannot see" if hidden else ""
    return text + "."


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def lead_data_export(*, lead: Lead, actor: Actor) -> dict[str, Any]:
    """Everything held about the person behind `lead` (all their leads across campaigns and
    ventures, by identity hash), for a data access request. Audited by lead id only."""
    same = Lead.objects.filter(pk=lead.pk)
    if lead.identity_hash:
        same = Lead.objects.filter(Q(pk=lead.pk) | _same_identity(lead.identity_hash))
    records = []
    for other in same.select_related("campaign", "venture", "segment", "source_batch").order_by(
        "pk"
    ):
        data = {f.attname: _jsonable(getattr(other, f.attname)) for f in Lead._meta.concrete_fields}
        data.pop("last_batch_id", None)
        data["campaign"] = other.campaign.slug
        data["venture"] = other.venture.slug
        data["segment"] = other.segment.name if other.segment else None
        data["source_file"] = other.source_batch.file_name if other.source_batch else None
        records.append(data)
    suppressed = SuppressionEntry.objects.filter(
        identity_hash=lead.identity_hash or "-"
    ).values_list("kind", "reason", "created_at")
    audit_record(
        actor=actor,
        action="leads.data_export",
        entity=lead,
        after={"lead_ids": [r["id"] for r in records]},
    )
    return {
        "generated_at": timezone.now().isoformat(),
        "identity_hash": lead.identity_hash,
        "leads": records,
        "suppression": [{"kind": k, "reason": r, "since": c.isoformat()} for k, r, c in suppressed],
    }
