"""Reading lead files: encoding and delimiter detection, XLSX, header mapping, file-level checks.

`inspect_file()` reads the whole file once (hash, encoding, binary/NUL checks), `scan_file()`
parses it once more to find every file-level problem and count the rows before anything is
written, and `iter_rows()` streams the rows for the import itself. Memory stays flat: nothing
holds more than one row (XLSX: openpyxl's read-only mode) plus small buffers.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ventures.services import DomainError

# A field longer than this is a broken file (typically a missing closing quote), not data.
MAX_FIELD_CHARS = 100_000
READ_BLOCK = 1 << 20
SAMPLE_BYTES = 64 * 1024


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
        return info
    info.encoding = _detect_encoding(path, head)
    info.delimiter = _detect_delimiter(_decoded_sample(head, info.encoding))
    return info


def _detect_encoding(path: Path, head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        _check_not_binary(head[3:])
        _check_utf8(path, skip=3)
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
    if _check_utf8(path, skip=0, strict=False):
        return "utf-8"
    return _single_byte_encoding(path)


def _check_not_binary(sample: bytes) -> None:
    controls = sum(1 for b in sample[:8192] if b < 32 and b not in (9, 10, 13))
    if controls > 8 or (sample and controls * 100 > len(sample[:8192])):
        raise FileProblem(
            "The file is not text (binary data): upload a CSV (comma, semicolon or tab "
            "separated) or an XLSX file."
        )


def _check_utf8(path: Path, *, skip: int, strict: bool = True) -> bool:
    """Is the whole file valid UTF-8? Also refuses NUL bytes anywhere and files that mix UTF-8
    with another encoding (some lines valid multi-byte UTF-8, others not)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as fh:
        fh.read(skip)
        offset = skip
        while block := fh.read(READ_BLOCK):
            nul = block.find(b"\x00")
            if nul >= 0:
                raise FileProblem(
                    f"The file contains NUL bytes (first at byte {offset + nul}): it is "
                    "damaged or binary. Save it as 'CSV UTF-8' and upload it again."
                )
            try:
                decoder.decode(block)
            except UnicodeDecodeError:
                if strict:
                    raise FileProblem(
                        "The file starts with a UTF-8 byte-order mark but is not valid UTF-8 "
                        f"(near byte {offset}). Save it as 'CSV UTF-8' and upload it again."
                    ) from None
                _refuse_mixed_encodings(path)
                return False
            offset += len(block)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            if strict:
                raise FileProblem("The file ends in the middle of a UTF-8 character.") from None
            return False
    return True


def _refuse_mixed_encodings(path: Path) -> None:
    """A file that is not UTF-8 is read as Windows-1252, unless some of its lines are valid
    multi-byte UTF-8: then it mixes encodings and any choice would garble part of it."""
    utf8_line = bad_line = 0
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if line.isascii():
                continue
            try:
                line.decode("utf-8")
                utf8_line = utf8_line or number
            except UnicodeDecodeError:
                bad_line = bad_line or number
            if utf8_line and bad_line:
                raise FileProblem(
                    f"The file mixes encodings: line {utf8_line} is UTF-8 but line {bad_line} "
                    "is not. Open it in a spreadsheet, save it as 'CSV UTF-8' and upload it "
                    "again."
                )


def _single_byte_encoding(path: Path) -> str:
    with path.open("rb") as fh:
        while block := fh.read(READ_BLOCK):
            try:
                block.decode("cp1252")
            except UnicodeDecodeError:
                return "latin-1"
    return "cp1252"


def _check_utf16(path: Path) -> None:
    decoder = codecs.getincrementaldecoder("utf-16")()
    with path.open("rb") as fh:
        while block := fh.read(READ_BLOCK):
            try:
                text = decoder.decode(block)
            except UnicodeDecodeError:
                raise FileProblem(
                    "The file starts like UTF-16 (Excel 'Unicode text') but is damaged."
                ) from None
            if "\x00" in text:
                raise FileProblem("The file contains NUL characters: it is damaged or binary.")


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
    they open the file, also when a quoted value spans several lines.
    """
    if info.kind == "xlsx":
        yield from _iter_xlsx(info)
        return
    csv.field_size_limit(MAX_FIELD_CHARS)
    with _open_text(info) as text:
        reader = csv.reader(text, delimiter=info.delimiter, strict=False)
        number = 0
        try:
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                number += 1
                yield number, row
        except csv.Error as exc:
            raise FileProblem(_csv_error_message(exc, number + 1, reader.line_num)) from None


def _csv_error_message(exc: csv.Error, row: int, line: int) -> str:
    if "field larger than field limit" in str(exc):
        return (
            f"Row {row} (line {line}) has a value longer than {MAX_FIELD_CHARS:,} characters; "
            "the file is probably missing a closing quote. Nothing was imported."
        )
    return f"Row {row} (line {line}) cannot be read as CSV: {exc}. Nothing was imported."


def _iter_xlsx(info: SourceFile) -> Iterator[tuple[int, list[str]]]:
    import openpyxl  # only XLSX imports pay for loading it

    try:
        book = openpyxl.load_workbook(info.path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for broken files
        raise FileProblem(f"The XLSX file cannot be opened: {exc}") from None
    try:
        sheet = book.worksheets[0]
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
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
    over-long field, unreadable CSV. Returns the mapping and the number of data rows."""
    rows = iter_rows(info)
    first = next(rows, None)
    if first is None:
        raise FileProblem("The file is empty.")
    _, headers = first
    mapping = map_headers(headers)
    width = len(headers)
    total = 0
    ragged: list[str] = []
    ragged_count = 0
    for number, row in rows:
        total += 1
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
