"""A lead's activity timeline: what happened to the person in this campaign, newest first.

The leads app knows how the lead arrived (its import batch, the capture form or the API),
when its consent changed, its unsubscribes and the audit rows about the lead itself. Later
apps know the rest (outreach: the enrollment, each message, each feedback event) but leads may
not import them, so they add their part through `register_timeline_source(name, source)` in
their `AppConfig.ready()`: `source(lead, limit)` returns `TimelineEntry` rows, at most `limit` of
each kind, oldest first, with their own queries (a fixed number per source, whatever the lead's
history). `lead_timeline()` merges every source and keeps the newest `limit` entries.

Entries carry only what the operator may see on the lead's page (which is already scoped to
their ventures); an erased lead's timeline keeps its events, which name no personal data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db.models import Q
from django.urls import reverse

from leads.models import Lead, SourceChannel, Unsubscribe
from ventures.models import AuditEvent

TIMELINE_LIMIT = 100  # entries shown on the lead page, newest first


@dataclass(frozen=True)
class TimelineEntry:
    at: dt.datetime | None  # None sorts last: something without a time (a draft)
    kind: str  # what happened, in two or three words: "Imported", "Email sent"
    text: str  # the detail: which batch, which step, why
    url: str = ""  # an admin page with more, if there is one


TimelineSource = Callable[[Lead, int], Iterable[TimelineEntry]]
_SOURCES: dict[str, TimelineSource] = {}


def register_timeline_source(name: str, source: TimelineSource) -> None:
    """Add `source(lead, limit)` to every lead's timeline; the same name again replaces it."""
    _SOURCES[name] = source


def lead_timeline(lead: Lead, *, limit: int = TIMELINE_LIMIT) -> list[TimelineEntry]:
    """Every source's entries for `lead`, newest first, at most `limit`."""
    entries: list[TimelineEntry] = []
    for source in (_arrival, _consent, _unsubscribes, _audited, *_SOURCES.values()):
        entries.extend(source(lead, limit))
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
    # Oldest first, then reversed: entries at the same moment (a lead imported and enrolled
    # in one tick) come out latest-added first, as each source lists them oldest first.
    entries.sort(key=lambda e: e.at or oldest)
    return entries[::-1][:limit]


def _arrival(lead: Lead, limit: int) -> list[TimelineEntry]:
    batch = lead.source_batch
    if batch is None:
        how = dict(SourceChannel.choices).get(lead.source_channel, lead.source_channel)
        return [TimelineEntry(lead.created_at, "Arrived", f"Through {how.lower()}.")]
    name = batch.file_name or batch.get_channel_display()
    row = f", row {lead.source_row}" if lead.source_row else ""
    list_name = f" (list: {batch.source})" if batch.source else ""
    return [
        TimelineEntry(
            lead.created_at,
            "Imported" if batch.channel == SourceChannel.IMPORT else "Arrived",
            f"Import #{batch.pk}: {name}{row}{list_name}, by {batch.actor or 'the system'}.",
            reverse("admin:leads_importbatch_change", args=[batch.pk]),
        )
    ]


def _consent(lead: Lead, limit: int) -> list[TimelineEntry]:
    if lead.consent_at is None:
        return []  # never given or changed: nothing happened
    source = f" ({lead.consent_source})" if lead.consent_source else ""
    return [
        TimelineEntry(lead.consent_at, "Consent", f"{lead.get_consent_status_display()}{source}.")
    ]


def _unsubscribes(lead: Lead, limit: int) -> list[TimelineEntry]:
    same_person = Q(lead=lead)
    if lead.identity_hash:
        same_person |= Q(venture_id=lead.venture_id, identity_hash=lead.identity_hash)
    rows = (
        Unsubscribe.objects.filter(same_person)
        .select_related("campaign")
        .order_by("-created_at")[:limit][::-1]
    )
    return [
        TimelineEntry(
            u.created_at,
            "Unsubscribed",
            f"{u.get_source_display()}"
            + (f"; reason: {u.get_reason_display()}" if u.reason else "")
            + (f" (from campaign {u.campaign})" if u.campaign_id else "")
            + ". Every lead of the person in the venture is unsubscribed.",
        )
        for u in rows
    ]


def _audited(lead: Lead, limit: int) -> list[TimelineEntry]:
    rows = AuditEvent.objects.for_entity(lead).order_by("-created_at", "-id")[:limit][::-1]
    return [
        TimelineEntry(
            e.created_at,
            e.action.rpartition(".")[2].replace("_", " ").capitalize(),
            f"By {e.actor}" + (f": {e.reason}" if e.reason else "."),
        )
        for e in rows
    ]
