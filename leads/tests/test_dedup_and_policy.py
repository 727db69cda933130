"""Dedup within the file, within the campaign and across the venture; re-import; dry run."""

from __future__ import annotations

import pytest

from leads.importing import Chunking
from leads.models import (
    ConsentStatus,
    CrossCampaignPolicy,
    ImportBatch,
    ImportIssue,
    Lead,
    LeadStatus,
    RowIssueKind,
)
from leads.services.rules import campaign_lead_policy_set
from leads.services.runs import AlreadyImportedError
from tests.factories import CampaignFactory, IcpSegmentFactory, LeadFactory, VentureFactory
from ventures.models import AuditEvent

HEADER = "Email,First Name,Last Name,Job Title,Company,Country,Consent\n"


def _outcome_adds_up(counts):
    assert counts["rows_total"] == (
        counts["created"]
        + counts["duplicates_in_file"]
        + counts["duplicates_in_campaign"]
        + counts["suppressed"]
        + counts["invalid"]
        + counts["skipped_active_elsewhere"]
    )
    assert counts["duplicates_in_campaign"] == counts["updated"] + counts["unchanged"]


def test_same_address_in_other_case_or_with_spaces_is_one_lead(run_import, write_csv, campaign):
    path = write_csv(
        HEADER + "ann@acme.example,Ann,,,,,\n"
        " ANN@Acme.example ,Annie,Lee,,,,\n"
        "Ann@ACME.EXAMPLE,,,,,,\n"
    )
    outcome = run_import(path)

    assert outcome.counts["created"] == 1 and outcome.counts["duplicates_in_file"] == 2
    _outcome_adds_up(outcome.counts)
    lead = Lead.objects.get(campaign=campaign)
    assert lead.first_name == "Ann" and lead.source_row == 2
    rows = ImportIssue.objects.filter(kind=RowIssueKind.DUPLICATE)
    assert sorted(rows.values_list("row_number", flat=True)) == [3, 4]


def test_duplicates_in_one_file_across_chunks_are_found(run_import, write_csv, campaign):
    rows = "".join(f"p{i}@acme.example,P{i},,,,,\n" for i in range(7))
    outcome = run_import(
        write_csv(HEADER + rows + "P1@acme.example,Again,,,,,\n"), chunking=Chunking(rows=3)
    )

    assert outcome.counts["created"] == 7 and outcome.counts["duplicates_in_file"] == 1
    assert outcome.counts["duplicates_in_campaign"] == 0
    _outcome_adds_up(outcome.counts)


def test_existing_lead_in_campaign_gets_blanks_filled_but_nothing_overwritten(
    run_import, write_csv, campaign
):
    lead = LeadFactory(
        campaign=campaign,
        email="ann@acme.example",
        first_name="Ann",
        last_name="",
        title="",
        company="Acme",
        consent_status=ConsentStatus.CONSENTED,
    )
    outcome = run_import(
        write_csv(HEADER + "ANN@acme.example,Annabel,Lee,VP Sales,Other Co,Germany,no\n")
    )

    assert outcome.counts["duplicates_in_campaign"] == 1 and outcome.counts["updated"] == 1
    _outcome_adds_up(outcome.counts)
    lead.refresh_from_db()
    assert (lead.first_name, lead.last_name, lead.title, lead.company) == (
        "Ann",
        "Lee",
        "VP Sales",
        "Acme",
    )
    # A DNC in the file tightens CONSENTED to DNC (never the other way round).
    assert lead.consent_status == ConsentStatus.DNC
    assert lead.last_batch_id == outcome.batch_id and lead.source_batch_id is None


def test_import_never_turns_dnc_into_consent(run_import, write_csv, campaign):
    lead = LeadFactory(
        campaign=campaign,
        email="dnc@acme.example",
        consent_status=ConsentStatus.DNC,
        timezone="Europe/Berlin",
    )
    outcome = run_import(write_csv(HEADER + "dnc@acme.example,D,N,CEO,X,Germany,yes\n"))

    lead.refresh_from_db()
    assert lead.consent_status == ConsentStatus.DNC
    assert outcome.counts["updated"] == 0 and outcome.counts["unchanged"] == 1


def test_unknown_consent_takes_the_files_value(run_import, write_csv, campaign):
    lead = LeadFactory(campaign=campaign, email="u@acme.example")
    run_import(write_csv(HEADER + "u@acme.example,,,,,,yes\n"))
    lead.refresh_from_db()
    assert lead.consent_status == ConsentStatus.CONSENTED


def test_reimport_of_the_same_file_is_refused_unless_forced(run_import, write_csv, campaign):
    path = write_csv(HEADER + "a@acme.example,A,,,,,\nb@acme.example,B,,,,,\n")
    first = run_import(path)

    before = (Lead.objects.count(), ImportBatch.objects.count())
    with pytest.raises(AlreadyImportedError, match=f"import #{first.batch_id}"):
        run_import(path)
    assert (Lead.objects.count(), ImportBatch.objects.count()) == before

    forced = run_import(path, force=True)
    assert forced.counts["created"] == 0 and forced.counts["duplicates_in_campaign"] == 2
    assert ImportBatch.objects.get(pk=forced.batch_id).forced is True
    # The same file into another campaign is a first import there.
    other = run_import(path, into=CampaignFactory(venture=campaign.venture))
    assert other.counts["rows_total"] == 2


def test_dry_run_reports_real_counts_and_writes_nothing(run_import, sample_dir, campaign):
    audit_before = AuditEvent.objects.count()

    outcome = run_import(sample_dir / "apollo_export_sample.csv", dry_run=True)

    assert outcome.dry_run and outcome.batch_id is None
    assert outcome.counts["created"] == 51 and outcome.counts["invalid"] == 7
    assert Lead.objects.count() == 0 and ImportBatch.objects.count() == 0
    assert ImportIssue.objects.count() == 0 and AuditEvent.objects.count() == audit_before
    # A dry run does not count as an import of the file.
    assert run_import(sample_dir / "apollo_export_sample.csv").counts["created"] == 51


def test_person_active_in_another_campaign_is_skipped_by_default(run_import, write_csv, campaign):
    sister = CampaignFactory(venture=campaign.venture)
    LeadFactory(campaign=sister, email="busy@acme.example")
    LeadFactory(campaign=sister, email="done@acme.example", status=LeadStatus.REPLIED)

    outcome = run_import(write_csv(HEADER + "Busy@acme.example,B,,,,,\ndone@acme.example,D,,,,,\n"))

    assert outcome.counts["active_elsewhere"] == 1
    assert outcome.counts["skipped_active_elsewhere"] == 1
    assert outcome.counts["created"] == 1
    _outcome_adds_up(outcome.counts)
    assert list(Lead.objects.filter(campaign=campaign).values_list("email_key", flat=True)) == [
        "done@acme.example"
    ]
    assert ImportIssue.objects.get(kind=RowIssueKind.SKIPPED).row_number == 2


def test_allow_policy_imports_people_active_in_another_campaign(run_import, write_csv, campaign):
    LeadFactory(campaign=CampaignFactory(venture=campaign.venture), email="busy@acme.example")
    campaign_lead_policy_set(
        campaign=campaign, cross_campaign=CrossCampaignPolicy.ALLOW, actor="test"
    )

    outcome = run_import(write_csv(HEADER + "busy@acme.example,B,,,,,\n"))

    assert outcome.counts["active_elsewhere"] == 1 and outcome.counts["created"] == 1
    assert outcome.counts["skipped_active_elsewhere"] == 0
    assert AuditEvent.objects.filter(action="leads.policy").exists()


def test_leads_of_another_venture_do_not_count_as_active_elsewhere(
    run_import, write_csv, campaign, other_venture_campaign
):
    LeadFactory(campaign=other_venture_campaign, email="shared@acme.example")

    outcome = run_import(write_csv(HEADER + "shared@acme.example,S,,,,,\n"))

    assert outcome.counts["active_elsewhere"] == 0 and outcome.counts["created"] == 1


def test_icp_segment_is_matched_and_the_score_explained(run_import, write_csv, campaign):
    segment = IcpSegmentFactory(
        venture=campaign.venture,
        name="DACH SaaS",
        industries=[],
        title_keywords=["sales"],
        countries=["DE"],
    )
    path = write_csv(
        "Email,Job Title,Country,# Employees,Industry,Intent Signal\n"
        "vp@acme.example,VP Sales,Germany,120,Software,hiring SDRs\n"
        "dev@acme.example,Developer,France,5,Software,\n"
    )
    run_import(path)

    vp = Lead.objects.get(email_key="vp@acme.example")
    assert vp.segment == segment and vp.grade == "A" and vp.fit_score == 100
    assert vp.score_explanation.startswith(
        "VP Sales at a 120-employee Software company in segment DACH SaaS: in an ICP segment"
    )
    assert "buying signal (+20)" in vp.score_explanation
    dev = Lead.objects.get(email_key="dev@acme.example")
    assert dev.segment is None and dev.grade == "D"
    assert "no ICP segment matched" in dev.score_explanation


def test_a_venture_without_leads_elsewhere_sees_only_its_suppressions(
    run_import, write_csv, campaign
):
    from leads.suppression import suppression_add

    suppression_add(values=["x@acme.example"], venture=VentureFactory(), actor="test")

    outcome = run_import(write_csv(HEADER + "x@acme.example,X,,,,,\n"))

    assert outcome.counts["suppressed"] == 0 and outcome.counts["created"] == 1
