"""The PDF report, checked as a reader sees it: WeasyPrint renders a realistic report (an inline
chart, a table longer than a page), Poppler turns the PDF into PNG pages and text, and the
pages must be A4, numbered "page N of M", not blank, with the table's header on every page.
Nothing is fetched from the network on the way.

The PNGs are kept in var/test-artifacts/report-pdf-<database>/ (CI keeps var/) for a person to look at.
"""

from __future__ import annotations

import base64
import datetime
import io
import logging
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.db import connection
from PIL import Image, ImageStat

from reporting import pdf
from reporting.charts import steps_chart, timeline_chart
from reporting.pdf import ReportRenderError, html_to_pdf, print_stylesheet

REPO = Path(__file__).resolve().parents[2]
# One directory per database: `make test` runs the SQLite and PostgreSQL suites at once.
ARTIFACTS = REPO / "var" / "test-artifacts" / f"report-pdf-{connection.vendor}"
TITLE = "Campaign report: Spring outreach 2026"
HEADER = "Lead email"
ROWS = 160  # about four A4 pages of table

pytestmark = pytest.mark.skipif(
    shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None,
    reason="needs Debian's poppler-utils: make system-deps",
)


def _png_data_url() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 12), "#009E73").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def report_html(*, extra: str = "") -> str:
    days = [datetime.date(2026, 11, 2) + datetime.timedelta(days=i) for i in range(28)]
    timeline = timeline_chart(
        days,
        {"sent": [120 + (i * 37) % 90 for i in range(28)], "replied": [(i * 7) % 11 for i in range(28)],
         "bounced": [(i * 5) % 4 for i in range(28)]},
        title="Daily sends, replies and bounces",
    )  # fmt: skip
    steps = steps_chart(
        ["Step 1: intro", "Step 2: follow-up", "Step 3: last note"],
        {"sent": [1200, 950, 700], "replied": [60, 41, 12], "bounced": [20, 4, 1]},
        title="Sequence steps",
    )
    rows = "\n".join(
        f"<tr><td>lead{i:04}@client-{i % 17}.example</td><td>list-{i % 3}</td>"
        f"<td class='num'>{i % 4}</td><td>{('replied', 'no reply', 'bounced')[i % 3]}</td></tr>"
        for i in range(ROWS)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{TITLE}</title>
<style>{print_stylesheet()}</style></head>
<body>
<h1>{TITLE}</h1>
<p class="muted">Venture Acme Growth · campaign spring-2026 · generated 3 December 2026</p>
<h2>Summary</h2>
<table><thead><tr><th>Figure</th><th class="num">Value</th></tr></thead>
<tbody><tr><td>Sent</td><td class="num">2,850</td></tr>
<tr><td>Replied</td><td class="num">113</td></tr></tbody></table>
<figure>{timeline}<figcaption>Daily activity, UTC days.</figcaption></figure>
<figure>{steps}</figure>
<p>Logo: <img alt="logo" src="{_png_data_url()}"></p>
{extra}
<h2>Per-lead outcomes</h2>
<table><thead><tr><th>{HEADER}</th><th>Source list</th><th class="num">Steps</th><th>Outcome</th></tr></thead>
<tbody>{rows}</tbody></table>
</body></html>"""


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"the PDF renderer opened a network connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict:
    """The realistic report rendered once: its PDF, its PNG pages and its text per page."""
    out = tmp_path_factory.mktemp("report-pdf")
    data = html_to_pdf(report_html())
    (out / "report.pdf").write_bytes(data)
    subprocess.run(
        ["pdftoppm", "-r", "50", "-png", str(out / "report.pdf"), str(out / "page")],
        check=True, timeout=120,
    )  # fmt: skip
    pages = sorted(out.glob("page-*.png"))
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    for page in pages:
        shutil.copy(page, ARTIFACTS / page.name)
    shutil.copy(out / "report.pdf", ARTIFACTS / "report.pdf")
    texts = [_pdftotext(out / "report.pdf", page=n) for n in range(1, len(pages) + 1)]
    return {"pdf": data, "pages": pages, "texts": texts}


def _pdftotext(path: Path, *, page: int) -> str:
    result = subprocess.run(
        ["pdftotext", "-layout", "-f", str(page), "-l", str(page), str(path), "-"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return result.stdout


def test_pdf_is_a_pdf_of_several_pages(rendered):
    assert rendered["pdf"].startswith(b"%PDF-")
    assert len(rendered["pages"]) > 1


def test_pages_are_a4_portrait(rendered):
    with Image.open(rendered["pages"][0]) as image:
        width, height = image.size
    # A4 is 210 x 297 mm: at 50 dpi, 413 x 585 pixels.
    assert abs(width - 413) <= 2
    assert abs(height - 585) <= 2


def test_every_page_has_something_printed_on_it(rendered):
    for page in rendered["pages"]:
        with Image.open(page) as image:
            variance = ImageStat.Stat(image.convert("L")).var[0]
        assert variance > 50, f"{page.name} looks blank (variance {variance:.1f})"


def test_first_page_shows_the_title_and_its_charts(rendered):
    first = rendered["texts"][0]
    assert TITLE in first
    assert "Daily sends, replies and bounces" in first  # the chart's text is text in the PDF


def test_footer_numbers_every_page_page_n_of_m(rendered):
    total = len(rendered["pages"])
    for number, text in enumerate(rendered["texts"], start=1):
        assert f"page {number} of {total}" in text
    assert "page 1 of" in rendered["texts"][0]


def test_footer_carries_the_reports_title_on_later_pages(rendered):
    assert TITLE in rendered["texts"][-1]


def test_long_table_repeats_its_header_row_on_every_page_it_spans(rendered):
    spanned = [text for text in rendered["texts"] if "@client-" in text]
    assert len(spanned) > 1
    for text in spanned:
        assert HEADER in text


def test_network_images_are_refused_and_the_pdf_still_renders(no_network, caplog):
    caplog.set_level(logging.WARNING, logger="reporting.pdf")
    html = report_html(extra='<p><img alt="tracker" src="http://example.com/x.png"></p>')
    data = html_to_pdf(html)
    assert data.startswith(b"%PDF-")
    refusals = [r.getMessage() for r in caplog.records if r.name == "reporting.pdf"]
    assert refusals == [
        "PDF report: refused to fetch http://example.com/x.png (reports render offline)"
    ]


def test_files_and_stylesheets_are_refused_too(no_network, caplog, tmp_path):
    caplog.set_level(logging.WARNING, logger="reporting.pdf")
    (tmp_path / "style.css").write_text("body { color: red }")
    html = report_html(
        extra='<link rel="stylesheet" href="style.css"><img src="file:///etc/hostname">'
        '<img src="https://example.com/pixel.gif">'
    )
    html_to_pdf(html, base_url=str(tmp_path) + "/")
    refused = {r.getMessage().split()[5] for r in caplog.records if r.name == "reporting.pdf"}
    assert refused == {
        (tmp_path / "style.css").as_uri(),
        "file:///etc/hostname",
        "https://example.com/pixel.gif",
    }


def test_data_urls_are_served(no_network, caplog):
    caplog.set_level(logging.WARNING)
    html_to_pdf(report_html())
    assert not [r for r in caplog.records if "data:" in r.getMessage()]


def test_inline_charts_log_no_style_warnings(caplog):
    caplog.set_level(logging.WARNING, logger="weasyprint")
    html_to_pdf(report_html())
    assert not [r for r in caplog.records if "unknown property" in r.getMessage()]


def test_same_html_gives_the_same_pdf(rendered):
    assert html_to_pdf(report_html()) == rendered["pdf"]


def test_missing_weasyprint_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "weasyprint", None)
    with pytest.raises(ReportRenderError, match=r"need WeasyPrint .*make system-deps-report"):
        html_to_pdf("<p>x</p>")


def test_missing_pango_libraries_are_a_clear_error(monkeypatch):
    def no_pango(name):
        raise OSError("cannot load library 'libpango-1.0-0': No such file or directory")

    monkeypatch.setattr(pdf, "importlib", SimpleNamespace(import_module=no_pango))
    with pytest.raises(ReportRenderError, match=r"Pango libraries .*libpango-1.0-0.*fonts-dejavu"):
        html_to_pdf("<p>x</p>")
