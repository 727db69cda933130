"""Suppression: the one way a person, an address or a domain goes on a do-not-contact list.

Three callers, one service: `leads suppress` and the suppression-entry form give values
(`suppression_add`), the lead list's bulk action gives selected leads (`leads_suppress`).
Both become targets per venture (None: the global list) and go through `_suppress`, which in
one transaction adds the entries that are new, marks the matching active leads suppressed
(by identity hash, and by address suffix for a domain) and leaves one audit row per list
touched, always of the same shape (`leads.suppress`: counts, domains, identity hashes and
the leads suppressed per campaign; never an address).

Lifting an entry (`suppression_lift`, the console's "Lift suppression") is the one way off a
list: confirmed, with a reason, audited in the same shape (`leads.suppression_lift`), and never
for an entry a person's own choice put there (an unsubscribe, a spam complaint, an erasure).

Erasure leaves identity entries of its own (`leads.services.lead_erase`), an unsubscribe an
entry for the person in its venture (`leads.unsubscribes`, through `suppression_entries_add`:
it marks the leads unsubscribed, not suppressed, and audits itself); the importer reads the
list as it writes each chunk (`leads.importing`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from leads.models import Lead, LeadStatus, SuppressionEntry, SuppressionKind, identity_hash_of
from leads.normalise import InvalidValue, domain_normalise, email_key_of, email_normalise
from leads.parsing import FileProblem, header_key, inspect_file, iter_rows
from ventures.models import Venture
from ventures.services import Actor, DomainError, actor_label, audit_record

CHUNK = 2_000  # entries inserted, and identities matched against leads, per statement


@dataclass(frozen=True)
class Target:
    """One entry of a list: its kind, its stored value, and the identity hash it stops."""

    kind: str
    value: str
    identity_hash: str = ""


@dataclass
class SuppressionResult:
    added: int = 0
    already: int = 0
    invalid: list[str] = field(default_factory=list)
    leads_suppressed: int = 0


def suppression_target_of(value: str) -> Target:
    """The entry an email address or an @domain stands for; raises InvalidValue."""
    value = value.strip()
    if value.startswith("@"):
        domain = domain_normalise(value[1:])
        if not domain or "." not in domain or "@" in domain or " " in domain:
            raise InvalidValue(f"{value!r} is not a domain.")
        return Target(SuppressionKind.DOMAIN, domain)
    key = email_key_of(email_normalise(value))
    return Target(SuppressionKind.EMAIL, key, identity_hash_of(email_key=key))


def suppression_add(
    *,
    values: Iterable[str],
    actor: Actor,
    venture: Venture | None = None,
    reason: str = "",
    source: str = "",
    gate_sends: bool = True,
) -> SuppressionResult:
    """Suppress email addresses and @domains (globally, or for one venture) and mark the
    matching active leads suppressed. Invalid values are reported, not fatal.

    `gate_sends`: first take the venture's (or, for the global list, every) exclusive sending
    gate, so that the batches handing over finish and the next ones wait until this commits:
    an operator's suppression takes effect within the batch in flight. False from inside a
    transaction that holds leads or gates itself (a bounce recorded while handing over, or in
    a feedback batch): waiting there for other batches could close a cycle."""
    targets: dict[Target, None] = {}
    invalid: list[str] = []
    for raw in values:
        if not raw.strip():
            continue
        try:
            targets[suppression_target_of(raw)] = None
        except InvalidValue as exc:
            invalid.append(f"{raw.strip()[:80]}: {exc}")
    result = _suppress(
        {venture.pk if venture else None: list(targets)},
        actor=actor, reason=reason, source=source, gate_sends=gate_sends,
    )  # fmt: skip
    result.invalid = invalid
    return result


def leads_suppress(*, leads: QuerySet[Lead], actor: Actor, reason: str = "") -> SuppressionResult:
    """Put the selected people on their venture's list and mark every active lead of theirs
    in that venture (any campaign) suppressed.

    People with an email are listed by address, the others (phone or LinkedIn only) by
    identity hash; a lead with neither (erased) is skipped."""
    people = (
        leads.order_by()
        .exclude(identity_hash="")
        .values_list("venture_id", "email_key", "identity_hash")
        .distinct()
    )
    by_venture: dict[int | None, list[Target]] = {}
    for venture_id, email_key, identity in people.iterator(chunk_size=CHUNK):
        target = person_target(email_key=email_key, identity_hash=identity)
        by_venture.setdefault(venture_id, []).append(target)
    return _suppress(by_venture, actor=actor, reason=reason, source=f"admin: {actor_label(actor)}")


def person_target(*, email_key: str, identity_hash: str) -> Target:
    """The entry that lists one person: by address when they have one (the operator can read
    it, and erasure replaces it), else by identity hash (phone or LinkedIn only). Both stop a
    re-import, which matches the list by identity hash."""
    if email_key:
        return Target(SuppressionKind.EMAIL, email_key, identity_hash)
    return Target(SuppressionKind.IDENTITY, identity_hash, identity_hash)


def suppression_entries_add(
    *, venture_id: int | None, targets: list[Target], reason: str, source: str
) -> int:
    """Add the targets that are not on this list (a venture's, or the global one for None)
    yet; returns how many were new. Touches no lead and audits nothing: the caller does both,
    in the same transaction (`_suppress` below, `leads.unsubscribes`)."""
    return sum(
        _insert_new(venture_id, targets[i : i + CHUNK], reason=reason, source=source)
        for i in range(0, len(targets), CHUNK)
    )


def suppression_values_from_file(path: Path | str) -> list[str]:
    """Emails and @domains from a file: a CSV with an email column, or one value per line."""
    rows = iter_rows(inspect_file(path))
    first = next(rows, None)
    if first is None:
        raise FileProblem("The file is empty.")
    header = first[1]
    column = next(
        (i for i, h in enumerate(header) if header_key(h) in ("email", "emailaddress", "domain")),
        None,
    )
    if column is None:
        return [r[0] for _, r in [first, *rows] if r and r[0].strip()]
    return [r[column] for _, r in rows if len(r) > column and r[column].strip()]


def _suppress(
    by_venture: dict[int | None, list[Target]],
    *,
    actor: Actor,
    reason: str,
    source: str,
    gate_sends: bool = True,
) -> SuppressionResult:
    from ventures.db import sending_gates

    result = SuppressionResult()
    with transaction.atomic():
        # Exclusive sending gates first: the batches handing over in these ventures (or
        # anywhere, for the global list) finish, the next ones wait until this commits. Without
        # them the UPDATE of the matching leads waits for one batch's share locks after
        # another while later batches go on sending (seconds, for a domain with many leads).
        ventures = [pk for pk, targets in by_venture.items() if targets]
        if gate_sends:
            sending_gates(
                venture_ids=[pk for pk in ventures if pk is not None],
                everything=None in ventures,
                exclusive=True,
            )
        for venture_id, targets in by_venture.items():
            if not targets:
                continue
            added = suppression_entries_add(
                venture_id=venture_id, targets=targets, reason=reason, source=source
            )
            per_campaign = _suppress_matching_leads(venture_id, targets)
            suppressed = sum(per_campaign.values())
            result.added += added
            result.already += len(targets) - added
            result.leads_suppressed += suppressed
            _audit(venture_id, targets, added, per_campaign, actor=actor, reason=reason)
    return result


def _insert_new(venture_id: int | None, targets: list[Target], *, reason: str, source: str) -> int:
    """Insert the targets that are not on this list yet; returns how many were new."""
    listed = SuppressionEntry.objects.filter(
        Q(venture__isnull=True) if venture_id is None else Q(venture_id=venture_id),
        value__in=[t.value for t in targets],
    )
    existing = set(listed.values_list("kind", "value"))
    fresh = [t for t in targets if (t.kind, t.value) not in existing]
    SuppressionEntry.objects.bulk_create(
        [
            SuppressionEntry(
                kind=t.kind,
                value=t.value,
                identity_hash=t.identity_hash,
                venture_id=venture_id,
                reason=reason[:300],
                source=source[:200],
            )
            for t in fresh
        ],
        ignore_conflicts=True,
    )
    return len(fresh)


def _suppress_matching_leads(venture_id: int | None, targets: list[Target]) -> Counter[int]:
    """Mark the active leads the targets match suppressed; returns how many per campaign."""
    hashes = [t.identity_hash for t in targets if t.identity_hash]
    domains = [t.value for t in targets if t.kind == SuppressionKind.DOMAIN]
    matches = [Q(identity_hash__in=hashes[i : i + CHUNK]) for i in range(0, len(hashes), CHUNK)]
    matches += [Q(email_key__endswith="@" + domain) for domain in domains]
    per_campaign: Counter[int] = Counter()
    for match in matches:
        leads = Lead.objects.filter(match, status=LeadStatus.ACTIVE)
        if venture_id is not None:
            leads = leads.filter(venture_id=venture_id)
        rows = leads.order_by().values("campaign_id").annotate(n=Count("id"))
        per_campaign.update({row["campaign_id"]: row["n"] for row in rows})
        leads.update(status=LeadStatus.SUPPRESSED, updated_at=timezone.now())
    return per_campaign


def _audit(
    venture_id: int | None,
    targets: list[Target],
    added: int,
    per_campaign: Counter[int],
    *,
    actor: Actor,
    reason: str,
) -> None:
    audit_record(
        actor=actor,
        action="leads.suppress",
        entity=_list_entity(venture_id),
        after={
            "venture": venture_id,
            "added": added,
            "already": len(targets) - added,
            "domains": sorted(t.value for t in targets if t.kind == SuppressionKind.DOMAIN),
            "identity_hashes": sorted({t.identity_hash for t in targets if t.identity_hash}),
            "leads_suppressed": sum(per_campaign.values()),
            "campaigns": {str(c): n for c, n in sorted(per_campaign.items())},
        },
        reason=reason,
    )


# Entries no operator lifts: the person asked (an unsubscribe, a spam complaint) or was erased.
UNLIFTABLE_SOURCES = ("unsubscribe", "complaint", "erasure")


def venture_delete_refusals(ventures: QuerySet[Venture]) -> list[str]:
    """For the console's guarded delete of ventures (`register_delete_refusals`): a venture
    whose suppression list holds entries stays, since deleting it would take them with it
    and a suppression is never deleted, only lifted. One query."""
    rows = (
        SuppressionEntry.objects.filter(venture__in=ventures.order_by().values("pk"))
        .values("venture_id")
        .annotate(n=Count("id"))
        .order_by("venture_id")
    )
    names = dict(
        Venture.objects.filter(pk__in=[r["venture_id"] for r in rows]).values_list("pk", "name")
    )
    return [
        f"Venture '{names[r['venture_id']]}' has {r['n']:,} suppression "
        f"entr{'y' if r['n'] == 1 else 'ies'} (addresses never to email) and cannot be "
        "deleted: they would go with it, and a suppression is never deleted, only lifted."
        for r in rows
    ]


def suppression_lift_refusal(entry: SuppressionEntry) -> str | None:
    """Why `entry` may not be lifted, or None."""
    if entry.kind == SuppressionKind.IDENTITY or entry.source.startswith(UNLIFTABLE_SOURCES):
        why = entry.source or "an erasure"
        return f"{entry} was listed by {why}: the person's own choice, which no operator lifts."
    return None


def suppression_lift(*, entries: QuerySet[SuppressionEntry], actor: Actor, reason: str) -> int:
    """Take the entries off their lists, so that mail to them may go out again; returns how
    many. All or nothing: a reason is required, and one entry that may not be lifted
    (`suppression_lift_refusal`) refuses the whole selection. Leads already marked suppressed
    stay so; a later import or a lead not yet marked is no longer stopped by these entries.
    One audit row per list (domains, identity hashes and counts; never an address)."""
    if not reason.strip():
        raise DomainError("Give a reason for lifting a suppression: it goes into the audit trail.")
    with transaction.atomic():
        chosen = list(entries.select_related(None).select_for_update().order_by("pk"))
        refused = [r for r in map(suppression_lift_refusal, chosen) if r]
        if refused:
            more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
            raise DomainError(f"Nothing was lifted: {refused[0]}{more}")
        by_venture: dict[int | None, list[SuppressionEntry]] = {}
        for entry in chosen:
            by_venture.setdefault(entry.venture_id, []).append(entry)
        SuppressionEntry.objects.filter(pk__in=[e.pk for e in chosen]).delete()
        for venture_id, lifted in by_venture.items():
            _audit_lift(venture_id, lifted, actor=actor, reason=reason)
    return len(chosen)


def _audit_lift(
    venture_id: int | None, lifted: list[SuppressionEntry], *, actor: Actor, reason: str
) -> None:
    domains = sorted(e.value for e in lifted if e.kind == SuppressionKind.DOMAIN)
    hashes = sorted({e.identity_hash for e in lifted if e.identity_hash})
    before = {"venture": venture_id, "lifted": len(lifted), "domains": domains}
    before |= {"identity_hashes": hashes, "sources": sorted({e.source for e in lifted})}
    audit_record(
        actor=actor,
        action="leads.suppression_lift",
        entity=_list_entity(venture_id),
        before=before,
        reason=reason,
    )


def _list_entity(venture_id: int | None):
    """What a list's audit row is about: its venture, or the global list."""
    venture = Venture.objects.filter(pk=venture_id).first() if venture_id else None
    return venture or SuppressionEntry(pk=0, value="suppression list")
