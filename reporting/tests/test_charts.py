"""The report's charts: SVG text that inlines, the same bytes for the same data, a clear chart
when there is nothing to draw, and nothing left behind."""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from reporting import charts
from reporting.charts import funnel_chart, steps_chart, timeline_chart

SVG_NS = "{http://www.w3.org/2000/svg}"
DAYS = [datetime.date(2026, 11, 1) + datetime.timedelta(days=i) for i in range(21)]
TIMELINE = {
    "sent": [100 + 7 * (i % 5) for i in range(21)],
    "replied": [i % 4 for i in range(21)],
    "bounced": [i % 3 == 0 for i in range(21)],
}
STEPS = (
    ["Step 1: introduction", "Step 2: follow-up", "Step 3: break-up"],
    {"sent": [900, 610, 400], "replied": [41, 22, 9], "bounced": [18, 3, 1]},
)
FUNNEL = [("Imported", 1200), ("Eligible", 1100), ("Sent", 900), ("Replied", 72), ("Positive", 30)]


def _all_charts() -> list[str]:
    return [
        timeline_chart(DAYS, TIMELINE, title="Daily activity"),
        steps_chart(*STEPS, title="Sequence steps"),
        funnel_chart(FUNNEL, title="Funnel"),
    ]


def _texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)  # noqa: S314 (our own output)
    return [t.text or "" for t in root.iter(f"{SVG_NS}text")]


def test_each_chart_is_an_svg_document_that_inlines_in_html():
    for svg in _all_charts():
        assert svg.startswith("<svg")  # no XML declaration or doctype inside an HTML page
        root = ET.fromstring(svg)  # noqa: S314 (our own output)
        assert root.tag == f"{SVG_NS}svg"
        assert root.get("viewBox")


def test_text_stays_text_in_dejavu_sans_and_titles_are_printed_as_given():
    svg = timeline_chart(DAYS, TIMELINE, title="Spring $5 offer: 100% of_leads")
    texts = _texts(svg)
    assert "Spring $5 offer: 100% of_leads" in texts  # no mathtext, no glyph paths
    assert "DejaVu Sans" in svg


def test_legends_name_every_series_even_one_starting_with_an_underscore():
    texts = _texts(steps_chart(["a", "b"], {"sent": [3, 4], "_other": [1, 2]}, title="t"))
    assert {"sent", "_other"} <= set(texts)


def test_the_usual_series_keep_their_colour_in_every_chart():
    timeline = timeline_chart(DAYS, TIMELINE, title="t").lower()
    steps = steps_chart(*STEPS, title="t").lower()
    for colour in (charts.BLUE, charts.GREEN, charts.VERMILLION):
        assert colour.lower() in timeline
        assert colour.lower() in steps


def test_funnel_labels_each_stage_with_its_share_of_the_first():
    texts = _texts(funnel_chart(FUNNEL, title="Funnel"))
    assert "1,200" in texts
    assert "72 (6%)" in texts
    assert "Positive" in texts


def test_same_data_gives_the_same_bytes():
    assert _all_charts() == _all_charts()


def test_same_data_gives_the_same_bytes_in_another_process():
    code = (
        "import hashlib, sys; sys.path.insert(0, '.');"
        "from reporting.tests.test_charts import _all_charts;"
        "print(hashlib.sha256(''.join(_all_charts()).encode()).hexdigest())"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, check=True, timeout=120,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )  # fmt: skip
    assert other.stdout.strip() == hashlib.sha256("".join(_all_charts()).encode()).hexdigest()


def test_svg_has_no_date_in_its_metadata():
    svg = timeline_chart(DAYS, TIMELINE, title="t")
    assert "<dc:date>" not in svg
    assert str(datetime.date.today().year) + "-" not in svg


@pytest.mark.parametrize(
    "chart",
    [
        lambda: timeline_chart([], {}, title="Daily activity"),
        lambda: timeline_chart(DAYS[:3], {"sent": [0, 0, 0]}, title="Daily activity"),
        lambda: timeline_chart(DAYS[:3], {}, title="Daily activity"),
        lambda: steps_chart([], {"sent": []}, title="Daily activity"),
        lambda: funnel_chart([], title="Daily activity"),
        lambda: funnel_chart([("Imported", 0), ("Sent", 0)], title="Daily activity"),
    ],
)
def test_no_data_renders_a_titled_no_data_yet_chart(chart):
    texts = _texts(chart())
    assert "Daily activity" in texts
    assert charts.NO_DATA in texts


def test_one_day_of_data_is_a_chart():
    texts = _texts(timeline_chart(DAYS[:1], {"sent": [5]}, title="t"))
    assert charts.NO_DATA not in texts
    assert "sent" in texts


def test_a_series_of_the_wrong_length_is_refused_by_name():
    with pytest.raises(ValueError, match="'replied' has 2 values for 3 labels"):
        steps_chart(["a", "b", "c"], {"sent": [1, 2, 3], "replied": [1, 2]}, title="t")


def test_a_chart_stays_small():
    for svg in _all_charts():
        assert len(svg.encode()) < 40_000


def test_charts_leave_no_figure_open():
    from matplotlib import _pylab_helpers

    for _ in range(20):
        _all_charts()
    assert _pylab_helpers.Gcf.get_num_fig_managers() == 0


def test_charts_on_one_page_share_no_id_and_every_reference_resolves():
    ids_per_chart = []
    for svg in _all_charts():
        ids = re.findall(r' id="([^"]+)"', svg)
        assert len(ids) == len(set(ids))
        for ref in re.findall(r'(?:href="|url\()#([^")]+)', svg):
            assert ref in ids
        ids_per_chart.append(set(ids))
    first, second, third = ids_per_chart
    assert not (first & second or first & third or second & third)
