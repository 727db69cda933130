"""The report's charts, drawn on the server with matplotlib and returned as SVG text.

Each function takes plain Python data (never models) and returns one SVG document as a `str`
that starts at `<svg` (no XML declaration or doctype), so it can be inlined in an HTML page, in
the self-contained HTML file and in the HTML that WeasyPrint turns into the PDF.

- **Nothing needs a display or the network.** The figures are `matplotlib.figure.Figure`
  objects drawn by the Agg backend (set explicitly), never pyplot's, so none is registered
  anywhere and none outlives its call. Text is DejaVu Sans, the font that ships inside
  matplotlib (and, for WeasyPrint and browsers, Debian's fonts-dejavu-core); nothing is fetched.
- **Same data, same bytes**: a fixed `svg.hashsalt` and no date in the metadata, so a proof
  bundle's checksums can be reproduced. Text stays text (`svg.fonttype: none`), which keeps a
  chart to a few kilobytes, and titles and labels are printed as given (no mathtext: a `$` in a
  campaign name is a dollar sign).
- **Readable in print**: 6.4 x 3.2 inches (460 pt, within an A4 page's text width) at 9 pt,
  with the Okabe-Ito palette, which colour-blind readers can tell apart. The usual series keep
  their colour in every chart (sent blue, replied green, bounced vermillion); lines also differ
  by marker, and bars carry their values, so nothing depends on colour alone.
- **No data yet is a chart too**: no points, no series, or nothing but zeros gives the titled
  frame with "No data yet" in it, never an error.
- **Bad shapes are the caller's bug**: a series whose length differs from the days or labels
  raises `ValueError` naming it.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import io
import re
import textwrap
import threading
from collections.abc import Callable, Iterator, Sequence

import matplotlib

matplotlib.use("Agg")  # chosen explicitly: nothing here needs a display

from matplotlib import dates as mdates
from matplotlib import rc_context
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator, StrMethodFormatter

# Okabe & Ito (2008), "Color Universal Design": distinguishable with any colour vision.
BLUE, ORANGE, GREEN, VERMILLION = "#0072B2", "#E69F00", "#009E73", "#D55E00"
SKY, PURPLE, YELLOW, BLACK = "#56B4E9", "#CC79A7", "#F0E442", "#000000"
PALETTE = (BLUE, ORANGE, GREEN, VERMILLION, SKY, PURPLE, BLACK, YELLOW)
# The series every report draws keep one colour across charts.
SERIES_COLOURS = {
    "sent": BLUE,
    "sends": BLUE,
    "delivered": SKY,
    "replied": GREEN,
    "replies": GREEN,
    "positive": ORANGE,
    "bounced": VERMILLION,
    "bounces": VERMILLION,
}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

# An element's id, and the two ways matplotlib's SVG refers to one: href="#x" and url(#x).
_ID = re.compile(r' id="(?P<id>[^"]+)"')
_REFERENCE = re.compile(r'(?:href="|url\()#([^")]+)')
_REFERENCE_SITE = re.compile(r'(?P<lead>href="|url\()#(?P<id>[^")]+)')

WIDTH_IN, HEIGHT_IN = 6.4, 3.2
NO_DATA = "No data yet"
# Markers on a timeline only while there is room for them.
MAX_MARKED_DAYS = 45

_DRAWING = threading.Lock()
_RC = {
    "svg.hashsalt": "aicmo-report",
    "svg.fonttype": "none",
    "svg.id": None,
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#555555",
    "axes.grid": True,
    "axes.grid.axis": "y",
    "axes.axisbelow": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "text.parse_math": False,
    "path.simplify": True,
}


def _house_style(chart: Callable[..., str]) -> Callable[..., str]:
    """Draws `chart` under the report's style, which matplotlib reads both while building
    artists and while writing the SVG."""

    @functools.wraps(chart)
    def drawn(*args, **kwargs) -> str:
        # rcParams are global: one chart at a time, so threads of a server do not mix styles.
        with _DRAWING, rc_context(_RC):
            return chart(*args, **kwargs)

    return drawn


@_house_style
def timeline_chart(days: list[datetime.date], series: dict[str, list[int]], *, title: str) -> str:
    """Daily counts (sends, replies, bounces...) as one line per series over `days`."""
    _check_lengths(series, len(days), "days")
    if _empty(days, series):
        return _no_data(title)
    fig, ax = _figure(title)
    marker = len(days) <= MAX_MARKED_DAYS
    handles = []
    for (_name, values), colour, shape in _styled(series):
        (line,) = ax.plot(
            days, values, color=colour, linewidth=1.6,
            marker=shape if marker else None, markersize=3.5,
        )  # fmt: skip
        handles.append(line)
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=8))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b" if _one_year(days) else "%b %Y"))
    if len(days) == 1:  # one day is a point; give it a day either side
        ax.set_xlim(days[0] - datetime.timedelta(days=1), days[0] + datetime.timedelta(days=1))
    _finish(ax, handles, series)
    return _svg(fig)


@_house_style
def steps_chart(labels: list[str], series: dict[str, list[int]], *, title: str) -> str:
    """Grouped bars per sequence step: one bar per series (sent, replied, bounced) per label."""
    _check_lengths(series, len(labels), "labels")
    if _empty(labels, series):
        return _no_data(title)
    fig, ax = _figure(title)
    width = 0.8 / len(series)
    handles = []
    for index, ((_name, values), colour, _shape) in enumerate(_styled(series)):
        offset = (index - (len(series) - 1) / 2) * width
        bars = ax.bar(
            [x + offset for x in range(len(labels))], values, width=width * 0.95, color=colour
        )
        handles.append(bars)
        if len(labels) * len(series) <= 24:  # values on the bars while they fit
            ax.bar_label(bars, fontsize=7, padding=1.5)
    ax.set_xticks(range(len(labels)), [_wrap(label, 16) for label in labels])
    ax.tick_params(axis="x", length=0)
    _finish(ax, handles, series)
    return _svg(fig)


@_house_style
def funnel_chart(stages: list[tuple[str, int]], *, title: str) -> str:
    """A funnel as horizontal bars, first stage on top, each labelled with its count and its
    share of the first stage."""
    values = [count for _name, count in stages]
    if not stages or not any(values):
        return _no_data(title)
    height = max(HEIGHT_IN, 0.9 + 0.32 * len(stages))
    fig, ax = _figure(title, height=height)
    rows = range(len(stages))
    bars = ax.barh(rows, values, height=0.7, color=BLUE)
    first = values[0]
    ax.bar_label(
        bars,
        labels=[f"{v:,}" + (f" ({v / first:.0%})" if first and i else "") for i, v in enumerate(values)],
        fontsize=8, padding=3,
    )  # fmt: skip
    ax.set_yticks(rows, [_wrap(name, 24) for name, _count in stages])
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)
    ax.grid(axis="x", visible=True)
    ax.tick_params(axis="y", length=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_xlim(0, max(values) * 1.22)  # room for the labels right of the longest bar
    fig.subplots_adjust(left=0.24)
    return _svg(fig)


def _check_lengths(series: dict[str, list[int]], expected: int, what: str) -> None:
    for name, values in series.items():
        if len(values) != expected:
            raise ValueError(
                f"series {name!r} has {len(values)} values for {expected} {what}; "
                "give one value per point"
            )


def _empty(points: Sequence, series: dict[str, list[int]]) -> bool:
    return not points or not series or not any(any(values) for values in series.values())


def _figure(title: str, *, height: float = HEIGHT_IN):
    fig = Figure(figsize=(WIDTH_IN, height))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title, pad=8)
    return fig, ax


def _styled(series: dict[str, list[int]]) -> Iterator[tuple[tuple[str, list[int]], str, str]]:
    """Each series with its colour (a usual series' own, else the next unused) and marker."""
    spare = [c for c in PALETTE if c not in {SERIES_COLOURS.get(n.lower()) for n in series}]
    for index, item in enumerate(series.items()):
        colour = SERIES_COLOURS.get(item[0].lower()) or (spare.pop(0) if spare else BLACK)
        yield item, colour, MARKERS[index % len(MARKERS)]


def _finish(ax, handles: list[Artist], series: dict[str, list[int]]) -> None:
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=6, steps=[1, 2, 5, 10]))
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_ylim(bottom=0)
    ax.margins(y=0.12)
    # Handles and labels given explicitly: a name starting with "_" is shown like any other.
    ax.legend(handles, list(series), loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.figure.subplots_adjust(left=0.09, right=0.82, bottom=0.16, top=0.88)


def _no_data(title: str) -> str:
    fig, ax = _figure(title)
    ax.set_axis_off()
    ax.text(
        0.5, 0.5, NO_DATA, transform=ax.transAxes, ha="center", va="center",
        fontsize=13, color="#666666",
    )  # fmt: skip
    ax.add_patch(
        Rectangle(
            (0, 0), 1, 1, transform=ax.transAxes, fill=False, edgecolor="#bbbbbb",
            linestyle="--", linewidth=0.8,
        )
    )  # fmt: skip
    return _svg(fig)


def _one_year(days: list[datetime.date]) -> bool:
    return (max(days) - min(days)).days <= 366


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    try:
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    finally:
        fig.clear()
    text = buffer.getvalue()
    return _own_ids(text[text.index("<svg") :])


def _own_ids(svg: str) -> str:
    """The SVG with ids no other chart on the page shares: matplotlib numbers its groups
    (`line2d_1`...) afresh in every figure, and a page holds several charts. Ids nothing refers
    to are dropped; the others get a prefix made from the chart's own content, so the same
    chart still gives the same bytes."""
    referenced = set(_REFERENCE.findall(svg))
    prefix = "c" + hashlib.sha256(svg.encode()).hexdigest()[:8] + "-"

    def own(match: re.Match) -> str:
        name = match["id"]
        return f' id="{prefix}{name}"' if name in referenced else ""

    svg = _ID.sub(own, svg)
    return _REFERENCE_SITE.sub(lambda m: f"{m['lead']}#{prefix}{m['id']}", svg)
