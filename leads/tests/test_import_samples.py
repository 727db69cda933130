"""Importing the real-layout samples, other encodings and delimiters, and XLSX."""

from __future__ import annotations

import csv
import io

import openpyxl
import pytest

from leads.models import ImportBatch, ImportIssue, Lead, RowIssueKind
from leads.services.imports import lead_import_preview

# (file, rows, unique valid emails, invalid or missing) as the data README states.
SAMPLES = [
    ("apollo_export_sample.csv", 60, 51, 7, "utf-8-sig", "comma"),
    ("hubspot_export_sample.csv", 40, 39, 0, "cp1252", "semicolon"),
    ("lemlist_export_sample.csv", 30, 28, 1, "utf-8", "comma"),
]


@pytest.mark.parametrize(("name", "rows", "unique", "invalid", "encoding", "delimiter"), SAMPLES)
def test_each_sample_imports_with_the_documented_counts(
    run_import, sample_dir, campaign, name, rows, unique, invalid, encoding, delimiter
):
    outcome = run_import(sample_dir / name)

    counts = outcome.counts
    assert (outcome.encoding, outcome.delimiter) == (encoding, delimiter)
    assert counts["rows_total"] == counts["rows_done"] == rows
    assert counts["created"] == unique
    assert counts["invalid"] == invalid
    assert counts["duplicates_in_file"] == rows - unique - invalid
    assert Lead.objects.filter(campaign=campaign).count() == unique
    batch = ImportBatch.objects.get(pk=outcome.batch_id)
    assert batch.state == "done" and batch.created == unique and batch.finished_at
    assert batch.issues.filter(kind=RowIssueKind.INVALID).count() == invalid
    assert batch.issues.filter(kind=RowIssueKind.DUPLICATE).count() == rows - unique - invalid


def test_apollo_sample_keeps_unmapped_columns_as_custom_fields_and_normalises(
    run_import, sample_dir, campaign
):
    run_import(sample_dir / "apollo_export_sample.csv")

    lead = Lead.objects.get(campaign=campaign, email_key="mei.müller.1@tyrell.example")
    assert lead.first_name == "Mei" and lead.last_name == "Müller"
    assert lead.company == "Tyrell Corporation"  # from "Company Name for Emails"
    assert lead.phone == "+15125550001"
    assert lead.linkedin_url == "https://www.linkedin.com/in/mei.müller-1"
    assert lead.company_size == 51
    assert lead.country == "India" and lead.timezone == "Asia/Kolkata"
    assert lead.custom_fields["Seniority"] == "Vp"
    assert lead.custom_fields["Company Linkedin Url"].endswith("/tyrell.example")
    assert lead.identity_hash and lead.score_explanation.startswith("Founder & CEO at a 51-")


def test_apollo_rows_without_a_valid_email_are_listed_with_row_and_column(
    run_import, sample_dir, campaign
):
    outcome = run_import(sample_dir / "apollo_export_sample.csv")

    errors = list(ImportIssue.objects.filter(batch_id=outcome.batch_id, kind=RowIssueKind.INVALID))
    assert {e.column for e in errors} == {"Email"}
    assert 5 in {e.row_number for e in errors}  # "Tomás Silva" has an empty Email cell
    assert any("@-sign" in e.reason for e in errors)


def test_lemlist_sample_uppercase_email_is_lowered_in_the_key_and_icebreaker_kept(
    run_import, sample_dir, campaign
):
    run_import(sample_dir / "lemlist_export_sample.csv")

    lead = Lead.objects.get(campaign=campaign, email_key="søren.nguyen.0@tyrell.example")
    assert lead.email == "SØREN.NGUYEN.0@tyrell.example"  # domain lower-cased, local kept
    assert lead.custom_fields["icebreaker"] == "Loved your post about retail!"
    assert lead.timezone == "America/Chicago"  # given in the file
    assert lead.company_domain == "tyrell.example"


def test_hubspot_sample_windows_1252_names_are_read_correctly(run_import, sample_dir, campaign):
    run_import(sample_dir / "hubspot_export_sample.csv")

    assert Lead.objects.filter(campaign=campaign, first_name="Renée").exists()
    lead = Lead.objects.filter(campaign=campaign, country="India").first()
    assert lead.timezone == "Asia/Kolkata"


def _apollo_text(sample_dir) -> str:
    return (sample_dir / "apollo_export_sample.csv").read_text(encoding="utf-8-sig")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le-bom", "utf-16-be-bom", "utf-8"])
def test_unicode_variants_of_the_apollo_file_give_the_same_leads(
    run_import, write_csv, sample_dir, campaign, encoding
):
    text = _apollo_text(sample_dir)
    if encoding == "utf-16-le-bom":
        path = write_csv("\ufeff" + text, encoding="utf-16-le")
    elif encoding == "utf-16-be-bom":
        path = write_csv("\ufeff" + text, encoding="utf-16-be")
    else:
        path = write_csv(text, encoding=encoding)

    outcome = run_import(path)

    assert outcome.counts["created"] == 51 and outcome.counts["invalid"] == 7
    assert Lead.objects.filter(campaign=campaign, last_name="Müller").exists()


def test_windows_1252_and_latin_1_files_are_read_with_the_fallback(run_import, write_csv, campaign):
    text = "Email;Vorname;Nachname;Firma\r\njurgen@acme.example;Jürgen;Weiß;Café Größe\r\n"
    path = write_csv(text, encoding="cp1252")
    outcome = run_import(path)
    assert outcome.encoding == "cp1252"
    lead = Lead.objects.get(campaign=campaign)
    assert (lead.first_name, lead.last_name, lead.company) == ("Jürgen", "Weiß", "Café Größe")

    # 0x81 is undefined in Windows-1252: such a file is read as Latin-1.
    latin = write_csv("email,first name\nzoe@acme.example,Zo\x81\xeb\n", encoding="latin-1")
    assert run_import(latin).encoding == "latin-1"


@pytest.mark.parametrize(("delimiter", "name"), [(",", "comma"), (";", "semicolon"), ("\t", "tab")])
def test_delimiters_are_detected(run_import, write_csv, campaign, delimiter, name):
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(["Work Email", "First Name", "Company", "Notes"])
    writer.writerow(["a@acme.example", "Ann", "Acme, Inc.; EU", "likes, commas; and semis"])
    writer.writerow(["b@acme.example", "Bob", "Acme", ""])

    outcome = run_import(write_csv(buffer.getvalue()))

    assert outcome.delimiter == name
    lead = Lead.objects.get(campaign=campaign, email_key="a@acme.example")
    assert lead.company == "Acme, Inc.; EU"
    assert lead.custom_fields == {"Notes": "likes, commas; and semis"}


def test_xlsx_files_are_imported_from_the_first_sheet(run_import, tmp_path, campaign):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["E-mail", "firstName", "Country/Region", "# Employees", "Icebreaker"])
    sheet.append(["Xena@Acme.example", "Xena", "Germany", 120, "Saw your talk"])
    sheet.append(["nobody-at-acme", "No", "Germany", 5, ""])
    path = tmp_path / "leads.xlsx"
    book.save(path)

    outcome = run_import(path)

    assert outcome.encoding == "xlsx"
    assert (outcome.counts["created"], outcome.counts["invalid"]) == (1, 1)
    lead = Lead.objects.get(campaign=campaign)
    assert (lead.email_key, lead.company_size, lead.timezone) == (
        "xena@acme.example",
        120,
        "Europe/Berlin",
    )
    assert lead.custom_fields == {"Icebreaker": "Saw your talk"}


def test_header_aliases_of_common_exports_map_to_lead_fields(run_import, write_csv, campaign):
    path = write_csv(
        "email_address,firstName,lastName,Company Name for Emails,Person Linkedin Url,"
        "Country/Region,Job Title,utm_source,Consent\n"
        "a@acme.example,Ann,Lee,Acme,linkedin.com/in/Ann-Lee/?trk=x,Austria,VP Sales,"
        "webinar,yes\n"
    )
    outcome = run_import(path)

    assert outcome.mapping["Person Linkedin Url"] == "linkedin_url"
    lead = Lead.objects.get(campaign=campaign)
    assert lead.linkedin_url == "https://www.linkedin.com/in/ann-lee"
    assert (lead.company, lead.title, lead.utm_source) == ("Acme", "VP Sales", "webinar")
    assert lead.consent_status == "consented" and lead.timezone == "Europe/Vienna"


def test_preview_shows_mapping_and_first_rows_with_their_problems(sample_dir, campaign):
    preview = lead_import_preview(
        campaign=campaign, path=sample_dir / "apollo_export_sample.csv", rows=6
    )

    assert preview.rows_total == 60 and preview.encoding == "utf-8-sig"
    assert preview.mapping["Email"] == "email"
    assert preview.mapping["Keywords"] == "custom: Keywords"
    assert [r.row_number for r in preview.rows] == [2, 3, 4, 5, 6, 7]
    missing = next(r for r in preview.rows if r.row_number == 5)
    assert missing.outcome == "invalid" and "No email address" in missing.problems[0]
    assert preview.rows[0].outcome == "new"
    assert Lead.objects.count() == 0 and ImportBatch.objects.count() == 0
