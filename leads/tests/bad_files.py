"""A corpus of bad (and tricky but good) lead files, built at run time: small, but shaped like
what a hostile or unlucky operator uploads. Each refused file maps to a pattern of its message."""

from __future__ import annotations

import codecs
import io
import zipfile

HEADER = "Email,First Name,Last Name\n"
NAMES = ("M\u00fcller", "Ren\u00e9e", "J\u00f3zsef", "\u0141ukasz", "Fran\u00e7oise")


def rows(count: int = 5) -> str:
    return "".join(f"p{i}@acme.example,{NAMES[i % len(NAMES)]},Smith\n" for i in range(count))


def utf16_odd(bom: bytes, codec: str) -> bytes:
    return bom + (HEADER + rows()).encode(codec) + b"x"


def _refused_csv() -> dict[str, tuple[bytes, str]]:
    good = (HEADER + rows()).encode()
    cut = (HEADER + rows() + "z@acme.example,Zo\u00eb,Jos\u00e9").encode()[:-1]
    one_bad = (HEADER + "a@acme.example,M\u00fcller,Sm").encode() + b"\xffith\n"
    return {
        "utf16le_odd_length": (utf16_odd(codecs.BOM_UTF16_LE, "utf-16-le"), "odd number"),
        "utf16be_odd_length": (utf16_odd(codecs.BOM_UTF16_BE, "utf-16-be"), "odd number"),
        "utf16_without_bom": ((HEADER + rows()).encode("utf-16-le"), "NUL bytes"),
        "utf8_cut_at_the_end": (cut, "ends in the middle of a UTF-8 character"),
        "utf8_bom_cut_at_the_end": (
            codecs.BOM_UTF8 + cut,
            "ends in the middle of a UTF-8 character",
        ),
        "utf8_bad_byte_in_the_middle": (
            good[:40] + b"\xff" + good[40:],
            "mixes encodings|damaged character",
        ),
        "utf8_bad_byte_on_the_only_accented_line": (one_bad, "damaged character at byte"),
        "mixed_utf8_and_cp1252": (
            HEADER.encode()
            + "a@acme.example,Ren\u00e9e,X\n".encode()
            + "b@acme.example,Jos\u00e9,Y\n".encode("cp1252"),
            "mixes encodings: line 2 is UTF-8 but line 3",
        ),
        "unclosed_quote_in_the_header": (
            ('"Email,First Name\n' + rows()).encode(),
            "quote opened on line 1 is never closed",
        ),
        "unclosed_quote_in_the_middle": (
            (HEADER + rows(3) + 'x@acme.example,"Ann,Smith\n' + rows(4)).encode(),
            "quote opened on line 5 is never closed",
        ),
        "unclosed_quote_closed_later_by_another": (
            (
                HEADER
                + 'x@acme.example,"Ann,Smith\n'
                + rows(3)
                + 'y@acme.example,"Bob" Jr,Smith\n'
                + rows(2)
            ).encode(),
            r"Row 2 \(line 2\): a quoted value that opens on line 2 is closed on line 6",
        ),
        "unclosed_quote_on_the_last_row": (
            (HEADER + rows(4) + 'z@acme.example,Zed,"Smith\n').encode(),
            "quote opened on line 6 is never closed",
        ),
        "nul_byte_in_the_middle": (good[:50] + b"\x00" + good[50:], "NUL bytes"),
        "empty": (b"", "The file is empty"),
        "only_a_bom": (codecs.BOM_UTF8 + b"\r\n", "The file is empty"),
        "header_only": (HEADER.encode(), "header row but no data rows"),
        "huge_field": (
            (HEADER + 'a@acme.example,"' + "x" * 200_000 + '",Smith\n').encode(),
            "longer than 100,000 characters",
        ),
        "ragged_rows": ((HEADER + "a@acme.example,Ann\n").encode(), "do not have the 3 columns"),
    }


# --- XLSX, written part by part ---------------------------------------------------------------

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG = "http://schemas.openxmlformats.org/package/2006/relationships"
_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml"


def _cell(ref: str, value: str | int) -> str:
    if isinstance(value, int):  # an index into the shared strings
        return f'<c r="{ref}" t="s"><v>{value}</v></c>'
    return f'<c r="{ref}" t="inlineStr"><is><t>{value}</t></is></c>'


def sheet_xml(
    table: list[list[str | int]], *, dimension: str = "", extra_rows: str = "", pad: int = 0
) -> str:
    body = "".join(
        f'<row r="{r}">'
        + "".join(_cell(f"{chr(65 + c)}{r}", v) for c, v in enumerate(values))
        + "</row>"
        for r, values in enumerate(table, start=1)
    )
    dim = f'<dimension ref="{dimension}"/>' if dimension else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{_MAIN}">{dim}'
        f"<sheetData>{body}{extra_rows}</sheetData>{' ' * pad}</worksheet>"
    )


def xlsx(sheet: str | None, *, shared: list[str] | None = None, shared_xml: str = "") -> bytes:
    """A minimal workbook: one sheet (none if `sheet` is None), optional shared strings."""
    has_shared = shared is not None or bool(shared_xml)
    overrides = f'<Override PartName="/xl/workbook.xml" ContentType="{_CT}.sheet.main+xml"/>'
    rels = ""
    sheets = ""
    if sheet is not None:
        overrides += (
            f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{_CT}.worksheet+xml"/>'
        )
        rels += f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
        sheets = '<sheet name="Leads" sheetId="1" r:id="rId1"/>'
    if has_shared:
        overrides += (
            f'<Override PartName="/xl/sharedStrings.xml" ContentType="{_CT}.sharedStrings+xml"/>'
        )
        rels += f'<Relationship Id="rId2" Type="{_REL}/sharedStrings" Target="sharedStrings.xml"/>'
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
            'package/2006/content-types"><Default Extension="rels" ContentType="application/'
            'vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
            f'ContentType="application/xml"/>{overrides}</Types>'
        ),
        "_rels/.rels": (
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{_PKG}"><Relationship '
            f'Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{_MAIN}" xmlns:r="{_REL}">'
            f"<sheets>{sheets}</sheets></workbook>"
        ),
        "xl/_rels/workbook.xml.rels": (
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{_PKG}">{rels}'
            "</Relationships>"
        ),
    }
    if sheet is not None:
        parts["xl/worksheets/sheet1.xml"] = sheet
    if has_shared:
        parts["xl/sharedStrings.xml"] = shared_xml or (
            f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{_MAIN}">'
            + "".join(f"<si><t>{s}</t></si>" for s in shared or [])
            + "</sst>"
        )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
    return out.getvalue()


LEADS_TABLE: list[list[str | int]] = [
    ["Email", "First Name"],
    ["ann@acme.example", "M\u00fcller"],
    ["bob@acme.example", "Ren\u00e9e"],
]


def _refused_xlsx() -> dict[str, tuple[bytes, str]]:
    many = 20_000
    return {
        "xlsx_without_a_worksheet": (xlsx(None), "no worksheet"),
        "xlsx_missing_shared_string": (
            xlsx(sheet_xml([[0, 1], [2, 99]]), shared=["Email", "First Name", "a@acme.example"]),
            "shared string or style that does not exist",
        ),
        "xlsx_shared_string_bomb": (
            xlsx(sheet_xml(LEADS_TABLE), shared=["x"] * many),
            "shared-string bomb",
        ),
        "xlsx_zip_bomb": (xlsx(sheet_xml(LEADS_TABLE, pad=9 * 1024 * 1024)), "zip bomb"),
        "xlsx_value_far_to_the_right": (
            xlsx(sheet_xml(LEADS_TABLE, extra_rows='<row r="4">' + _cell("XFD4", "x") + "</row>")),
            "beyond column 1,000",
        ),
        "xlsx_row_past_the_last_row": (
            xlsx(
                sheet_xml(
                    LEADS_TABLE, extra_rows='<row r="1048577">' + _cell("A1048577", "x") + "</row>"
                )
            ),
            "beyond row 1,048,576",
        ),
        "xlsx_broken_zip": (b"PK\x03\x04" + b"\x00" * 300, "damaged XLSX"),
    }


def refused() -> dict[str, tuple[bytes, str, str]]:
    """name -> (content, file suffix, message pattern) for every file that must be refused."""
    out = {name: (data, ".csv", msg) for name, (data, msg) in _refused_csv().items()}
    out.update({name: (data, ".xlsx", msg) for name, (data, msg) in _refused_xlsx().items()})
    return out


def accepted() -> dict[str, tuple[bytes, str, list[tuple[str, str]]]]:
    """name -> (content, suffix, the (email, first name) pairs an import must store exactly)."""
    text = HEADER + rows()
    expected = [(f"p{i}@acme.example", NAMES[i % len(NAMES)]) for i in range(5)]
    latin = HEADER + "".join(f"p{i}@acme.example,{n},Smith\n" for i, n in enumerate(NAMES[:3]))
    quoted = (
        HEADER + 'a@acme.example,Ann "The Boss",Smith\n'
        'b@acme.example,"Bob, Jr","Smith\nsecond line"\nc@acme.example,5" Screen,Lee\n'
    )
    return {
        "utf8": (text.encode(), ".csv", expected),
        "utf8_bom": (codecs.BOM_UTF8 + text.encode(), ".csv", expected),
        "utf16le_bom": (codecs.BOM_UTF16_LE + text.encode("utf-16-le"), ".csv", expected),
        "utf16be_bom": (codecs.BOM_UTF16_BE + text.encode("utf-16-be"), ".csv", expected),
        "cp1252_without_utf8": (
            latin.encode("cp1252"),
            ".csv",
            [(f"p{i}@acme.example", n) for i, n in enumerate(NAMES[:3])],
        ),
        "quotes_inside_unquoted_fields_and_multiline_values": (
            quoted.encode(),
            ".csv",
            [
                ("a@acme.example", 'Ann "The Boss"'),
                ("b@acme.example", "Bob, Jr"),
                ("c@acme.example", '5" Screen'),
            ],
        ),
        "xlsx_with_forged_dimension": (
            xlsx(sheet_xml(LEADS_TABLE, dimension="A1:XFD1048576")),
            ".xlsx",
            [("ann@acme.example", "M\u00fcller"), ("bob@acme.example", "Ren\u00e9e")],
        ),
        "xlsx_shared_strings": (
            xlsx(
                sheet_xml([[0, 1], [2, 3]]),
                shared=["Email", "First Name", "ann@acme.example", "\u0141ukasz"],
            ),
            ".xlsx",
            [("ann@acme.example", "\u0141ukasz")],
        ),
    }
