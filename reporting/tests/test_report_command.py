"""`manage.py report verify BUNDLE.zip`: a short summary and exit 0 for a good bundle, each
problem and a one-line error with a non-zero exit for a bad one; `--json` for scripts."""

from __future__ import annotations

import datetime
import io
import json
import zipfile

import pytest
from django.core.management import CommandError, call_command

from reporting.bundle import bundle_write
from tests.proc import clean_env, manage

GENERATED_AT = datetime.datetime(2026, 12, 3, 9, 0, tzinfo=datetime.UTC)


@pytest.fixture
def bundle(tmp_path):
    return bundle_write(
        tmp_path / "proof.zip",
        [("report.html", b"<h1>Report</h1>"), ("csv/leads.csv", b"email\na@example.com\n")],
        campaign_slug="spring", filters={}, generated_at=GENERATED_AT,
    )  # fmt: skip


def _tamper(path) -> None:
    """Rewrite the ZIP with csv/leads.csv changed (same size, other bytes)."""
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as old, zipfile.ZipFile(path, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            if info.filename == "csv/leads.csv":
                data = data.replace(b"a@", b"b@")
            new.writestr(info, data)


def _run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("report", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_verify_prints_ok_with_the_count_and_the_manifest_digest(bundle):
    out, _err = _run("verify", str(bundle.path))
    assert (
        out.strip()
        == f"OK: 2 files verified against manifest.json, manifest sha256 {bundle.manifest_sha256}"
    )


def test_verify_json_is_machine_readable_before_or_after_the_action(bundle):
    for args in (("--json", "verify", str(bundle.path)), ("verify", str(bundle.path), "--json")):
        data = json.loads(_run(*args)[0])
        assert data == {
            "bundle": str(bundle.path), "ok": True, "problems": [], "files_checked": 2,
            "manifest_sha256": bundle.manifest_sha256,
        }  # fmt: skip


def test_verify_of_an_altered_bundle_lists_each_problem_and_fails(bundle):
    _tamper(bundle.path)
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"proof.zip did not verify: 1 problem \(listed above\)"):
        call_command("report", "verify", str(bundle.path), stdout=out)
    assert out.getvalue().startswith("FAILED: csv/leads.csv: altered, its SHA-256 is ")


def test_verify_json_of_an_altered_bundle_reports_the_problems_and_fails(bundle):
    _tamper(bundle.path)
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"did not verify: 1 problem\.$"):
        call_command("report", "verify", str(bundle.path), "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["ok"] is False
    assert data["problems"][0].startswith("csv/leads.csv: altered")


def test_verify_checks_the_digest_the_client_was_sent(bundle):
    out, _err = _run("verify", str(bundle.path), "--manifest-sha256", bundle.manifest_sha256)
    assert out.startswith("OK: 2 files verified against manifest.json")
    with pytest.raises(CommandError, match="did not verify"):
        _run("verify", str(bundle.path), "--manifest-sha256", "0" * 64)


def test_verify_as_an_operator_runs_it_exits_zero_then_one_once_altered(bundle):
    env = clean_env()
    good = manage("report", "verify", str(bundle.path), env=env)
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("OK: 2 files verified against manifest.json, manifest sha256 ")

    _tamper(bundle.path)
    bad = manage("report", "verify", str(bundle.path), env=env)
    assert bad.returncode == 1
    assert bad.stdout.startswith("FAILED: csv/leads.csv: altered")
    assert "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        f"CommandError: {bundle.path} did not verify: 1 problem (listed above)."
    ]


def test_verify_of_a_missing_file_is_one_line_and_exit_one(tmp_path):
    result = manage("report", "verify", str(tmp_path / "nope.zip"), env=clean_env())
    assert result.returncode == 1
    assert result.stdout.strip() == f"FAILED: {tmp_path / 'nope.zip'}: no such file."
    assert len(result.stderr.strip().splitlines()) == 1
