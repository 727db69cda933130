"""The proof bundle: what it holds, that it reproduces byte for byte, that it streams, and that
verifying it catches every way a written ZIP can be altered (each test really rewrites one)."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import re
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from reporting.bundle import (
    MANIFEST,
    MANIFEST_DIGEST,
    BundleError,
    bundle_verify,
    bundle_write,
    tool_version,
)

GENERATED_AT = datetime.datetime(2026, 12, 3, 14, 30, 7, tzinfo=datetime.UTC)
FILTERS = {"since": "2026-11-01", "until": "2026-11-30", "sources": ["webinar"]}
CSV_ROWS = 2000


def write_leads_csv(stream) -> None:
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    text.write("email,outcome\n")
    for i in range(CSV_ROWS):
        text.write(f"lead{i}@example.com,{('replied', 'bounced', 'no reply')[i % 3]}\n")
    text.detach()


def leads_csv_bytes() -> bytes:
    buffer = io.BytesIO()
    write_leads_csv(buffer)
    return buffer.getvalue()


def files(tmp_path: Path) -> list:
    eml = tmp_path / "message-1.eml"
    eml.write_bytes(b"Subject: Hello\r\n\r\nHi there\r\n")
    return [
        ("report.html", b"<!DOCTYPE html><h1>Report</h1>"),
        ("report.md", b"# Report\n\nSent: 3\n"),
        ("csv/leads.csv", write_leads_csv),
        ("proof/eml/message-1.eml", eml),
    ]


def write(tmp_path: Path, name: str = "bundle.zip", **overrides):
    given = overrides.pop("files", None)
    kwargs = {"campaign_slug": "spring-2026", "filters": FILTERS, "generated_at": GENERATED_AT}
    return bundle_write(tmp_path / name, given or files(tmp_path), **{**kwargs, **overrides})


def rewrite(path: Path, *, change=None, drop=(), add=()) -> None:
    """Rewrite the ZIP at `path` entry by entry: `change` maps a name to its new bytes, `drop`
    leaves names out, `add` appends (name, bytes); everything else is copied unchanged."""
    change = change or {}
    original = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(original)) as old, zipfile.ZipFile(path, "w") as new:
        for info in old.infolist():
            if info.filename in drop:
                continue
            data = change.get(info.filename, old.read(info))
            new.writestr(info, data)
        for name, data in add:
            new.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)


def replace_manifest(path: Path, body: bytes, **change: bytes) -> None:
    """Rewrite the ZIP with another manifest and its matching digest (and `change`'s files),
    as someone covering their tracks would."""
    digest = f"{hashlib.sha256(body).hexdigest()}  manifest.json\n".encode()
    rewrite(path, change={MANIFEST: body, MANIFEST_DIGEST: digest, **change})


def only_problem(path: Path, **kwargs) -> str:
    """The one problem `bundle_verify` finds in the bundle at `path`."""
    result = bundle_verify(path, **kwargs)
    assert not result.ok
    assert len(result.problems) == 1, result.problems
    return result.problems[0]


def with_peak_memory(call):
    """What `call()` returns, and the most memory Python allocated meanwhile (bytes)."""
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def manifest_of(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read(MANIFEST))


# --- writing ---------------------------------------------------------------------------------


def test_bundle_holds_the_files_then_the_manifest_and_its_digest(tmp_path):
    info = write(tmp_path)
    with zipfile.ZipFile(info.path) as archive:
        assert archive.namelist() == [
            "report.html", "report.md", "csv/leads.csv", "proof/eml/message-1.eml",
            MANIFEST, MANIFEST_DIGEST,
        ]  # fmt: skip
        assert archive.read("csv/leads.csv") == leads_csv_bytes()
        assert archive.read("proof/eml/message-1.eml") == b"Subject: Hello\r\n\r\nHi there\r\n"
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_DEFLATED}


def test_manifest_lists_every_file_with_its_size_and_sha256(tmp_path):
    write(tmp_path)
    manifest = manifest_of(tmp_path / "bundle.zip")
    csv = leads_csv_bytes()
    assert manifest["files"][2] == {
        "name": "csv/leads.csv", "size": len(csv), "sha256": hashlib.sha256(csv).hexdigest(),
    }  # fmt: skip
    assert [f["name"] for f in manifest["files"]] == [
        "report.html", "report.md", "csv/leads.csv", "proof/eml/message-1.eml",
    ]  # fmt: skip


def test_manifest_records_campaign_filters_generation_time_and_tool_version(tmp_path):
    write(tmp_path)
    manifest = manifest_of(tmp_path / "bundle.zip")
    assert manifest["campaign"] == "spring-2026"
    assert manifest["filters"] == FILTERS
    assert manifest["generated_at"] == "2026-12-03T14:30:07Z"
    assert manifest["tool"] == {"name": "aicmo-campaign-engine", "version": tool_version()}
    assert tool_version() == "0.1.0"


def test_generation_time_is_stored_in_utc_whatever_its_zone(tmp_path):
    paris = datetime.timezone(datetime.timedelta(hours=1))
    write(tmp_path, generated_at=GENERATED_AT.astimezone(paris))
    assert manifest_of(tmp_path / "bundle.zip")["generated_at"] == "2026-12-03T14:30:07Z"


def test_manifest_sha256_holds_the_manifests_digest_in_sha256sum_format(tmp_path):
    info = write(tmp_path)
    with zipfile.ZipFile(info.path) as archive:
        digest = hashlib.sha256(archive.read(MANIFEST)).hexdigest()
        assert archive.read(MANIFEST_DIGEST) == f"{digest}  manifest.json\n".encode()
    assert info.manifest_sha256 == digest


def test_bundle_info_lists_what_was_written(tmp_path):
    info = write(tmp_path)
    assert info.path == tmp_path / "bundle.zip"
    assert [(f.name, f.size) for f in info.files][:2] == [("report.html", 30), ("report.md", 18)]


def test_bundle_is_readable_by_its_owner_only(tmp_path):
    info = write(tmp_path)
    assert info.path.stat().st_mode & 0o777 == 0o600


def test_same_inputs_give_a_byte_identical_zip(tmp_path):
    first = write(tmp_path, name="one.zip").path.read_bytes()
    second = write(tmp_path, name="two.zip").path.read_bytes()
    assert first == second


def test_entries_carry_the_generation_time_not_the_clock(tmp_path):
    info = write(tmp_path)
    with zipfile.ZipFile(info.path) as archive:
        stamps = {i.date_time for i in archive.infolist()}
    assert stamps == {(2026, 12, 3, 14, 30, 6)}  # ZIP times go in steps of two seconds


def test_another_generation_time_changes_only_times_and_manifest(tmp_path):
    later = write(tmp_path, name="later.zip", generated_at=GENERATED_AT.replace(hour=15))
    first = write(tmp_path)
    assert later.path.read_bytes() != first.path.read_bytes()
    assert [f.sha256 for f in later.files] == [f.sha256 for f in first.files]


def test_a_callable_streams_into_its_entry_without_holding_the_file_in_memory(tmp_path):
    chunk = bytes(range(256)) * 256  # 64 KiB
    total = 40 * 1024 * 1024
    expected = hashlib.sha256()
    for _ in range(total // len(chunk)):
        expected.update(chunk)

    def write_big(stream) -> None:
        for _ in range(total // len(chunk)):
            stream.write(chunk)

    info, peak = with_peak_memory(lambda: write(tmp_path, files=[("csv/messages.csv", write_big)]))
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for a 40 MB file"
    assert info.files[0].size == total
    assert info.files[0].sha256 == expected.hexdigest()
    assert bundle_verify(info.path).ok


def test_a_path_is_copied_in_chunks(tmp_path):
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        for i in range(24):
            handle.write(bytes([i]) * (1024 * 1024))
    info, peak = with_peak_memory(lambda: write(tmp_path, files=[("proof/big.bin", big)]))
    assert peak < 8 * 1024 * 1024
    assert info.files[0].sha256 == hashlib.sha256(big.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("/etc/passwd", "absolute path"),
        ("../outside.csv", "'.' or '..' part"),
        ("csv/../../outside.csv", "'.' or '..' part"),
        ("csv//leads.csv", "empty"),
        ("./report.html", "'.' or '..' part"),
        ("csv\\leads.csv", "backslash"),
        ("", "non-empty"),
        ("manifest.json", "manifest's own name"),
        ("manifest.sha256", "manifest's own name"),
    ],
)
def test_unsafe_or_reserved_names_are_refused_and_nothing_is_written(tmp_path, name, reason):
    with pytest.raises(BundleError, match=re.escape(reason)):
        write(tmp_path, files=[("report.html", b"x"), (name, b"y")])
    assert os.listdir(tmp_path) == []


def test_a_name_given_twice_is_refused(tmp_path):
    with pytest.raises(BundleError, match=r"'report\.html': given twice"):
        write(tmp_path, files=[("report.html", b"x"), ("report.html", b"y")])
    assert os.listdir(tmp_path) == []


def test_a_failing_callable_leaves_an_existing_bundle_untouched(tmp_path):
    before = write(tmp_path).path.read_bytes()

    def broken(stream) -> None:
        stream.write(b"half a file")
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="database went away"):
        write(tmp_path, files=[("report.html", b"x"), ("csv/leads.csv", broken)])
    assert (tmp_path / "bundle.zip").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["bundle.zip", "message-1.eml"]


def test_text_instead_of_bytes_is_refused(tmp_path):
    with pytest.raises(BundleError, match=r"'report.md': give bytes, a pathlib.Path or a callable"):
        write(tmp_path, files=[("report.md", "# Report")])
    assert os.listdir(tmp_path) == []


def test_an_unreadable_path_is_a_clear_error(tmp_path):
    with pytest.raises(BundleError, match=r"'proof/x.eml': cannot read .*missing.eml"):
        write(tmp_path, files=[("proof/x.eml", tmp_path / "missing.eml")])


def test_a_naive_generation_time_is_refused(tmp_path):
    with pytest.raises(BundleError, match="timezone-aware"):
        write(tmp_path, generated_at=GENERATED_AT.replace(tzinfo=None))


def test_a_bundle_in_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(BundleError, match="cannot be written"):
        bundle_write(
            tmp_path / "nowhere" / "b.zip", [("a", b"x")], campaign_slug="c", filters={},
            generated_at=GENERATED_AT,
        )  # fmt: skip


# --- verifying -------------------------------------------------------------------------------


def test_an_untouched_bundle_verifies(tmp_path):
    info = write(tmp_path)
    result = bundle_verify(info.path)
    assert result.ok
    assert result.problems == []
    assert result.files_checked == 4
    assert result.manifest_sha256 == info.manifest_sha256


def test_manifest_missing_is_reported(tmp_path):
    path = write(tmp_path).path
    rewrite(path, drop={MANIFEST})
    result = bundle_verify(path)
    assert not result.ok
    assert result.problems == [
        "manifest.json is missing: this is not a proof bundle, or it was altered."
    ]


def test_manifest_that_is_not_json_is_reported(tmp_path):
    path = write(tmp_path).path
    replace_manifest(path, b"{not json")
    assert only_problem(path).startswith("manifest.json is not valid JSON")


def test_manifest_without_a_file_list_is_reported(tmp_path):
    path = write(tmp_path).path
    replace_manifest(path, b'{"files": "none"}')
    assert only_problem(path) == (
        "manifest.json does not list the files (name, size and sha256 of each)."
    )


def test_an_altered_manifest_fails_its_digest(tmp_path):
    path = write(tmp_path).path
    manifest = manifest_of(path)
    manifest["filters"] = {"since": "2020-01-01"}  # someone widens what the report claims
    rewrite(path, change={MANIFEST: json.dumps(manifest, indent=2).encode()})
    assert only_problem(path).startswith("manifest.json was altered: its SHA-256 is ")


def test_a_missing_manifest_digest_is_reported(tmp_path):
    path = write(tmp_path).path
    rewrite(path, drop={MANIFEST_DIGEST})
    assert bundle_verify(path).problems == [
        "manifest.sha256 is missing, so the manifest cannot be checked."
    ]


def test_a_file_altered_in_place_fails_its_digest(tmp_path):
    path = write(tmp_path).path
    csv = leads_csv_bytes()
    tampered = csv.replace(b"lead7@example.com,bounced", b"lead7@example.com,replied")
    assert len(tampered) == len(csv)
    rewrite(path, change={"csv/leads.csv": tampered})
    assert only_problem(path).startswith("csv/leads.csv: altered, its SHA-256 is ")
    assert bundle_verify(path).files_checked == 4


def test_a_file_of_another_size_is_reported_with_both_sizes(tmp_path):
    path = write(tmp_path).path
    rewrite(path, change={"report.md": b"# Report\n\nSent: 3000\n"})
    assert bundle_verify(path).problems == [
        "report.md: altered, 21 bytes where the manifest says 18."
    ]


def test_a_missing_file_is_reported(tmp_path):
    path = write(tmp_path).path
    rewrite(path, drop={"proof/eml/message-1.eml"})
    result = bundle_verify(path)
    assert result.problems == ["proof/eml/message-1.eml: missing (the manifest lists it)."]
    assert result.files_checked == 3


def test_an_extra_file_not_in_the_manifest_is_reported(tmp_path):
    path = write(tmp_path).path
    rewrite(path, add=[("csv/extra.csv", b"email\nsomeone@example.com\n")])
    assert bundle_verify(path).problems == ["csv/extra.csv: extra file, not in the manifest."]


def test_a_file_present_twice_is_reported(tmp_path):
    path = write(tmp_path).path
    with pytest.warns(UserWarning, match="Duplicate name"):
        rewrite(path, add=[("report.html", b"<h1>Other</h1>")])
    result = bundle_verify(path)
    assert not result.ok
    assert "report.html: appears more than once in the ZIP." in result.problems


def test_a_truncated_zip_is_reported_as_corrupt(tmp_path):
    path = write(tmp_path).path
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert only_problem(path).startswith("The ZIP file is corrupt or not a ZIP")


def test_damaged_compressed_data_is_reported_as_corrupt(tmp_path):
    path = write(tmp_path).path
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("csv/leads.csv")
    data = bytearray(path.read_bytes())
    # The entry's data starts after its 30-byte local header, name and extra field.
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for offset in range(start + 100, start + 110):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    assert only_problem(path).startswith("csv/leads.csv: corrupt in the ZIP, cannot be read")


def test_a_file_that_is_not_a_zip_is_reported(tmp_path):
    path = tmp_path / "bundle.zip"
    path.write_text("email,outcome\n")
    assert only_problem(path).startswith("The ZIP file is corrupt or not a ZIP")


def test_a_bundle_that_does_not_exist_is_reported(tmp_path):
    result = bundle_verify(tmp_path / "nope.zip")
    assert result.problems == [f"{tmp_path / 'nope.zip'}: no such file."]


def test_the_digest_sent_apart_from_the_zip_catches_a_rewritten_manifest(tmp_path):
    info = write(tmp_path)
    manifest = manifest_of(info.path)
    csv = leads_csv_bytes().replace(b"bounced", b"replied")
    manifest["files"][2].update(size=len(csv), sha256=hashlib.sha256(csv).hexdigest())
    replace_manifest(info.path, json.dumps(manifest).encode(), **{"csv/leads.csv": csv})
    assert bundle_verify(info.path).ok  # consistent with itself...
    # ...but not the manifest the client was sent.
    problem = only_problem(info.path, manifest_sha256=info.manifest_sha256)
    assert problem.startswith("manifest.json is not the one you were sent")
