"""The proof bundle: a ZIP of a campaign's report files with a manifest that proves them.

`bundle_write(path, files, campaign_slug=..., filters=..., generated_at=...)` writes a deflated
ZIP holding the given files, then `manifest.json` (every file's name, size and SHA-256, the
campaign, the report's filters, the generation time, the tool and its version) and last
`manifest.sha256`, the manifest's own digest in `sha256sum` format (unzipped,
`sha256sum -c manifest.sha256` checks the manifest). `bundle_verify(path)` reads a bundle back
and says, in plain words, everything that does not match (`report verify BUNDLE.zip`).

- **Streaming.** A file is given as bytes, as a `pathlib.Path` (copied in 1 MiB chunks) or as a
  callable that writes into the open ZIP entry (a binary stream); each is hashed as it is
  written, so a large CSV never sits in memory. A callable that wraps the stream (a
  `TextIOWrapper` for csv) must flush or detach the wrapper before it returns.
- **Reproducible.** Every entry carries `generated_at` as its timestamp, fixed permissions and a
  fixed "made on" system, and the manifest is sorted JSON, so the same inputs give a
  byte-identical ZIP (with the same zlib; deflate output may differ between zlib versions,
  while every SHA-256 in the manifest, which is over the uncompressed files, does not).
- **Nothing half-written.** The ZIP is written beside `path` under a temporary name and moved
  into place only when complete; a bad name, an unreadable file or a failing callable leaves
  no file at all, and an existing bundle at `path` untouched. The bundle is readable by its
  owner only (mode 0600, as the temporary file is made): it holds leads' personal data.
- **Names** are relative POSIX paths (`csv/leads.csv`): an absolute path, a `..` or `.` part, a
  backslash, an empty part, a duplicate or one of the manifest's own names is refused
  (`BundleError`) before anything is written for it.
- **What verifying proves.** The manifest detects any change to a file; `manifest.sha256`
  detects a change to the manifest that was not also made to it. Someone who rewrites both can
  pass that check, so the digest a client should trust is the one sent to them apart from the
  ZIP (`BundleInfo.manifest_sha256`, printed by the command): `bundle_verify(path,
  manifest_sha256=...)` also checks the manifest against it.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import tempfile
import tomllib
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest.sha256"
FORMAT = "aicmo-proof-bundle/1"
TOOL = "aicmo-campaign-engine"
CHUNK = 1024 * 1024
# rw-r--r-- regular file, in the high 16 bits of a ZIP entry's external attributes (Unix).
FILE_MODE = 0o100644 << 16
MADE_ON_UNIX = 3

FileSource = bytes | Callable[[BinaryIO], None] | Path


class BundleError(ValueError):
    """A bundle cannot be written as asked; the message names the file and the reason."""


@dataclass(frozen=True)
class BundleFile:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class BundleInfo:
    """What `bundle_write` wrote: the ZIP's path, its files and the manifest's digest."""

    path: Path
    files: list[BundleFile]
    manifest_sha256: str


@dataclass
class VerifyResult:
    """What `bundle_verify` found: `ok` when every listed file is present and unchanged, the
    manifest matches its digest and nothing else is in the ZIP."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0
    manifest_sha256: str = ""

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "problems": self.problems,
            "files_checked": self.files_checked,
            "manifest_sha256": self.manifest_sha256,
        }


def bundle_write(
    path: str | os.PathLike,
    files: Iterable[tuple[str, FileSource]],
    *,
    campaign_slug: str,
    filters: dict,
    generated_at: datetime.datetime,
) -> BundleInfo:
    """Write the proof bundle at `path` (replacing any file there) and return what it holds."""
    path = Path(path)
    stamp = _zip_timestamp(generated_at)
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise BundleError(f"{path}: cannot be written ({exc.strerror or exc}).") from None
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w") as archive:
            written = _write_files(archive, files, stamp)
            manifest = _manifest_bytes(written, campaign_slug, filters, generated_at)
            digest = hashlib.sha256(manifest).hexdigest()
            archive.writestr(_entry(MANIFEST, stamp), manifest)
            archive.writestr(_entry(MANIFEST_DIGEST, stamp), f"{digest}  {MANIFEST}\n")
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return BundleInfo(path=path, files=written, manifest_sha256=digest)


def bundle_verify(path: str | os.PathLike, *, manifest_sha256: str | None = None) -> VerifyResult:
    """Check the bundle at `path` against its manifest (and, when given, the manifest against
    `manifest_sha256`, the digest its recipient was sent apart from the ZIP)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            return _verify(archive, manifest_sha256)
    except FileNotFoundError:
        return VerifyResult(ok=False, problems=[f"{path}: no such file."])
    except IsADirectoryError:
        return VerifyResult(ok=False, problems=[f"{path}: is a directory, not a ZIP file."])
    except OSError as exc:
        return VerifyResult(ok=False, problems=[f"{path}: cannot be read ({exc.strerror or exc})."])
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
        return VerifyResult(ok=False, problems=[f"The ZIP file is corrupt or not a ZIP ({exc})."])


# --- writing ---------------------------------------------------------------------------------


def _write_files(
    archive: zipfile.ZipFile, files: Iterable[tuple[str, FileSource]], stamp: tuple
) -> list[BundleFile]:
    written: list[BundleFile] = []
    seen: set[str] = set()
    for name, source in files:
        _check_name(name, seen)
        seen.add(name)
        written.append(_write_one(archive, _entry(name, stamp), source))
    return written


def _check_name(name: object, seen: set[str]) -> None:
    if not isinstance(name, str) or not name:
        raise BundleError(f"{name!r}: a bundle file's name must be a non-empty string.")
    parts = name.split("/")
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        problem = "an absolute path; give a path relative to the bundle's root"
    elif "\\" in name or "\x00" in name:
        problem = "a backslash or NUL in it; parts are separated by '/'"
    elif ".." in parts or "." in parts or "" in parts:
        problem = "an empty, '.' or '..' part; give a plain relative path"
    elif name in (MANIFEST, MANIFEST_DIGEST):
        problem = "the manifest's own name"
    elif name in seen:
        problem = "given twice"
    else:
        return
    raise BundleError(f"{name!r}: {problem}.")


def _write_one(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: FileSource) -> BundleFile:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        info.file_size = len(data)
        with archive.open(info, "w") as entry:
            entry.write(data)
        return BundleFile(info.filename, len(data), hashlib.sha256(data).hexdigest())
    if isinstance(source, Path):
        return _write_path(archive, info, source)
    if callable(source):
        # The size is unknown until the callable is done: allow ZIP64 (files over 4 GiB).
        with archive.open(info, "w", force_zip64=True) as entry:
            sink = _HashingSink(entry)
            source(sink)
            sink.close()
        return BundleFile(info.filename, sink.size, sink.sha256.hexdigest())
    raise BundleError(
        f"{info.filename!r}: give bytes, a pathlib.Path or a callable that writes the file, "
        f"not {type(source).__name__}."
    )


def _write_path(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: Path) -> BundleFile:
    try:
        with source.open("rb") as handle:
            info.file_size = os.fstat(handle.fileno()).st_size
            digest, size = hashlib.sha256(), 0
            with archive.open(info, "w") as entry:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    entry.write(chunk)
    except OSError as exc:
        raise BundleError(
            f"{info.filename!r}: cannot read {source} ({exc.strerror or exc})."
        ) from None
    return BundleFile(info.filename, size, digest.hexdigest())


class _HashingSink(io.RawIOBase):
    """The binary stream a callable writes a file into: each write goes into the ZIP entry and
    into the file's SHA-256 and size."""

    def __init__(self, entry: BinaryIO) -> None:
        super().__init__()
        self._entry = entry
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.closed:
            raise ValueError("the bundle entry is already complete")
        view = memoryview(data).cast("B")
        self._entry.write(view)
        self.sha256.update(view)
        self.size += len(view)
        return len(view)


def _entry(name: str, stamp: tuple) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = MADE_ON_UNIX
    info.external_attr = FILE_MODE
    return info


def _zip_timestamp(generated_at: datetime.datetime) -> tuple:
    if generated_at.tzinfo is None or generated_at.utcoffset() is None:
        raise BundleError("generated_at must be timezone-aware (for example timezone.now()).")
    utc = generated_at.astimezone(datetime.UTC)
    if not 1980 <= utc.year <= 2107:
        raise BundleError(f"generated_at {utc.isoformat()}: a ZIP stores years 1980 to 2107.")
    # ZIP times have two-second steps and no zone: the UTC time, rounded down.
    return (utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second - utc.second % 2)


def _manifest_bytes(
    written: list[BundleFile], campaign_slug: str, filters: dict, generated_at: datetime.datetime
) -> bytes:
    manifest = {
        "format": FORMAT,
        "tool": {"name": TOOL, "version": tool_version()},
        "campaign": campaign_slug,
        "filters": filters,
        "generated_at": generated_at.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z"),
        "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in written],
    }
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return (text + "\n").encode("utf-8")


def tool_version() -> str:
    """This installation's version, from the project's pyproject.toml ("unknown" without one)."""
    try:
        with (Path(__file__).resolve().parent.parent / "pyproject.toml").open("rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


# --- verifying -------------------------------------------------------------------------------


def _verify(archive: zipfile.ZipFile, expected_digest: str | None) -> VerifyResult:
    problems: list[str] = []
    names = [info.filename for info in archive.infolist()]
    problems += [f"{n}: appears more than once in the ZIP." for n in sorted(_repeated(names))]
    listed, manifest_digest = _read_manifest(archive, set(names), expected_digest, problems)
    checked = 0
    for entry in listed:
        if entry["name"] not in names:
            problems.append(f"{entry['name']}: missing (the manifest lists it).")
            continue
        checked += 1
        problem = _check_file(archive, entry)
        if problem:
            problems.append(problem)
    if listed or not problems:
        known = {entry["name"] for entry in listed} | {MANIFEST, MANIFEST_DIGEST}
        problems += [f"{n}: extra file, not in the manifest." for n in names if n not in known]
    return VerifyResult(
        ok=not problems, problems=problems, files_checked=checked, manifest_sha256=manifest_digest
    )


def _read_manifest(
    archive: zipfile.ZipFile, names: set[str], expected: str | None, problems: list[str]
) -> tuple[list[dict], str]:
    """The manifest's file entries and its digest; each problem with it appended."""
    if MANIFEST not in names:
        problems.append(f"{MANIFEST} is missing: this is not a proof bundle, or it was altered.")
        return [], ""
    raw = archive.read(MANIFEST)
    digest = hashlib.sha256(raw).hexdigest()
    if MANIFEST_DIGEST not in names:
        problems.append(f"{MANIFEST_DIGEST} is missing, so the manifest cannot be checked.")
    else:
        recorded = archive.read(MANIFEST_DIGEST).decode("ascii", "replace").split(" ")[0].strip()
        if recorded.lower() != digest:
            problems.append(
                f"{MANIFEST} was altered: its SHA-256 is {digest}, {MANIFEST_DIGEST} says "
                f"{recorded[:64] or 'nothing'}."
            )
    if expected is not None and expected.strip().lower() != digest:
        problems.append(
            f"{MANIFEST} is not the one you were sent: its SHA-256 is {digest}, "
            f"you expected {expected.strip()}."
        )
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{MANIFEST} is not valid JSON ({exc}).")
        return [], digest
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(listed, list) or not all(_is_file_entry(e) for e in listed):
        problems.append(f"{MANIFEST} does not list the files (name, size and sha256 of each).")
        return [], digest
    return listed, digest


def _is_file_entry(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("name"), str)
        and isinstance(entry.get("size"), int)
        and isinstance(entry.get("sha256"), str)
    )


def _check_file(archive: zipfile.ZipFile, entry: dict) -> str | None:
    """What is wrong with one listed file, or None when it matches its size and SHA-256."""
    name, digest, size = entry["name"], hashlib.sha256(), 0
    try:
        with archive.open(name) as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        return f"{name}: corrupt in the ZIP, cannot be read ({exc})."
    if size != entry["size"]:
        return f"{name}: altered, {size} bytes where the manifest says {entry['size']}."
    if digest.hexdigest() != entry["sha256"].lower():
        return (
            f"{name}: altered, its SHA-256 is {digest.hexdigest()} where the manifest says "
            f"{entry['sha256']}."
        )
    return None


def _repeated(names: list[str]) -> set[str]:
    seen: set[str] = set()
    return {n for n in names if n in seen or seen.add(n)}
