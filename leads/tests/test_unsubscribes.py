"""Unsubscribes (leads.unsubscribes): a person stops hearing from one venture, once and for good."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.urls import reverse

from leads.models import (
    Lead,
    LeadStatus,
    SuppressionEntry,
    SuppressionKind,
    Unsubscribe,
    UnsubscribeReason,
    UnsubscribeSource,
    identity_hash_of,
)
from leads.selectors import unsubscribe_reason_counts
from leads.services.imports import lead_import
from leads.services.privacy import lead_erase
from leads.signals import lead_unsubscribed
from leads.unsubscribes import lead_unsubscribe
from tests.factories import CampaignFactory, LeadFactory, VentureFactory
from ventures.models import AuditEvent
from ventures.services import DomainError

pytestmark = pytest.mark.django_db

ANN = "ann@prospect.example"


@pytest.fixture
def signals():
    """Every lead_unsubscribed sent during the test, as its keyword arguments."""
    sent: list[dict] = []
    lock = threading.Lock()

    def receiver(sender, **kwargs):
        with lock:
            sent.append({k: v for k, v in kwargs.items() if k != "signal"})

    lead_unsubscribed.connect(receiver, dispatch_uid="test.unsubscribes")
    yield sent
    lead_unsubscribed.disconnect(dispatch_uid="test.unsubscribes")


def status_of(lead: Lead) -> str:
    lead.refresh_from_db()
    return lead.status


def test_unsubscribe_stops_the_person_in_every_campaign_of_the_venture(campaign, signals):
    here = LeadFactory(campaign=campaign, email=ANN)
    sibling = LeadFactory(campaign=CampaignFactory(venture=campaign.venture), email=ANN)
    suppressed = LeadFactory(
        campaign=CampaignFactory(venture=campaign.venture),
        email=ANN,
        status=LeadStatus.SUPPRESSED,
    )
    someone_else = LeadFactory(campaign=campaign)

    result = lead_unsubscribe(lead=here, source=UnsubscribeSource.LINK, actor="test")

    assert result.acted and result.leads_unsubscribed == 3
    assert {status_of(here), status_of(sibling), status_of(suppressed)} == {LeadStatus.UNSUBSCRIBED}
    assert status_of(someone_else) == LeadStatus.ACTIVE
    record = result.unsubscribe
    assert (record.venture_id, record.campaign_id, record.lead_id) == (
        campaign.venture_id,
        campaign.pk,
        here.pk,
    )
    assert record.identity_hash == identity_hash_of(email_key=ANN)
    assert record.source == "link" and record.created_at is not None
    assert signals == [
        {
            "venture_id": campaign.venture_id,
            "identity_hash": here.identity_hash,
            "lead_ids": sorted([here.pk, sibling.pk, suppressed.pk]),
            "source": "link",
        }
    ]


def test_unsubscribe_from_one_venture_leaves_another_ventures_lead_of_the_address(campaign):
    here = LeadFactory(campaign=campaign, email=ANN)
    elsewhere = LeadFactory(campaign=CampaignFactory(venture=VentureFactory()), email=ANN)

    lead_unsubscribe(lead=here, source=UnsubscribeSource.ONE_CLICK, actor="test")

    assert status_of(elsewhere) == LeadStatus.ACTIVE
    assert not SuppressionEntry.objects.filter(venture=elsewhere.venture).exists()


def test_unsubscribe_never_touches_an_erased_lead(campaign, signals):
    here = LeadFactory(campaign=campaign, email=ANN)
    # An erased row of the same person (erasure blanks the hash too; kept here to prove the
    # status alone keeps it out).
    erased = LeadFactory(
        campaign=CampaignFactory(venture=campaign.venture), email=ANN, status=LeadStatus.ERASED
    )

    lead_unsubscribe(lead=here, source=UnsubscribeSource.LINK, actor="test")

    assert status_of(erased) == LeadStatus.ERASED
    assert signals[0]["lead_ids"] == [here.pk]


def test_a_repeated_unsubscribe_changes_nothing_and_signals_and_audits_once(campaign, signals):
    lead = LeadFactory(campaign=campaign, email=ANN)
    first = lead_unsubscribe(lead=lead, source=UnsubscribeSource.ONE_CLICK, actor="test")
    lead.refresh_from_db()

    again = lead_unsubscribe(lead=lead, source=UnsubscribeSource.LINK, actor="test")

    assert first.acted and not again.acted and again.leads_unsubscribed == 0
    assert again.unsubscribe.pk == first.unsubscribe.pk
    assert again.unsubscribe.source == "one-click"  # the first request is the record
    assert Unsubscribe.objects.count() == 1
    assert SuppressionEntry.objects.count() == 1
    assert AuditEvent.objects.filter(action__startswith="leads.unsubscribe").count() == 1
    assert len(signals) == 1


def test_the_audit_row_names_ids_and_the_hash_never_the_address_or_the_comment(campaign):
    lead = LeadFactory(campaign=campaign, email=ANN)

    lead_unsubscribe(
        lead=lead,
        source=UnsubscribeSource.LINK,
        reason=UnsubscribeReason.OTHER,
        comment="Ann here, call me on +49 170 1234567 instead",
        actor="unsubscribe link",
    )

    [event] = AuditEvent.objects.filter(action="leads.unsubscribe")
    assert event.actor == "unsubscribe link"
    assert event.venture_id == campaign.venture_id
    assert event.after == {
        "campaign": campaign.pk,
        "source": "link",
        "identity_hash": lead.identity_hash,
        "lead_ids": [lead.pk],
        "reason": "other",
    }
    text = f"{event.after} {event.entity_repr} {event.reason}"
    assert ANN not in text and "1234567" not in text


def test_a_re_import_of_the_address_stays_unsubscribed(campaign, tmp_path):
    lead = LeadFactory(campaign=campaign, email=ANN)
    lead_unsubscribe(lead=lead, source=UnsubscribeSource.LINK, actor="test")
    sibling_campaign = CampaignFactory(venture=campaign.venture)
    path = tmp_path / "again.csv"
    path.write_text("Email,First Name\nANN@Prospect.example,Ann\nnew@prospect.example,Neu\n")

    same = lead_import(campaign=campaign, path=path, actor="test")
    sibling = lead_import(campaign=sibling_campaign, path=path, actor="test")

    assert status_of(lead) == LeadStatus.UNSUBSCRIBED
    assert (same.counts["suppressed"], same.counts["created"]) == (1, 1)
    assert sibling.counts["suppressed"] == 1
    assert not Lead.objects.filter(campaign=sibling_campaign, email_key=ANN).exists()
    [entry] = SuppressionEntry.objects.all()
    assert (entry.kind, entry.value, entry.venture_id) == (
        SuppressionKind.EMAIL,
        ANN,
        campaign.venture_id,
    )


def test_another_venture_may_still_import_the_address(campaign, tmp_path):
    lead_unsubscribe(
        lead=LeadFactory(campaign=campaign, email=ANN), source=UnsubscribeSource.LINK, actor="t"
    )
    path = tmp_path / "other.csv"
    path.write_text(f"Email\n{ANN}\n")

    outcome = lead_import(campaign=CampaignFactory(), path=path, actor="test")

    assert outcome.counts["created"] == 1


def test_a_person_without_an_address_is_listed_by_identity_hash(campaign, tmp_path):
    phone = "+4917012345678"
    identity = identity_hash_of(phone=phone)
    lead = LeadFactory(
        campaign=campaign, email="", email_key="", phone=phone, identity_hash=identity
    )

    lead_unsubscribe(lead=lead, source=UnsubscribeSource.ADMIN, actor="test")

    [entry] = SuppressionEntry.objects.all()
    assert (entry.kind, entry.value, entry.identity_hash) == ("identity", identity, identity)
    assert status_of(lead) == LeadStatus.UNSUBSCRIBED


def test_a_reason_given_later_is_recorded_once_and_counted(campaign, signals):
    lead = LeadFactory(campaign=campaign, email=ANN)
    lead_unsubscribe(lead=lead, source=UnsubscribeSource.ONE_CLICK, actor="test")
    other = LeadFactory(campaign=CampaignFactory(venture=campaign.venture))
    lead_unsubscribe(lead=other, source=UnsubscribeSource.LINK, actor="test")

    result = lead_unsubscribe(
        lead=lead,
        source=UnsubscribeSource.LINK,
        reason=UnsubscribeReason.TOO_MANY,
        comment="  weekly would be fine  ",
        actor="test",
    )
    repeat = lead_unsubscribe(
        lead=lead,
        source=UnsubscribeSource.LINK,
        reason=UnsubscribeReason.TOO_MANY,
        comment="weekly would be fine",
        actor="test",
    )

    assert result.reason_recorded and not result.acted and not repeat.reason_recorded
    record = Unsubscribe.objects.get(lead=lead)
    assert (record.reason, record.comment) == ("too_many", "weekly would be fine")
    assert record.reason_at is not None
    assert AuditEvent.objects.filter(action="leads.unsubscribe_reason").count() == 1
    assert len(signals) == 2  # one per person, none for the reasons
    assert unsubscribe_reason_counts(venture=campaign.venture) == {
        "too_many": 1,
        "not_relevant": 0,
        "never_signed_up": 0,
        "other": 0,
        "": 1,
    }
    assert unsubscribe_reason_counts(campaign=campaign)["too_many"] == 1
    assert unsubscribe_reason_counts(campaign=campaign)[""] == 0


def test_an_erased_lead_cannot_be_unsubscribed(campaign):
    lead = LeadFactory(campaign=campaign, email=ANN)
    lead_erase(email=ANN, actor="test")
    lead.refresh_from_db()

    with pytest.raises(DomainError, match="erased"):
        lead_unsubscribe(lead=lead, source=UnsubscribeSource.LINK, actor="test")
    assert not Unsubscribe.objects.exists()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"source": "carrier-pigeon"}, "Unknown unsubscribe source"),
        ({"reason": "because"}, "Unknown unsubscribe reason"),
        ({"comment": "x" * 501}, "longer than 500"),
        ({"comment": "bad \ud800 text"}, "lone surrogate"),
    ],
)
def test_a_value_that_cannot_be_recorded_is_refused_and_nothing_is_written(
    campaign, values, message
):
    lead = LeadFactory(campaign=campaign, email=ANN)

    with pytest.raises(DomainError, match=message):
        lead_unsubscribe(lead=lead, **{"source": "link", **values}, actor="test")
    assert status_of(lead) == LeadStatus.ACTIVE
    assert not Unsubscribe.objects.exists() and not SuppressionEntry.objects.exists()


def test_a_failing_receiver_rolls_the_whole_unsubscribe_back(campaign):
    lead = LeadFactory(campaign=campaign, email=ANN)

    def fail(sender, **kwargs):
        raise RuntimeError("outbox unavailable")

    lead_unsubscribed.connect(fail, dispatch_uid="test.fail")
    try:
        with pytest.raises(RuntimeError):
            lead_unsubscribe(lead=lead, source=UnsubscribeSource.LINK, actor="test")
    finally:
        lead_unsubscribed.disconnect(dispatch_uid="test.fail")
    assert status_of(lead) == LeadStatus.ACTIVE
    assert not Unsubscribe.objects.exists() and not SuppressionEntry.objects.exists()
    assert not AuditEvent.objects.filter(action="leads.unsubscribe").exists()


def test_erasure_blanks_the_comment_but_keeps_the_unsubscribe(campaign):
    lead = LeadFactory(campaign=campaign, email=ANN)
    lead_unsubscribe(
        lead=lead,
        source=UnsubscribeSource.LINK,
        reason=UnsubscribeReason.OTHER,
        comment="I am Ann Example from Prospect GmbH",
        actor="test",
    )

    lead_erase(email=ANN, actor="test")

    record = Unsubscribe.objects.get()
    assert (record.comment, record.reason, record.lead_id) == ("", "other", lead.pk)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_requests_at_once_unsubscribe_once(signals):
    lead = LeadFactory(email=ANN)
    LeadFactory(campaign=CampaignFactory(venture=lead.venture), email=ANN)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def request(source):
        try:
            barrier.wait(timeout=10)
            results.append(lead_unsubscribe(lead=lead, source=source, actor="test"))
        except Exception as exc:  # reported below, in this thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=request, args=(s,)) for s in ("one-click", "link")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sorted(r.acted for r in results) == [False, True]
    assert Unsubscribe.objects.count() == 1 and len(signals) == 1
    assert set(Lead.objects.values_list("status", flat=True)) == {LeadStatus.UNSUBSCRIBED}


# --- In the admin: read-only, scoped to the user's ventures ---------------------------------------


@pytest.mark.usefixtures("plain_http")
def test_operators_see_their_ventures_unsubscribes_read_only(
    op_client, campaign, other_venture_campaign
):
    mine = lead_unsubscribe(
        lead=LeadFactory(campaign=campaign),
        source=UnsubscribeSource.ONE_CLICK,
        reason=UnsubscribeReason.NOT_RELEVANT,
        actor="test",
    ).unsubscribe
    theirs = lead_unsubscribe(
        lead=LeadFactory(campaign=other_venture_campaign),
        source=UnsubscribeSource.LINK,
        actor="test",
    ).unsubscribe

    listing = op_client.get(reverse("admin:leads_unsubscribe_changelist"))
    page = op_client.get(reverse("admin:leads_unsubscribe_change", args=[mine.pk]))

    assert listing.status_code == 200
    assert [u.pk for u in listing.context["cl"].result_list] == [mine.pk]
    assert page.status_code == 200
    assert "Not relevant to me" in page.content.decode()
    assert 'name="_save"' not in page.content.decode()  # nothing to save: read-only
    assert op_client.get(reverse("admin:leads_unsubscribe_add")).status_code == 403
    other = op_client.get(reverse("admin:leads_unsubscribe_change", args=[theirs.pk]))
    assert other.status_code == 404
    deleting = op_client.post(reverse("admin:leads_unsubscribe_delete", args=[mine.pk]))
    assert deleting.status_code in (403, 404)
    assert Unsubscribe.objects.count() == 2
