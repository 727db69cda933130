"""Reading lead files: encoding and delimiter detection, XLSX, header mapping, file-level checks.

`inspect_file()` reads the whole file once (hash, encoding, binary/NUL checks, XLSX archive
checks), `scan_file()` parses it once more to find every file-level problem and count the rows
before anything is written, and `iter_rows()` streams the rows for the import itself. Memory
stays flat: nothing holds more than one row (XLSX: openpyxl's read-only mode) plus small buffers.

Inside `read_limits()` (the admin preview) the checks stop at a byte, row and time budget and
say so; outside it every check covers the whole file.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import hashlib
import io
import re
import time
import zipfile
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from ventures.services import DomainError

# A field longer than this is a broken file (typically a missing closing quote), not data.
MAX_FIELD_CHARS = 100_000
READ_BLOCK = 1 << 20
SAMPLE_BYTES = 64 * 1024

# XLSX is a ZIP of XML parts, and openpyxl believes what they declare. These bound the work by
# what the archive really holds: a part that inflates more than MAX_XLSX_RATIO times (and past
# a size where that matters) is a zip bomb; no real workbook holds more shared strings than it
# has compressed bytes for them (a real string costs several bytes even compressed, a bomb's a
# fraction of one); Excel itself stops at 1,048,576 rows and lead lists never need thousands of
# columns (a value far to the right is a forged or broken sheet that would make every row wide).
MAX_XLSX_UNCOMPRESSED = 2 * 1024**3
MAX_XLSX_RATIO = 100
XLSX_RATIO_FROM_BYTES = 8 * 1024 * 1024
XLSX_FREE_SHARED_STRINGS = 10_000
MAX_XLSX_ROWS = 1_048_576
MAX_XLSX_COLUMNS = 1_000


class FileProblem(DomainError):
    """A file-level problem: the whole file is refused and nothing is written."""


# Lead field -> accepted header spellings, compared after `header_key()` (lower case, letters
# and digits only), so "E-mail", "e_mail" and "EMAIL" are one alias. Earlier aliases win when a
# file has several columns for the same field; the others are kept as custom fields.
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "email": (
        "email",
        "emailaddress",
        "workemail",
        "businessemail",
        "personalemail",
        "primaryemail",
        "contactemail",
        "mail",
        "emails",
    ),
    "first_name": ("firstname", "first", "givenname", "forename", "vorname", "prenom"),
    "last_name": ("lastname", "last", "surname", "familyname", "nachname", "nom"),
    "full_name": ("name", "fullname", "contactname", "personname"),
    "title": ("title", "jobtitle", "position", "role", "headline", "occupation"),
    "company": (
        "companynameforemails",
        "company",
        "companyname",
        "organization",
        "organisation",
        "account",
        "accountname",
        "firma",
    ),
    "company_domain": ("companydomain", "domain", "emaildomain", "companywebsitedomain"),
    "website": ("website", "companywebsite", "websiteurl", "url", "companyurl", "web"),
    "phone": (
        "phone",
        "phonenumber",
        "firstphone",
        "mobilephone",
        "mobile",
        "workphone",
        "directphone",
        "telephone",
        "tel",
        "corporatephone",
    ),
    "linkedin_url": (
        "personlinkedinurl",
        "linkedinurl",
        "linkedin",
        "linkedinprofile",
        "linkedinprofileurl",
        "profileurl",
    ),
    "city": ("city", "town", "personcity"),
    "state": ("state", "region", "stateregion", "province", "county", "personstate"),
    "country": ("country", "countryregion", "personcountry", "countryname", "land"),
    "timezone": ("timezone", "tz", "time_zone"),
    "industry": ("industry", "companyindustry", "sector"),
    "company_size": (
        "employees",
        "numberofemployees",
        "companysize",
        "employeecount",
        "headcount",
        "size",
        "companyheadcount",
    ),
    "consent_status": ("consent", "consentstatus", "gdprconsent", "emailconsent", "optin"),
    "do_not_contact": ("donotcontact", "dnc", "donotemail", "optedout", "unsubscribed"),
    "consent_at": ("consentdate", "consentat", "consentgivenat", "optindate"),
    "consent_source": ("consentsource", "optinsource"),
    "value_estimate": ("valueestimate", "dealvalue", "estimatedvalue", "value", "amount"),
    "utm_source": ("utmsource",),
    "utm_medium": ("utmmedium",),
    "utm_campaign": ("utmcampaign",),
    "utm_content": ("utmcontent",),
}
_ALIAS_INDEX = {
    alias: (field_name, rank)
    for field_name, aliases in FIELD_ALIASES.items()
    for rank, alias in enumerate(aliases)
}
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def header_key(header: str) -> str:
    return _NON_ALNUM.sub("", header.strip().lower())


@dataclass
class HeaderMapping:
    """How the columns of a file map onto lead fields."""

    headers: list[str]
    fields: dict[str, int]  # lead field -> column index
    custom: list[tuple[int, str]]  # (column index, custom field name) for every other column

    def as_display(self) -> dict[str, str]:
        """{column header: lead field or 'custom: <name>'} in file order, for the operator."""
        by_index = {i: f for f, i in self.fields.items()}
        by_index.update({i: f"custom: {name}" for i, name in self.custom})
        return {self.headers[i]: by_index[i] for i in range(len(self.headers)) if i in by_index}


def map_headers(headers: list[str]) -> HeaderMapping:
    """Map headers through the aliases; refuse duplicate or missing email columns."""
    cleaned = [h.strip().lstrip("\ufeff").strip() for h in headers]
    seen: dict[str, int] = {}
    for index, name in enumerate(cleaned):
        if not name:
            continue
        if name.lower() in seen:
            raise FileProblem(
                f"The header {name!r} appears twice (columns {seen[name.lower()] + 1} and "
                f"{index + 1}); rename one of them and upload the file again."
            )
        seen[name.lower()] = index
    best: dict[str, tuple[int, int]] = {}
    for index, name in enumerate(cleaned):
        hit = _ALIAS_INDEX.get(header_key(name))
        if hit and (hit[0] not in best or hit[1] < best[hit[0]][1]):
            best[hit[0]] = (index, hit[1])
    fields = {f: index for f, (index, _) in best.items()}
    if "email" not in fields:
        raise FileProblem(
            "No email column: none of the headers is an email column (looked for "
            "'Email', 'E-mail', 'Work Email', 'email_address', ...). Headers found: "
            + ", ".join(repr(h) for h in cleaned[:20] if h)
            + "."
        )
    used = set(fields.values())
    custom = [(i, name) for i, name in enumerate(cleaned) if i not in used and name]
    return HeaderMapping(headers=cleaned, fields=fields, custom=custom)


CUSTOM = "custom"  # an operator's mapping choice: keep the column as a custom field
SKIP = ""  # an operator's mapping choice: leave the column out


def mapping_choices(mapping: HeaderMapping) -> dict[str, str]:
    """{column header: lead field, CUSTOM or SKIP} for every named column, in file order: the
    form an operator edits, and what a batch stores (`as_display` reads back the same way)."""
    by_index = {i: f for f, i in mapping.fields.items()}
    by_index.update({i: CUSTOM for i, _ in mapping.custom})
    return {h: by_index.get(i, SKIP) for i, h in enumerate(mapping.headers) if h}


def mapping_remap(mapping: HeaderMapping, choices: dict[str, str]) -> HeaderMapping:
    """`mapping` with an operator's choices applied: {column header: lead field, CUSTOM or
    SKIP}; columns not named keep their mapping. Refuses (FileProblem) an unknown field, a
    field chosen for two columns, and a mapping without an email column."""
    current = mapping_choices(mapping)
    chosen = {h: choices.get(h, current[h]) for h in current}
    fields: dict[str, int] = {}
    custom: list[tuple[int, str]] = []
    for index, header in enumerate(mapping.headers):
        choice = chosen.get(header, SKIP) if header else SKIP
        if choice == CUSTOM:
            custom.append((index, header))
        elif choice == SKIP:
            continue
        elif choice not in FIELD_ALIASES:
            raise FileProblem(f"{choice!r} is not a lead field (column {header!r}).")
        elif choice in fields:
            raise FileProblem(
                f"Two columns are read as {field_label(choice)}: "
                f"{mapping.headers[fields[choice]]!r} and {header!r}. Choose one of them."
            )
        else:
            fields[choice] = index
    if "email" not in fields:
        raise FileProblem("Choose the column that holds the email address: it is required.")
    return HeaderMapping(headers=mapping.headers, fields=fields, custom=custom)


def mapping_from_display(mapping: HeaderMapping, display: dict[str, str]) -> HeaderMapping:
    """The mapping a batch stored (`as_display`: columns absent were skipped), on the file's
    own header: what a resumed or background run reads the rows with."""
    choices = {
        header: CUSTOM if (field := display.get(header, SKIP)).startswith("custom: ") else field
        for header in mapping.headers
        if header
    }
    return mapping_remap(mapping, choices)


_FIELD_LABELS = {
    "email": "Email",
    "full_name": "Full name (split into first and last)",
    "linkedin_url": "LinkedIn URL",
    "company_size": "Company size (employees)",
    "do_not_contact": "Do not contact (yes/no)",
    "consent_at": "Consent given at",
    "utm_source": "UTM source",
    "utm_medium": "UTM medium",
    "utm_campaign": "UTM campaign",
    "utm_content": "UTM content",
}


def field_label(name: str) -> str:
    """What an operator reads for a lead field: "First name", not `first_name`."""
    if name == CUSTOM:
        return "Custom field"
    return _FIELD_LABELS.get(name) or name.replace("_", " ").capitalize()


def field_choices() -> list[tuple[str, str]]:
    """The choices of a column in the admin's mapping form, skip and custom first."""
    fields = [(name, field_label(name)) for name in FIELD_ALIASES]
    return [(SKIP, "Skip this column"), (CUSTOM, "Keep as a custom field"), *fields]


# --- bounded reading (the admin preview) -------------------------------------------------------


@dataclass
class ReadLimits:
    """A budget for the checks of one file; `cut_short` tells whether any check stopped at it
    (then the file was not checked in full, and row counts are lower bounds)."""

    max_bytes: int
    max_rows: int
    max_seconds: float
    cut_short: bool = False
    deadline: float = 0.0

    def spent(self, *, rows: int, chars: int) -> bool:
        over = rows >= self.max_rows or chars >= self.max_bytes
        if over or (rows % 512 == 0 and time.monotonic() > self.deadline):
            self.cut_short = True
            return True
        return False


_LIMITS: ContextVar[ReadLimits | None] = ContextVar("lead_file_read_limits", default=None)


@contextlib.contextmanager
def read_limits(*, max_bytes: int, max_rows: int, max_seconds: float) -> Iterator[ReadLimits]:
    """Within this block `inspect_file()` checks at most `max_bytes` of a CSV's bytes and
    `scan_file()` stops after `max_rows` rows, `max_bytes` characters or `max_seconds` (the
    hash still covers the whole file). For a preview inside a web request: the import itself
    runs outside any limit and checks the whole file before writing."""
    limits = ReadLimits(max_bytes, max_rows, max_seconds, deadline=time.monotonic() + max_seconds)
    token = _LIMITS.set(limits)
    try:
        yield limits
    finally:
        _LIMITS.reset(token)


def _byte_budget() -> int | None:
    limits = _LIMITS.get()
    return None if limits is None else limits.max_bytes


def _blocks(path: Path, *, skip: int = 0) -> Iterator[tuple[int, bytes]]:
    """(offset, block) over the file from `skip`, within the byte budget if there is one."""
    budget = _byte_budget()
    with path.open("rb") as fh:
        fh.seek(skip)
        offset = skip
        while block := fh.read(READ_BLOCK):
            if budget is not None and offset >= budget:
                _LIMITS.get().cut_short = True
                return
            yield offset, block
            offset += len(block)


# --- reading bytes -----------------------------------------------------------------------------


@dataclass
class SourceFile:
    """What `inspect_file` learned about a file before parsing it."""

    path: Path
    name: str
    sha256: str
    size: int
    kind: str  # "csv" or "xlsx"
    encoding: str = "utf-8"
    delimiter: str = ","
    notes: list[str] = field(default_factory=list)


def inspect_file(path: Path | str, *, name: str = "") -> SourceFile:
    """Hash the file and work out its format, encoding and delimiter; refuse unreadable files."""
    path = Path(path)
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        head = fh.read(SAMPLE_BYTES)
        digest.update(head)
        size += len(head)
        while block := fh.read(READ_BLOCK):
            digest.update(block)
            size += len(block)
    info = SourceFile(
        path=path, name=name or path.name, sha256=digest.hexdigest(), size=size, kind="csv"
    )
    if not head.strip(b" \t\r\n\xef\xbb\xbf\xff\xfe\x00"):
        raise FileProblem("The file is empty.")
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path):
            raise FileProblem("The file looks like a damaged XLSX (ZIP) file.")
        info.kind = "xlsx"
        _check_xlsx_archive(path)
        return info
    info.encoding = _detect_encoding(path, head)
    info.delimiter = _detect_delimiter(_decoded_sample(head, info.encoding))
    return info


def _check_xlsx_archive(path: Path) -> None:
    """Refuse zip bombs and shared-string bombs before openpyxl reads (and believes) them."""
    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
            total = sum(part.file_size for part in parts)
            if total > MAX_XLSX_UNCOMPRESSED:
                raise FileProblem(
                    f"The XLSX file would unpack to {total / 1024**3:.1f} GB (more than "
                    f"{MAX_XLSX_UNCOMPRESSED / 1024**3:.0f} GB): it is refused as a zip bomb."
                )
            for part in parts:
                _check_xlsx_part(archive, part)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        # zlib.error is not an OSError: the ZIP layer raises BadZipFile for broken streams.
        raise FileProblem(f"The file looks like a damaged XLSX (ZIP) file ({exc}).") from None


def _check_xlsx_part(archive: zipfile.ZipFile, part: zipfile.ZipInfo) -> None:
    if part.file_size > XLSX_RATIO_FROM_BYTES and (
        part.file_size > MAX_XLSX_RATIO * max(part.compress_size, 1)
    ):
        raise FileProblem(
            f"The XLSX part {part.filename} unpacks from {part.compress_size:,} to "
            f"{part.file_size:,} bytes (more than {MAX_XLSX_RATIO} times): the file is refused "
            "as a zip bomb."
        )
    if part.filename.lower().endswith("sharedstrings.xml"):
        strings = _count_shared_strings(archive, part)
        if strings > max(XLSX_FREE_SHARED_STRINGS, part.compress_size):
            raise FileProblem(
                f"The XLSX file declares {strings:,} shared strings in {part.compress_size:,} "
                "compressed bytes, far more than any real sheet holds: it is refused as a "
                "shared-string bomb. Save it again from a spreadsheet, or as 'CSV UTF-8'."
            )


_SHARED_STRING = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?si[\s>/]")


def _count_shared_strings(archive: zipfile.ZipFile, part: zipfile.ZipInfo) -> int:
    """How many <si> entries the part really holds (its declared count is not trusted)."""
    count = 0
    tail = b""
    with archive.open(part) as stream:
        while block := stream.read(READ_BLOCK):
            data = tail + block
            count += len(_SHARED_STRING.findall(data))
            tail = data[-32:]
            count -= len(_SHARED_STRING.findall(tail))  # counted again with the next block
    return count + len(_SHARED_STRING.findall(tail))


def _detect_encoding(path: Path, head: bytes) -> str:
    """UTF-8 (with or without BOM) or UTF-16 with a BOM when the whole file decodes as such;
    Windows-1252 (or Latin-1) only for a file with no UTF-8 character in it at all. A file that
    is almost UTF-8 (cut off, one bad byte, mixed lines) is refused: read in another encoding it
    would store "MÃ¼ller" for every accented name, read with replacements it would store "M�ller";
    either way names would change without anyone being told."""
    if head.startswith(codecs.BOM_UTF8):
        _check_not_binary(head[3:])
        bad = _first_invalid_utf8(path, skip=3)
        if bad is not None:
            raise FileProblem(_bom_utf8_message(path, bad))
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        _check_utf16(path)
        return "utf-16"
    nul = head.find(b"\x00")
    if nul >= 0:
        raise FileProblem(
            f"The file contains NUL bytes (first at byte {nul}): it is binary, or UTF-16 "
            "without a byte-order mark. Save it as 'CSV UTF-8' and upload it again."
        )
    _check_not_binary(head)
    if _first_invalid_utf8(path, skip=0) is None:
        return "utf-8"
    _refuse_almost_utf8(path)
    return _single_byte_encoding(path)


def _check_not_binary(sample: bytes) -> None:
    controls = sum(1 for b in sample[:8192] if b < 32 and b not in (9, 10, 13))
    if controls > 8 or (sample and controls * 100 > len(sample[:8192])):
        raise FileProblem(
            "The file is not text (binary data): upload a CSV (comma, semicolon or tab "
            "separated) or an XLSX file."
        )


def _first_invalid_utf8(path: Path, *, skip: int) -> int | None:
    """The offset of the first byte that is not valid UTF-8 (the file's size when it ends in
    the middle of a character), or None for valid UTF-8. Refuses NUL bytes anywhere."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    bad: int | None = None
    end = skip
    for offset, block in _blocks(path, skip=skip):
        nul = block.find(b"\x00")
        if nul >= 0:
            raise FileProblem(
                f"The file contains NUL bytes (first at byte {offset + nul}): it is "
                "damaged or binary. Save it as 'CSV UTF-8' and upload it again."
            )
        if bad is None:  # past the first bad byte only the NUL check goes on
            pending = len(decoder.getstate()[0])  # bytes of a character begun in the last block
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                bad = offset - pending + exc.start
        end = offset + len(block)
    limits = _LIMITS.get()
    if bad is None and not (limits and limits.cut_short):
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            bad = end - len(decoder.getstate()[0])
    return bad


def _bom_utf8_message(path: Path, bad: int) -> str:
    with path.open("rb") as fh:
        fh.seek(bad)
        rest = fh.read(4)
    if re.fullmatch(rb"[\xc2-\xf4][\x80-\xbf]{0,2}", rest):  # a character begun, then the end
        return (
            "The file ends in the middle of a UTF-8 character: it was probably cut off. "
            "Nothing was imported; upload the complete file."
        )
    return (
        "The file starts with a UTF-8 byte-order mark but is not valid UTF-8 "
        f"(near byte {bad}, line {_line_of(path, bad)}). Save it as 'CSV UTF-8' and upload it "
        "again."
    )


def _line_of(path: Path, offset: int) -> int:
    """The 1-based line number of a byte offset."""
    lines = 1
    for start, block in _blocks(path):
        lines += block.count(b"\n", 0, max(0, offset - start))
        if start + len(block) >= offset:
            break
    return lines


# A valid multi-byte UTF-8 character. In a Windows-1252 file these pairs are an accented capital
# followed by a symbol ("Ã©"), which real text almost never has: finding one means UTF-8.
_UTF8_CHAR = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}"
    rb"|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)
# The start of a UTF-8 character cut off by the end of the file. A lone \xe0-\xef is left out:
# in Windows-1252 that is a final "é" or "à", as common as a cut-off character.
_UTF8_CUT_AT_END = re.compile(
    rb"(?:[\xc2-\xdf]|[\xe0-\xef][\x80-\xbf]|[\xf0-\xf4][\x80-\xbf]{1,2})\Z"
)


@dataclass
class _Utf8Evidence:
    utf8_line: int = 0  # first line holding a valid multi-byte UTF-8 character
    bad_line: int = 0  # first line that is not valid UTF-8
    bad_byte: int = 0
    last_line: bytes = b""
    last_number: int = 0


def _utf8_evidence(path: Path) -> _Utf8Evidence:
    seen = _Utf8Evidence()
    budget = _byte_budget()
    offset = 0
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            seen.last_line, seen.last_number = line, number
            if not line.isascii():
                try:
                    line.decode("utf-8")
                    seen.utf8_line = seen.utf8_line or number
                except UnicodeDecodeError as exc:
                    if not seen.bad_line:
                        seen.bad_line, seen.bad_byte = number, offset + exc.start
                    if not seen.utf8_line and _UTF8_CHAR.search(line):
                        seen.utf8_line = number
            offset += len(line)
            if budget is not None and offset >= budget:
                _LIMITS.get().cut_short = True
                seen.last_line = b""  # the end of the file was not seen
                break
    return seen


def _refuse_almost_utf8(path: Path) -> None:
    """Refuse a file that is not valid UTF-8 but holds UTF-8 characters, or ends in a cut-off
    one; a file without any is left to be read as Windows-1252."""
    seen = _utf8_evidence(path)
    cut = _UTF8_CUT_AT_END.search(seen.last_line)
    again = "Save it as 'CSV UTF-8' and upload it again; nothing was imported."
    if cut:
        raise FileProblem(
            f"The file ends in the middle of a UTF-8 character (line {seen.last_number}): it "
            "was probably cut off. Upload the complete file; nothing was imported."
        )
    if not seen.utf8_line:
        return
    if seen.utf8_line != seen.bad_line:
        raise FileProblem(
            f"The file mixes encodings: line {seen.utf8_line} is UTF-8 but line "
            f"{seen.bad_line} is not (byte {seen.bad_byte}). Open it in a spreadsheet, save "
            "it as 'CSV UTF-8' and upload it again; nothing was imported."
        )
    raise FileProblem(
        f"Line {seen.bad_line} of the file is UTF-8 with a damaged character at byte "
        f"{seen.bad_byte}: read in another encoding every accented name would change. {again}"
    )


def _single_byte_encoding(path: Path) -> str:
    for _, block in _blocks(path):
        try:
            block.decode("cp1252")
        except UnicodeDecodeError:
            return "latin-1"
    return "cp1252"


def _check_utf16(path: Path) -> None:
    decoder = codecs.getincrementaldecoder("utf-16")()
    try:
        for _, block in _blocks(path):
            if "\x00" in decoder.decode(block):
                raise FileProblem("The file contains NUL characters: it is damaged or binary.")
        limits = _LIMITS.get()
        if not (limits and limits.cut_short):
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise FileProblem(
            "The file is UTF-16 (Excel 'Unicode text') but is damaged "
            f"({_utf16_damage(exc)}). Save it again, as 'CSV UTF-8' if you can, and upload it "
            "again; nothing was imported."
        ) from None


def _utf16_damage(exc: UnicodeDecodeError) -> str:
    if "truncated" in exc.reason:
        return "it ends in the middle of a character: an odd number of bytes, probably cut off"
    return f"an invalid character: {exc.reason}"


def _decoded_sample(head: bytes, encoding: str) -> str:
    return head.decode(encoding, errors="ignore")


def _detect_delimiter(sample: str) -> str:
    """Comma, semicolon or tab: the one that splits the header line into the most columns, with
    the first data lines agreeing. Quotes are honoured by letting csv parse each candidate."""
    lines = sample.splitlines()[:6]
    if len(sample) >= SAMPLE_BYTES - 4 and len(lines) > 1:
        lines = lines[:-1]  # the last line of the sample may be cut short
    best, best_score = ",", 0
    for delimiter in (",", ";", "\t"):
        try:
            rows = list(csv.reader(lines, delimiter=delimiter))
        except csv.Error:
            continue
        if not rows:
            continue
        width = len(rows[0])
        agreeing = sum(1 for r in rows[1:] if len(r) == width)
        score = width * 10 + agreeing if width > 1 else 0
        if score > best_score:
            best, best_score = delimiter, score
    return best


# --- parsing rows ------------------------------------------------------------------------------


def _open_text(info: SourceFile) -> io.TextIOWrapper:
    return io.TextIOWrapper(info.path.open("rb"), encoding=info.encoding, newline="")


def iter_rows(info: SourceFile) -> Iterator[tuple[int, list[str]]]:
    """(row number, values) for every row including the header (row 1); blank lines skipped.

    Row numbers are spreadsheet rows (the header is row 1), which is what operators see when
    they open the file, also when a quoted value spans several lines. A CSV is read strictly:
    a quote that is never closed, or text right after a closing quote (the sign of a quote
    closed in the wrong place, which swallowed the rows in between), raises FileProblem naming
    the line where the quoted value opened, instead of silently merging rows.
    """
    if info.kind == "xlsx":
        yield from _iter_xlsx(info)
        return
    csv.field_size_limit(MAX_FIELD_CHARS)
    with _open_text(info) as text:
        reader = csv.reader(text, delimiter=info.delimiter, strict=True)
        number = 0
        opened = 1  # the line where the row being read starts
        try:
            for row in reader:
                if row and not (len(row) == 1 and not row[0].strip()):
                    number += 1
                    yield number, row
                opened = reader.line_num + 1
        except csv.Error as exc:
            raise FileProblem(
                _csv_error_message(exc, number + 1, opened, reader.line_num)
            ) from None


def _csv_error_message(exc: csv.Error, row: int, opened: int, line: int) -> str:
    reason = str(exc)
    where = f"Row {row} (line {opened})"
    if "field larger than field limit" in reason:
        return (
            f"{where} has a value longer than {MAX_FIELD_CHARS:,} characters; the file is "
            f"probably missing a closing quote (a quoted value opens on line {opened}). "
            "Nothing was imported."
        )
    if "unexpected end of data" in reason:
        return (
            f"{where}: a quote opened on line {opened} is never closed, so every line after it "
            "would be read as one value. Close the quote (or remove it) and upload the file "
            "again; nothing was imported."
        )
    if "expected after" in reason:
        return (
            f"{where}: a quoted value that opens on line {opened} is closed on line {line} "
            "with more text right after the closing quote: a quote is probably missing, and "
            "the lines in between would be read as one value. Fix the quotes and upload the "
            "file again; nothing was imported."
        )
    return f"{where} cannot be read as CSV: {exc}. Nothing was imported."


def _iter_xlsx(info: SourceFile) -> Iterator[tuple[int, list[str]]]:
    import openpyxl  # only XLSX imports pay for loading it

    try:
        book = openpyxl.load_workbook(info.path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for broken files
        raise FileProblem(f"The XLSX file cannot be opened: {_xlsx_reason(exc)}") from None
    try:
        if not book.worksheets:
            raise FileProblem("The XLSX file has no worksheet: there is nothing to import.")
        sheet = book.worksheets[0]
        # Read-only sheets pad every row to the declared dimension (a forged A1:XFD1048576
        # makes each row 16,384 cells and adds a million empty rows): read what is there.
        sheet.reset_dimensions()
        for number, values in _xlsx_values(sheet):
            row = ["" if v is None else _cell_text(v) for v in values]
            while row and row[-1] == "":
                row.pop()
            if row:
                yield number, row
    # Sheets are parsed lazily: bad XML (a NUL as &#0;, a lone surrogate as &#xD800;) shows up
    # here. ElementTree's ParseError and lxml's XMLSyntaxError are both SyntaxErrors.
    except SyntaxError as exc:
        raise FileProblem(f"The XLSX file is damaged: {exc}. Nothing was imported.") from None
    finally:
        book.close()


def _xlsx_values(sheet) -> Iterator[tuple[int, tuple]]:
    """The sheet's rows, numbered, with openpyxl's errors on a broken part (a shared string
    that does not exist, bad XML) and out-of-range cells turned into FileProblem."""
    rows = sheet.iter_rows(values_only=True)
    number = 0
    while True:
        try:
            values = next(rows, None)
        except Exception as exc:  # input-driven: IndexError, KeyError, ValueError, ParseError
            raise FileProblem(
                f"The XLSX file is damaged near row {number + 1}: {_xlsx_reason(exc)}. Save it "
                "again from a spreadsheet, or as 'CSV UTF-8'; nothing was imported."
            ) from None
        if values is None:
            return
        number += 1
        if number > MAX_XLSX_ROWS:
            raise FileProblem(
                f"The XLSX sheet has rows beyond row {MAX_XLSX_ROWS:,}, the most a spreadsheet "
                "can hold: the file is damaged or forged. Nothing was imported."
            )
        if len(values) > MAX_XLSX_COLUMNS and any(v is not None for v in values[MAX_XLSX_COLUMNS:]):
            raise FileProblem(
                f"Row {number} of the XLSX sheet has a value beyond column {MAX_XLSX_COLUMNS:,}: "
                "a lead list never needs that many columns (the sheet is probably damaged). "
                "Nothing was imported."
            )
        yield number, values


def _xlsx_reason(exc: Exception) -> str:
    if isinstance(exc, IndexError | KeyError):
        return "a cell refers to a shared string or style that does not exist"
    return str(exc) or type(exc).__name__


def _cell_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


@dataclass
class ScanResult:
    mapping: HeaderMapping
    rows_total: int


def scan_file(info: SourceFile) -> ScanResult:
    """Parse the whole file once, before anything is written, and refuse it if any file-level
    problem shows up: no header, no data, no email column, duplicate headers, ragged rows, an
    over-long field, unreadable CSV. Returns the mapping and the number of data rows (within
    `read_limits()`, the rows read before the budget ran out: see `ReadLimits.cut_short`)."""
    rows = iter_rows(info)
    first = next(rows, None)
    if first is None:
        raise FileProblem("The file is empty.")
    _, headers = first
    mapping = map_headers(headers)
    width = len(headers)
    total = chars = 0
    ragged: list[str] = []
    ragged_count = 0
    limits = _LIMITS.get()
    for number, row in rows:
        total += 1
        if limits is not None:
            chars += sum(map(len, row))
            if limits.spent(rows=total, chars=chars):
                break
        if len(row) != width and not (len(row) < width and info.kind == "xlsx"):
            ragged_count += 1
            if len(ragged) < 5:
                ragged.append(f"row {number} has {len(row)}")
    if total == 0:
        raise FileProblem("The file has a header row but no data rows.")
    if ragged_count:
        raise FileProblem(
            f"{ragged_count} row(s) do not have the {width} columns of the header "
            f"({'; '.join(ragged)}{'; ...' if ragged_count > len(ragged) else ''}). "
            "A value probably contains an unquoted delimiter or line break. Nothing was imported."
        )
    return ScanResult(mapping=mapping, rows_total=total)
