"""The report as a PDF: its HTML laid out by WeasyPrint, offline, with the print stylesheet.

`html_to_pdf(html)` returns the PDF's bytes. WeasyPrint never reaches the network or the disk
for a report: its URL fetcher answers `data:` URLs and refuses every other one (http, https,
file, ...), logging each refusal on the `reporting.pdf` logger; what it refused is simply left
out of the PDF (an `<img>` shows nothing), and the rest renders. So a report's HTML must be
self-contained: charts inline as SVG (`reporting.charts`), styles in a `<style>` element.

`print_stylesheet()` is that style (`static/reporting/report.css`): A4, "page N of M" in the
footer, headings kept with their tables, header rows repeated on every page. The HTML report
inlines it, so the downloaded HTML file prints like the PDF.

WeasyPrint loads Debian's Pango and HarfBuzz through cffi when it is imported; without them (or
without WeasyPrint) `html_to_pdf` raises `ReportRenderError` saying what to install
(`make system-deps-report`), never an ImportError or OSError traceback.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
from pathlib import Path
from types import ModuleType

logger = logging.getLogger(__name__)

STYLESHEET = Path(__file__).resolve().parent / "static" / "reporting" / "report.css"
INSTALL_HINT = (
    "install WeasyPrint (requirements.txt) and Debian's libpango-1.0-0, libpangoft2-1.0-0, "
    "libharfbuzz-subset0 and fonts-dejavu-core: `make system-deps-report`"
)


# Properties of SVG shapes and text that HTML's CSS does not know (see _SvgStyleNoise).
SVG_PROPERTIES = (
    "fill", "stroke", "text-anchor", "clip-", "stop-", "marker", "dominant-baseline",
    "paint-order", "shape-rendering", "vector-effect",
)  # fmt: skip
_IGNORED_PROPERTY = re.compile(r"Ignored `(?P<name>[a-z-]+): .*, unknown property\.$")


class ReportRenderError(Exception):
    """A report could not be rendered; the message says why and what to do."""


@functools.cache
def print_stylesheet() -> str:
    """The report's stylesheet (screen and print), to inline in a `<style>` element."""
    return STYLESHEET.read_text(encoding="utf-8")


def html_to_pdf(html: str, *, base_url: str | None = None) -> bytes:
    """The PDF of a self-contained HTML document.

    Only `data:` URLs are fetched: the fetcher refuses every other URL (network, `file:`,
    relative ones resolved against `base_url`, which only serves to make links absolute), so
    rendering a report never touches the network. Raises `ReportRenderError` when WeasyPrint
    or its system libraries are missing, or when WeasyPrint fails on the document.
    """
    weasyprint = _weasyprint()
    fetcher = _offline_fetcher_class()(allowed_protocols=["data"])
    try:
        return weasyprint.HTML(string=html, base_url=base_url, url_fetcher=fetcher).write_pdf()
    except Exception as exc:  # WeasyPrint's failures have no common base class
        raise ReportRenderError(f"WeasyPrint could not render the report: {exc}") from exc


def _weasyprint() -> ModuleType:
    try:
        module = importlib.import_module("weasyprint")
    except ImportError as exc:
        raise ReportRenderError(f"PDF reports need WeasyPrint ({exc}): {INSTALL_HINT}.") from None
    except OSError as exc:  # cffi could not load a shared library (Pango, GObject, HarfBuzz)
        raise ReportRenderError(
            f"PDF reports need Debian's Pango libraries ({exc}): {INSTALL_HINT}."
        ) from None
    _quiet_svg_styles()
    return module


class _SvgStyleNoise(logging.Filter):
    """Drops WeasyPrint's "unknown property" warning for SVG painting properties.

    WeasyPrint reads every element's `style` attribute as HTML CSS, so each inline chart (whose
    shapes matplotlib styles with `fill`, `stroke`, `text-anchor`...) would log dozens of such
    warnings, although its SVG renderer then paints them right. Any other warning stays.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # The message, not msg and args: the project's record factory has already merged them.
        match = _IGNORED_PROPERTY.match(record.getMessage())
        return not (match and match["name"].startswith(SVG_PROPERTIES))


@functools.cache
def _quiet_svg_styles() -> None:
    logging.getLogger("weasyprint").addFilter(_SvgStyleNoise())


@functools.cache
def _offline_fetcher_class() -> type:
    """A WeasyPrint URL fetcher that serves `data:` URLs and refuses everything else."""
    from weasyprint.urls import URLFetcher

    class OfflineURLFetcher(URLFetcher):
        def fetch(self, url: str, headers=None):
            if url[:5].lower() != "data:":
                logger.warning("PDF report: refused to fetch %s (reports render offline)", url)
                raise ValueError(f"refused to fetch {url}: the report renders offline")
            return super().fetch(url, headers)

    return OfflineURLFetcher
