"""Bad files: a clear message naming the problem, and the database exactly as it was."""

from __future__ import annotations

import os
import random

import pytest

from leads.models import ImportBatch, ImportIssue, Lead, RowIssueKind
from leads.parsing import FileProblem
from ventures.models import AuditEvent


def _snapshot():
    return (
        Lead.objects.count(),
        ImportBatch.objects.count(),
        ImportIssue.objects.count(),
        AuditEvent.objects.count(),
    )


GOOD = "Email,First Name\r\nann@acme.example,Ann\r\n"


@pytest.fixture
def refused(run_import, sample_dir):
    """Import a bad file after a good one; assert it is refused and nothing changed."""
    run_import(sample_dir / "lemlist_export_sample.csv")

    def check(path, message: str) -> str:
        before = _snapshot()
        with pytest.raises(FileProblem, match=message) as caught:
            run_import(path)
        assert _snapshot() == before
        return str(caught.value)

    return check


def test_empty_file_is_refused(refused, write_csv):
    refused(write_csv(""), "The file is empty")
    refused(write_csv("\ufeff  \r\n\r\n"), "The file is empty")


def test_header_only_file_is_refused(refused, write_csv):
    refused(write_csv("Email,First Name\r\n"), "header row but no data rows")


def test_file_without_an_email_column_is_refused_and_names_the_headers(refused, write_csv):
    text = refused(write_csv("Name,Company\nAnn,Acme\n"), "No email column")
    assert "'Name', 'Company'" in text


def test_binary_garbage_is_refused(refused, write_csv, tmp_path):
    noise = tmp_path / "noise.csv"
    noise.write_bytes(b"\x01\x02" + random.Random(1).randbytes(4096) + b"\x00")  # noqa: S311
    refused(noise, "NUL bytes|not text")
    controls = tmp_path / "controls.csv"
    controls.write_bytes(bytes(range(1, 9)) * 300)
    refused(controls, "not text")
    png = tmp_path / "photo.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(200))
    refused(png, "NUL bytes")


def test_nul_bytes_anywhere_in_the_file_are_refused(refused, write_csv):
    rows = "".join(f"p{i}@acme.example,Pat\r\n" for i in range(5000))
    text = refused(write_csv("Email,First Name\r\n" + rows + "bad@acme.example,B\x00b\r\n"), "NUL")
    assert "byte" in text


def test_a_ten_megabyte_field_is_refused(refused, write_csv):
    huge = "x" * (10 * 1024 * 1024)
    text = refused(write_csv(f'Email,Notes\r\nann@acme.example,"{huge}"\r\n'), "longer than")
    assert "Row 2" in text


def test_an_unclosed_quote_swallowing_the_file_is_refused(refused, write_csv):
    rows = "".join(f"p{i}@acme.example,{'word ' * 20}\n" for i in range(2000))
    refused(write_csv('Email,Notes\nann@acme.example,"oops\n' + rows), "longer than")


def test_mixed_encodings_are_refused(refused, tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        b"Email,First Name\n"
        + "ren\u00e9e@acme.example,Ren\u00e9e\n".encode()
        + "jos\u00e9@acme.example,Jos\u00e9\n".encode("cp1252")
    )
    text = refused(path, "mixes encodings")
    assert "line 2 is UTF-8 but line 3 is not" in text


def test_ragged_rows_are_refused_with_their_row_numbers(refused, write_csv):
    text = refused(
        write_csv("Email,First Name,Company\na@acme.example,Ann,Acme\nb@acme.example,Bob\n"),
        "do not have the 3 columns",
    )
    assert "row 3 has 2" in text


def test_duplicate_header_names_are_refused(refused, write_csv):
    refused(write_csv("Email,Company,company\na@acme.example,Acme,Acme\n"), "appears twice")


def test_utf8_bom_file_with_invalid_utf8_is_refused(refused, tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfEmail,Name\nann@acme.example,Ren\xe9e\n")
    refused(path, "not valid UTF-8")


def test_damaged_xlsx_is_refused(refused, tmp_path):
    path = tmp_path / "broken.xlsx"
    path.write_bytes(b"PK\x03\x04" + os.urandom(300))
    refused(path, "damaged XLSX")


def test_formula_cells_and_template_syntax_in_names_are_stored_as_plain_data(
    run_import, write_csv, campaign
):
    path = write_csv(
        "Email,First Name,Last Name,Company\n"
        'a@acme.example,{{ unsubscribe_url }},{% for x in y %},=HYPERLINK("http://x")\n'
        "b@acme.example,@SUM(1+1),-2+3,+cmd|' /C calc'!A0\n"
    )
    outcome = run_import(path)

    assert outcome.counts["created"] == 2
    a = Lead.objects.get(campaign=campaign, email_key="a@acme.example")
    assert (a.first_name, a.last_name) == ("{{ unsubscribe_url }}", "{% for x in y %}")
    assert a.company == '=HYPERLINK("http://x")'
    b = Lead.objects.get(campaign=campaign, email_key="b@acme.example")
    assert (b.first_name, b.last_name) == ("@SUM(1+1)", "-2+3")


def test_over_long_values_are_row_errors_naming_the_column(run_import, write_csv, campaign):
    path = write_csv(f"Email,Job Title\na@acme.example,{'T' * 400}\nb@acme.example,CEO\n")

    outcome = run_import(path)

    assert (outcome.counts["created"], outcome.counts["invalid"]) == (1, 1)
    error = ImportIssue.objects.get(batch_id=outcome.batch_id, kind=RowIssueKind.INVALID)
    assert (error.row_number, error.column) == (2, "Job Title")
    assert "Longer than 300 characters" in error.reason
