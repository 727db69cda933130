"""Suppression (email, @domain, identity), GDPR erasure, exports and re-scoring."""

from __future__ import annotations

import csv
import io
import json

import pytest

from leads.models import (
    ConsentStatus,
    Lead,
    LeadStatus,
    RowIssueKind,
    ScoringRule,
    SuppressionEntry,
    SuppressionKind,
    identity_hash_of,
)
from leads.services.exports import leads_export, spreadsheet_safe
from leads.services.privacy import PERSONAL_FIELDS, lead_data_export, lead_erase
from leads.services.rules import lead_rescore
from leads.signals import lead_erased
from leads.suppression import suppression_add, suppression_values_from_file
from tests.factories import CampaignFactory, LeadFactory
from ventures.models import AuditEvent
from ventures.services import DomainError, audit_changes, snapshot

HEADER = "Email,First Name,Last Name,Phone\n"


def test_suppressed_email_and_domain_are_not_imported(run_import, write_csv, campaign):
    result = suppression_add(
        values=["Blocked@Acme.example", "@competitor.example", "not an address"],
        actor="test",
        reason="asked us",
    )
    assert (result.added, len(result.invalid)) == (2, 1)

    outcome = run_import(
        write_csv(
            HEADER + "blocked@acme.example,B,,\n"
            "anyone@COMPETITOR.example,C,,\n"
            "fine@acme.example,F,,\n"
        )
    )

    assert outcome.counts["suppressed"] == 2 and outcome.counts["created"] == 1
    assert list(Lead.objects.values_list("email_key", flat=True)) == ["fine@acme.example"]
    reasons = outcome_reasons(outcome.batch_id)
    assert reasons == {
        2: "On the suppression list (address); not imported.",
        3: "On the suppression list (domain); not imported.",
    }


def outcome_reasons(batch_id):
    from leads.models import ImportIssue

    return dict(
        ImportIssue.objects.filter(batch_id=batch_id, kind=RowIssueKind.SUPPRESSED)
        .order_by("row_number")
        .values_list("row_number", "reason")
    )


def test_suppressing_marks_existing_active_leads_and_audits_without_the_address(campaign):
    lead = LeadFactory(campaign=campaign, email="Later@acme.example")
    other_domain = LeadFactory(campaign=campaign, email="x@spam.example")

    result = suppression_add(values=["later@acme.example", "@spam.example"], actor="op")

    assert result.leads_suppressed == 2
    lead.refresh_from_db()
    other_domain.refresh_from_db()
    assert lead.status == other_domain.status == LeadStatus.SUPPRESSED
    event = AuditEvent.objects.get(action="leads.suppress")
    assert "later@acme.example" not in json.dumps(event.after)
    assert event.after["identity_hashes"] == [identity_hash_of(email_key="later@acme.example")]


def test_venture_suppression_applies_only_to_that_venture(
    run_import, write_csv, campaign, other_venture_campaign
):
    suppression_add(values=["v@acme.example"], venture=campaign.venture, actor="test")

    here = run_import(write_csv(HEADER + "v@acme.example,V,,\n"))
    there = run_import(write_csv(HEADER + "v@acme.example,V,,\n"), into=other_venture_campaign)

    assert here.counts["suppressed"] == 1
    assert there.counts["created"] == 1


def test_suppression_file_accepts_a_csv_with_an_email_column_or_one_value_per_line(write_csv):
    assert suppression_values_from_file(write_csv("Email,Name\na@x.example,A\n")) == ["a@x.example"]
    assert suppression_values_from_file(write_csv("a@x.example\n@y.example\n")) == [
        "a@x.example",
        "@y.example",
    ]


def test_erasure_removes_personal_data_everywhere_and_blocks_reimport(
    run_import, write_csv, campaign, other_venture_campaign
):
    first = LeadFactory(
        campaign=campaign,
        email="Gone@acme.example",
        phone="+4930123",
        custom_fields={"icebreaker": "Loved your post"},
        consent_status=ConsentStatus.CONSENTED,
    )
    second = LeadFactory(campaign=other_venture_campaign, email="gone@acme.example")
    keep = LeadFactory(campaign=campaign, email="stay@acme.example")
    received = []

    def receiver(sender, lead_ids, identity_hash, **kwargs):
        received.append((lead_ids, identity_hash))

    lead_erased.connect(receiver)
    try:
        result = lead_erase(email=" GONE@acme.example ", actor="dpo", reason="ticket 42")
    finally:
        lead_erased.disconnect(receiver)

    identity = identity_hash_of(email_key="gone@acme.example")
    assert result.lead_ids == sorted([first.pk, second.pk])
    assert received == [(result.lead_ids, identity)]
    for lead in (first, second):
        lead.refresh_from_db()
        assert lead.status == LeadStatus.ERASED and lead.consent_status == ConsentStatus.DNC
        for name, blank in PERSONAL_FIELDS.items():
            assert getattr(lead, name) == blank, name
        assert "gone" not in str(lead).lower()
    keep.refresh_from_db()
    assert keep.email == "stay@acme.example"
    entry = SuppressionEntry.objects.get(kind=SuppressionKind.IDENTITY)
    assert entry.value == identity and entry.venture is None
    assert not SuppressionEntry.objects.filter(value__icontains="gone").exists()
    assert "gone" not in json.dumps(list(AuditEvent.objects.values("after", "entity_repr")))

    outcome = run_import(write_csv(HEADER + "gone@ACME.example,G,,\n"))
    assert outcome.counts["suppressed"] == 1 and outcome.counts["created"] == 0
    assert not Lead.objects.filter(email_key="gone@acme.example").exists()


def test_the_audit_trail_never_holds_a_leads_address_or_name(campaign):
    """The trail cannot be changed, so an erasure could not reach it: a lead is named by its
    id, and its personal fields' changes appear as fingerprints, still telling that they
    changed."""
    lead = LeadFactory(campaign=campaign, email="kim@acme.example", first_name="Kim")
    before = snapshot(lead)
    lead.first_name, lead.company = "Kimberly", "Acme Rockets"
    lead.save()
    row = audit_changes(actor="op", entity=lead, before=before, action="lead.update")
    lead_data_export(lead=lead, actor="dpo")
    trail = json.dumps(list(AuditEvent.objects.values("entity_repr", "before", "after")))
    for personal in ("kim@acme.example", "Kimberly", "Acme Rockets"):
        assert personal not in trail
    assert row.entity_repr == f"Lead #{lead.pk}"
    assert set(row.after) == {"first_name", "company"}
    assert row.after["first_name"].startswith("set (")
    assert row.before["first_name"].startswith("set (")
    assert row.before["first_name"] != row.after["first_name"]
    assert set(Lead.AUDIT_PERSONAL_FIELDS) == set(PERSONAL_FIELDS)  # what an erasure blanks


def test_erasure_of_an_unknown_person_still_prevents_future_imports(run_import, write_csv):
    result = lead_erase(email="never@acme.example", actor="dpo")
    assert result.lead_ids == []
    outcome = run_import(write_csv(HEADER + "never@acme.example,N,,\n"))
    assert outcome.counts["suppressed"] == 1


def test_erasure_is_rolled_back_when_a_receiver_fails(campaign):
    lead = LeadFactory(campaign=campaign, email="keep@acme.example")

    def failing(sender, **kwargs):
        raise RuntimeError("render log unavailable")

    lead_erased.connect(failing)
    try:
        with pytest.raises(RuntimeError):
            lead_erase(email="keep@acme.example", actor="dpo")
    finally:
        lead_erased.disconnect(failing)
    lead.refresh_from_db()
    assert lead.email == "keep@acme.example"
    assert not SuppressionEntry.objects.exists()


def test_erase_without_an_address_is_refused():
    with pytest.raises(DomainError, match="email address"):
        lead_erase(email="  ", actor="dpo")


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ("=1+1", "'=1+1"),
        ("+49 30", "'+49 30"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("Ann", "Ann"),
        (None, ""),
        (3, "3"),
    ],
)
def test_spreadsheet_safe_escapes_formula_starts(value, safe):
    assert spreadsheet_safe(value) == safe


def test_export_writes_every_lead_with_custom_columns_and_escaped_cells(
    run_import, write_csv, campaign
):
    run_import(
        write_csv(
            "Email,First Name,Company,Icebreaker\n"
            'a@acme.example,=HYPERLINK("http://evil"),+Acme,@you\n'
            "b@acme.example,Bob,Acme,\n"
        )
    )
    LeadFactory(campaign=CampaignFactory(venture=campaign.venture), email="other@acme.example")
    out = io.StringIO()

    count = leads_export(campaign=campaign, out=out)

    assert count == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["email"] for r in rows] == ["a@acme.example", "b@acme.example"]
    assert rows[0]["first_name"] == '\'=HYPERLINK("http://evil")'
    assert rows[0]["company"] == "'+Acme" and rows[0]["Icebreaker"] == "'@you"
    assert rows[1]["Icebreaker"] == ""


def test_data_export_gathers_the_persons_records_across_campaigns(campaign):
    lead = LeadFactory(campaign=campaign, email="me@acme.example", custom_fields={"a": "b"})
    twin = LeadFactory(campaign=CampaignFactory(), email="ME@acme.example")
    LeadFactory(campaign=campaign, email="someone@acme.example")

    data = lead_data_export(lead=lead, actor="dpo")

    assert [r["id"] for r in data["leads"]] == [lead.pk, twin.pk]
    assert data["leads"][0]["custom_fields"] == {"a": "b"}
    assert data["leads"][0]["campaign"] == campaign.slug
    json.dumps(data)  # serialisable as is
    event = AuditEvent.objects.get(action="leads.data_export")
    assert event.after == {"lead_ids": [lead.pk, twin.pk]}


def test_rescore_applies_the_ventures_edited_rules(campaign):
    lead = LeadFactory(campaign=campaign, title="Developer", industry="Software")
    ScoringRule.objects.create(
        venture=campaign.venture, label="software", field="industry", values=["software"], points=80
    )

    changed = lead_rescore(leads=Lead.objects.filter(campaign=campaign), actor="op")

    assert changed == 1
    lead.refresh_from_db()
    assert (lead.fit_score, lead.grade) == (80, "A")
    assert "software (+80)" in lead.score_explanation
    assert lead_rescore(leads=Lead.objects.filter(campaign=campaign), actor="op") == 0
