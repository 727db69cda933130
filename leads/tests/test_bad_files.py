"""Bad lead files through every entry point: the service, `manage.py leads import` in a real
process, and the admin upload. A refused file gives one clear message, no traceback, and
leaves the database as it was; an accepted file keeps every row and every character."""

from __future__ import annotations

import html
import json
import logging
import re
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from leads.importing import Chunking
from leads.models import BatchState, ImportBatch, ImportIssue, Lead
from leads.parsing import FileProblem
from leads.tests import bad_files
from tests.proc import clean_env, manage, python
from ventures.models import AuditEvent

REFUSED = bad_files.refused()
ACCEPTED = bad_files.accepted()


def _snapshot() -> tuple[int, int, int, int]:
    return (
        Lead.objects.count(),
        ImportBatch.objects.count(),
        ImportIssue.objects.count(),
        AuditEvent.objects.count(),
    )


def _write(tmp_path: Path, name: str, data: bytes, suffix: str) -> Path:
    path = tmp_path / f"{name}{suffix}"
    path.write_bytes(data)
    return path


# --- the service --------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_bad_file_is_refused_with_its_reason_and_writes_nothing(
    name, run_import, sample_dir, tmp_path
):
    run_import(sample_dir / "lemlist_export_sample.csv")
    data, suffix, message = REFUSED[name]
    before = _snapshot()

    with pytest.raises(FileProblem, match=message):
        run_import(_write(tmp_path, name, data, suffix))

    assert _snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_an_accepted_file_keeps_every_row_and_every_character(name, run_import, campaign, tmp_path):
    data, suffix, expected = ACCEPTED[name]

    outcome = run_import(_write(tmp_path, name, data, suffix))

    assert outcome.counts["rows_total"] == len(expected)
    assert outcome.counts["created"] == len(expected)
    stored = Lead.objects.filter(campaign=campaign).order_by("email_key")
    assert [(lead.email, lead.first_name) for lead in stored] == sorted(expected)


@pytest.mark.django_db
def test_a_windows_1252_file_is_read_as_such_and_the_outcome_says_so(run_import, tmp_path):
    data, suffix, _ = ACCEPTED["cp1252_without_utf8"]

    outcome = run_import(_write(tmp_path, "latin", data, suffix))

    assert outcome.encoding == "cp1252"
    assert Lead.objects.get(email_key="p0@acme.example").first_name == "M\u00fcller"


@pytest.mark.django_db
def test_a_big_file_refused_while_it_is_imported_logs_one_line_without_a_traceback(
    run_import, write_csv, monkeypatch, caplog
):
    # The check runs beside the import, so the refusal surfaces after chunks were written.
    monkeypatch.setattr("leads.services.imports.CHECK_BESIDE_BYTES", 0)
    rows = "".join(f"r{i}@acme.example,Ann\n" for i in range(20)) + "r99@acme.example,B,extra\n"
    before = _snapshot()

    with caplog.at_level(logging.INFO), pytest.raises(FileProblem, match="do not have the 2"):
        run_import(write_csv("Email,First Name\n" + rows), chunking=Chunking(rows=3))

    assert [r for r in caplog.records if r.exc_info] == []
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1 and "do not have the 2 columns" in refusals[0]
    assert Lead.objects.count() == before[0]


# --- `manage.py leads import` in a real process --------------------------------------------------

CLI_REFUSED = (
    "utf16le_odd_length",
    "utf8_cut_at_the_end",
    "utf8_bad_byte_on_the_only_accented_line",
    "unclosed_quote_in_the_middle",
    "unclosed_quote_closed_later_by_another",
    "huge_field",
    "xlsx_without_a_worksheet",
    "xlsx_missing_shared_string",
    "xlsx_shared_string_bomb",
    "xlsx_zip_bomb",
)
CLI_ACCEPTED = ("cp1252_without_utf8", "xlsx_with_forged_dimension")

_SETUP = """
import django, json, sys
django.setup()
from tests.factories import CampaignFactory, VentureFactory
tag = sys.argv[1]
venture = VentureFactory(slug="v-" + tag, name="V " + tag)
print(CampaignFactory(venture=venture, slug="c-" + tag, name="C " + tag).slug)
"""
_STATE = """
import django, json
django.setup()
from leads.models import ImportBatch, ImportIssue, Lead
from ventures.models import AuditEvent
print(json.dumps({
    "counts": [Lead.objects.count(), ImportBatch.objects.count(),
               ImportIssue.objects.count(), AuditEvent.objects.count()],
    "names": sorted(Lead.objects.values_list("email", "first_name")),
}))
"""


@pytest.fixture
def cli_env(cli_database_url) -> dict[str, str]:
    """The environment of a real process on this run's database."""
    return clean_env(DATABASE_URL=cli_database_url, AICMO_ARTIFACT_DIR=settings.AICMO_ARTIFACT_DIR)


def _cli_state(env: dict[str, str]) -> dict:
    result = python(_STATE, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _cli_campaign(env: dict[str, str]) -> str:
    tag = uuid.uuid4().hex[:10]
    result = python(_SETUP.replace("sys.argv[1]", repr(tag)), env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_import_command_refuses_bad_files_in_one_line_without_a_traceback(cli_env, tmp_path):
    slug = _cli_campaign(cli_env)
    before = _cli_state(cli_env)

    for name in CLI_REFUSED:
        data, suffix, message = REFUSED[name]
        path = _write(tmp_path, name, data, suffix)
        result = manage("leads", "import", slug, str(path), env=cli_env, timeout=120)

        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0, name
        assert "Traceback" not in result.stderr, (name, result.stderr)
        assert len(lines) == 1, (name, result.stderr)
        assert FileProblem.__name__ not in lines[0], name
        assert re.search(message, lines[0]), (name, lines[0])

    assert _cli_state(cli_env) == before


def test_the_import_command_keeps_accented_names_of_accepted_files_exactly(cli_env, tmp_path):
    slug = _cli_campaign(cli_env)
    before = _cli_state(cli_env)["names"]

    for name in CLI_ACCEPTED:
        data, suffix, expected = ACCEPTED[name]
        path = _write(tmp_path, name, data, suffix)
        # Bounded by what the file holds: the forged dimension must not make this crawl.
        result = manage("leads", "import", slug, str(path), "--json", env=cli_env, timeout=60)
        assert result.returncode == 0, (name, result.stderr)
        outcome = json.loads(result.stdout)
        assert outcome["counts"]["created"] == len(expected), name
        if name.startswith("cp1252"):
            assert outcome["encoding"] == "cp1252"

    stored = {tuple(pair) for pair in _cli_state(cli_env)["names"]} - {tuple(p) for p in before}
    wanted = {pair for name in CLI_ACCEPTED for pair in ACCEPTED[name][2]}
    assert stored == wanted


# --- the admin upload ----------------------------------------------------------------------------


@pytest.fixture
def signed_in(client, operator, settings):
    settings.SECURE_SSL_REDIRECT = False
    client.force_login(operator)
    return client


def _upload(client, campaign, name: str, data: bytes, suffix: str):
    payload = {"campaign": campaign.pk, "file": SimpleUploadedFile(name + suffix, data)}
    return client.post(reverse("admin:leads_lead_import"), payload)


def _staged() -> list[Path]:
    folder = Path(settings.AICMO_ARTIFACT_DIR) / "lead-import-staging"
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_bad_upload_is_a_message_on_the_form_never_a_500(name, signed_in, campaign, caplog):
    data, suffix, message = REFUSED[name]
    before, staged = _snapshot(), _staged()  # other tests' unconfirmed previews stay staged

    with caplog.at_level(logging.INFO):
        response = _upload(signed_in, campaign, name, data, suffix)

    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    # Django's own form check answers for a zero-byte upload.
    assert "errorlist" in page and re.search(message + "|submitted file is empty", page), name
    assert _snapshot() == before and _staged() == staged
    assert [r for r in caplog.records if r.exc_info] == []  # a refusal, not a bug


@pytest.mark.django_db
def test_the_preview_of_a_windows_1252_upload_says_it_is_not_utf8(signed_in, campaign):
    data, suffix, _ = ACCEPTED["cp1252_without_utf8"]

    page = html.unescape(_upload(signed_in, campaign, "latin", data, suffix).content.decode())

    assert "read as cp1252 because it is not UTF-8" in page
    assert "M\u00fcller" in page


@pytest.mark.django_db
def test_a_big_upload_is_read_whole_by_the_worker_not_by_the_preview_nor_the_confirm(
    signed_in, campaign, settings, django_capture_on_commit_callbacks
):
    settings.AICMO_IMPORT_BACKGROUND_BYTES = 4096  # the preview's byte budget
    rows = "".join(f"p{i}@acme.example,Ann,Smith\n" for i in range(3000))
    data = (bad_files.HEADER + rows + "late@acme.example,only two\n").encode()

    preview = _upload(signed_in, campaign, "big", data, ".csv")

    page = html.unescape(preview.content.decode())
    assert preview.status_code == 200 and "errorlist" not in page  # the bad end was not read
    assert "read only the start of the file" in page and "at least" in page
    ticket = re.search(r'name="ticket" value="([^"]+)"', page).group(1)
    with django_capture_on_commit_callbacks(execute=True):
        confirmed = signed_in.post(reverse("admin:leads_lead_import_confirm"), {"ticket": ticket})
    assert confirmed.status_code == 302  # to the batch page: the worker reads the file whole
    batch = ImportBatch.objects.get()
    assert batch.state == BatchState.FAILED
    assert "do not have the 3 columns" in batch.error
    assert Lead.objects.count() == 0
