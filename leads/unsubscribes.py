"""Unsubscribes: a person asks to hear nothing more from a venture (`lead_unsubscribe`).

One service for every way in: the unsubscribe page and RFC 8058 one-click (outreach's `/u/`
endpoint), an unsubscribe email (once feedback ingestion reads them) and operators. In one
transaction it marks every lead of the person (same identity hash) in the lead's venture
UNSUBSCRIBED, erased ones excepted, lists the person on the venture's suppression list (by
address, so a re-import of the address stays out; `leads.suppression.person_target`), writes
the `Unsubscribe` row (when, how, from which campaign), leaves one audit row and sends
`leads.signals.lead_unsubscribed`, on which the outbox blocks the person's pending messages.

It is idempotent: a person already unsubscribed from the venture changes nothing, and no
signal or audit row is sent twice (link scanners, mail clients and people all repeat
requests). A reason given later only records the reason. Another venture's leads of the same
person are not touched: the person unsubscribed from one sender.

No table lock: an import chunk already in flight may still write a new active lead of the
person just after. Its messages are blocked anyway, because the tick checks the suppression
list (by identity) when it claims a message; the next import finds the entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from leads.models import (
    Lead,
    LeadStatus,
    Unsubscribe,
    UnsubscribeReason,
    UnsubscribeSource,
)
from leads.signals import lead_unsubscribed
from leads.suppression import person_target, suppression_entries_add
from ventures.services import Actor, DomainError, audit_record
from ventures.text import text_problem

COMMENT_MAX = Unsubscribe._meta.get_field("comment").max_length


@dataclass(frozen=True)
class UnsubscribeResult:
    unsubscribe: Unsubscribe
    acted: bool  # False: the person was unsubscribed already, nothing changed
    leads_unsubscribed: int
    reason_recorded: bool = False


def lead_unsubscribe(
    *,
    lead: Lead,
    source: str,
    reason: str = "",
    comment: str = "",
    actor: Actor,
) -> UnsubscribeResult:
    """Unsubscribe the person behind `lead` from its venture (see the module docstring).

    `source` is a `UnsubscribeSource`; `reason` an optional `UnsubscribeReason` and `comment`
    optional free text, recorded (or replaced) even when the person was unsubscribed already.
    Raises DomainError for an erased lead or a value that cannot be stored."""
    comment = _checked(lead=lead, source=source, reason=reason, comment=comment)
    with transaction.atomic():
        # NO KEY UPDATE: only the status changes, so rows that merely reference these leads
        # (a batch of feedback events inserted meanwhile) need not wait for this transaction.
        leads = list(
            _person_leads(lead)
            .order_by("pk")
            .select_for_update(no_key=True)
            .values_list("pk", "status")
        )
        changing = [pk for pk, status in leads if status != LeadStatus.UNSUBSCRIBED]
        record, created = _record(lead, source)
        acted = created or bool(changing)
        if changing:
            Lead.objects.filter(pk__in=changing).update(
                status=LeadStatus.UNSUBSCRIBED, updated_at=timezone.now()
            )
        recorded = _reason_set(record, reason, comment)
        if acted:
            _listed(lead, source)
            _audit("leads.unsubscribe", record, actor, source=source, lead_ids=changing)
            lead_unsubscribed.send(
                sender=Unsubscribe,
                venture_id=lead.venture_id,
                identity_hash=lead.identity_hash,
                lead_ids=sorted(pk for pk, _ in leads),
                source=source,
            )
        elif recorded:
            _audit("leads.unsubscribe_reason", record, actor, source=source)
    return UnsubscribeResult(record, acted, len(changing), recorded)


def _checked(*, lead: Lead, source: str, reason: str, comment: str) -> str:
    if lead.status == LeadStatus.ERASED or lead.pk is None:
        raise DomainError("This lead was erased (or never saved): there is no one to unsubscribe.")
    if source not in UnsubscribeSource.values:
        raise DomainError(f"Unknown unsubscribe source {source!r}.")
    if reason and reason not in UnsubscribeReason.values:
        raise DomainError(f"Unknown unsubscribe reason {reason!r}.")
    comment = comment.strip()
    if len(comment) > COMMENT_MAX:
        raise DomainError(f"The comment is longer than {COMMENT_MAX} characters.")
    if (problem := text_problem(comment)) is not None:
        raise DomainError(f"The comment {problem}, which cannot be stored.")
    return comment


def _person_leads(lead: Lead):
    """The person's leads in the lead's venture, erased ones excepted (by the identity index)."""
    leads = Lead.objects.filter(venture_id=lead.venture_id).exclude(status=LeadStatus.ERASED)
    if not lead.identity_hash:
        return leads.filter(pk=lead.pk)
    return leads.filter(identity_hash=lead.identity_hash)


def _record(lead: Lead, source: str) -> tuple[Unsubscribe, bool]:
    # The unique (venture, identity) index makes two requests at once agree on one row.
    person = {"identity_hash": lead.identity_hash}
    if not lead.identity_hash:
        person["lead"] = lead
    return Unsubscribe.objects.get_or_create(
        venture_id=lead.venture_id,
        **person,
        defaults={"campaign_id": lead.campaign_id, "lead": lead, "source": source},
    )


def _reason_set(record: Unsubscribe, reason: str, comment: str) -> bool:
    """Record the reason given (the latest one wins); False when none was given or it is the
    one recorded already."""
    if not (reason or comment) or (record.reason, record.comment) == (reason, comment):
        return False
    record.reason, record.comment, record.reason_at = reason, comment, timezone.now()
    record.save(update_fields=["reason", "comment", "reason_at"])
    return True


def _listed(lead: Lead, source: str) -> None:
    target = person_target(email_key=lead.email_key, identity_hash=lead.identity_hash)
    if target.value:
        suppression_entries_add(
            venture_id=lead.venture_id,
            targets=[target],
            reason="Unsubscribed",
            source=f"unsubscribe ({source})",
        )


def _audit(action: str, record: Unsubscribe, actor: Actor, *, source: str, lead_ids=()) -> None:
    # Ids, the identity hash and the reason code; never the address or the comment.
    audit_record(
        actor=actor,
        action=action,
        entity=record,
        after={
            "campaign": record.campaign_id,
            "source": source,
            "identity_hash": record.identity_hash,
            "lead_ids": sorted(lead_ids),
            "reason": record.reason,
        },
    )
