"""Every format of a campaign report shows the same figures as the database: HTML, Markdown,
PDF (read back as text and rendered to PNG pages), the CSVs, and the proof bundle that holds
them all and verifies."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import zipfile
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from outreach.models import OutboundMessage
from reporting.bundle import bundle_verify
from reporting.exports import export_write
from reporting.figures import FUNNEL, campaign_report
from reporting.render import render_html, render_markdown
from reporting.services import report_write
from reporting.tests.campaigns import known_campaign

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http", "report_settings")]
# One directory per database: `make test` runs the SQLite and PostgreSQL suites at once.
ARTIFACTS = (
    Path(__file__).resolve().parents[2]
    / "var"
    / "test-artifacts"
    / f"report-campaign-{connection.vendor}"
)


@pytest.fixture
def known():
    return known_campaign()


def html_cells(html: str) -> list[list[str]]:
    """Every table row of the HTML as its cells' text."""
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", html, flags=re.S):
        cells = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, flags=re.S)
        rows.append([re.sub(r"<[^>]+>", "", c).strip() for c in cells])
    return rows


def test_markdown_and_html_show_every_figure_of_the_funnel_steps_and_narratives(known):
    campaign, _facts = known
    report = campaign_report(campaign)
    markdown, html = render_markdown(report), render_html(report)
    rows = html_cells(html)
    for key, label in FUNNEL:
        count = report.funnel[key]
        assert re.search(rf"^\| {re.escape(label)} \| {count} \|", markdown, flags=re.M), label
        assert [label, str(count)] == next(r for r in rows if r and r[0] == label)[:2]
    for step in report.steps:
        line = next(r for r in rows if r and r[0] == step.label)
        assert line[1:4] == [str(step.sent), str(step.scheduled), str(step.skipped)]
        assert line[7:10] == [str(step.replied), str(step.positive), str(step.bounced)]
    for segment in report.narratives:
        assert f"Segment {segment.segment}: {segment.verdict}" in markdown
        for arm in segment.arms:
            assert f"| {arm.label} | {arm.sends} | {arm.replies} | {arm.positive} |" in markdown
    assert "| Estimated value | 4,000.00 (1 at the lead's own estimate" in markdown
    assert "Start a nurture sequence**: 12 leads finished the sequence without a reply." in markdown


def test_the_html_report_is_self_contained(known):
    campaign, _facts = known
    html = render_html(campaign_report(campaign))
    assert "<svg" in html  # the charts, inline
    assert not re.search(r"<(script|link|img|iframe)\b", html)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "@page" in html  # the print stylesheet travels with it


def test_the_outcomes_csv_adds_up_to_the_funnel(known):
    campaign, _facts = known
    report = campaign_report(campaign)
    buffer = io.BytesIO()
    rows = export_write("outcomes", campaign, buffer)
    table = list(csv.DictReader(io.StringIO(buffer.getvalue().decode("utf-8"))))
    assert rows == len(table) == report.funnel["imported"]
    for flag in ("delivered", "opened", "clicked", "replied", "positive", "autoreplied",
                 "bounced", "complained", "unsubscribed"):  # fmt: skip
        assert sum(int(r[flag]) for r in table) == report.funnel[flag], flag
    assert sum(int(r["emails_sent"]) > 0 for r in table) == report.funnel["sent"]
    assert sum(int(r["emails_sent"]) for r in table) == report.messages["emails_sent"]
    kept_out = sum(
        (r["status"] == "suppressed" or r["consent_status"] == "dnc") and r["emails_sent"] == "0"
        for r in table
    )
    assert kept_out == report.funnel["suppressed_dnc"]
    assert sum(int(r["blocked_messages"]) for r in table) == report.messages["blocked"]


@pytest.mark.skipif(
    not shutil.which("pdftoppm"), reason="needs poppler-utils (make test installs it)"
)
def test_the_pdf_report_reads_back_with_its_figures_and_renders_to_pages(known, tmp_path):
    campaign, _facts = known
    out = tmp_path / "report.pdf"
    written = report_write(campaign, "pdf", out)
    assert out.read_bytes().startswith(b"%PDF-") and written.size == out.stat().st_size
    text = subprocess.run(["pdftotext", "-layout", str(out), "-"], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    assert campaign.name in text
    assert re.search(r"Replied positively\s+1\s+5\.6%", text)
    assert re.search(r"Sent at least one email\s+18", text)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("page-*.png"):
        old.unlink()
    subprocess.run(["pdftoppm", "-r", "60", "-png", str(out), str(ARTIFACTS / "page")], check=True)
    pages = sorted(ARTIFACTS.glob("page-*.png"))
    assert len(pages) >= 2
    from PIL import Image, ImageStat

    for page in pages:
        with Image.open(page) as image:
            assert max(ImageStat.Stat(image.convert("L")).stddev) > 5, page  # not blank


def test_the_proof_bundle_holds_every_format_the_csvs_and_the_run_artifacts(known, tmp_path):
    campaign, _facts = known
    out = tmp_path / "bundle.zip"
    report_write(campaign, "zip", out)
    result = bundle_verify(out)
    assert result.ok, result.problems
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        slug = campaign.slug
        assert {f"{slug}-report.html", f"{slug}-report.md", f"{slug}-report.pdf",
                "manifest.json", "manifest.sha256"} <= names  # fmt: skip
        assert {
            f"csv/{slug}-{kind}.csv" for kind in ("outcomes", "messages", "events", "audit")
        } <= names
        emls = {n for n in names if n.endswith(".eml")}
        sent = OutboundMessage.objects.filter(campaign=campaign, state="sent").count()
        assert len(emls) == sent == 30
        assert any(n.endswith("/decisions.csv") for n in names)
        manifest = json.loads(archive.read("manifest.json"))
        markdown = archive.read(f"{slug}-report.md").decode("utf-8")
    assert "| Replied positively | 1 |" in markdown
    listed = (
        {entry["name"] for entry in manifest["files"]}
        if isinstance(manifest["files"], list)
        else set(manifest["files"])
    )
    assert listed == names - {"manifest.json", "manifest.sha256"}


def test_a_run_shared_with_another_campaign_gives_the_bundle_only_this_campaigns_mail(
    known, tmp_path
):
    import datetime as dt

    import time_machine

    from outreach.dispatch import tick
    from outreach.models import Sequence, SequenceStep, StepKind
    from outreach.tests.outbox import NOON, running_campaign
    from tests.factories import LeadFactory, MessageTemplateFactory

    campaign, _facts = known
    other = running_campaign(venture=campaign.venture)
    sequence = Sequence.objects.create(campaign=other, slug="o", name="O", is_default=True)
    step = SequenceStep.objects.create(sequence=sequence, position=1, kind=StepKind.EMAIL)
    step.templates.add(MessageTemplateFactory(campaign=other, name="Other opener"))
    LeadFactory.create_batch(3, campaign=other)
    with time_machine.travel(NOON + dt.timedelta(days=3, hours=2), tick=False):
        tick()
    assert OutboundMessage.objects.filter(campaign=other, state="sent").count() == 3
    out = tmp_path / "bundle.zip"
    report_write(campaign, "zip", out)
    with zipfile.ZipFile(out) as archive:
        emls = [n for n in archive.namelist() if n.endswith(".eml")]
        theirs = {
            f"l{m.lead_id}-s{m.step_id}.eml" for m in OutboundMessage.objects.filter(campaign=other)
        }
        assert emls and not {Path(n).name for n in emls} & theirs
    assert bundle_verify(out).ok


def test_report_generate_writes_each_format_and_says_where(known, tmp_path):
    campaign, _facts = known
    for fmt in ("html", "md", "csv", "zip"):
        out = tmp_path / f"report.{fmt}"
        stdout = StringIO()
        call_command(
            "report",
            "generate",
            campaign.slug,
            "--format",
            fmt,
            "--out",
            str(out),
            "--json",
            stdout=stdout,
        )
        result = json.loads(stdout.getvalue())
        assert result["path"] == str(out) and out.stat().st_size == result["size"] > 0
        assert len(result["sha256"]) == 64
    stdout = StringIO()
    call_command("report", "generate", str(campaign.pk), "--format", "csv", "--table", "events",
                 "--out", str(tmp_path / "events.csv"), stdout=stdout)  # fmt: skip
    assert "events" in stdout.getvalue() and "rows" in stdout.getvalue()
    stdout = StringIO()
    call_command("report", "verify", str(tmp_path / "report.zip"), stdout=stdout)
    assert stdout.getvalue().startswith("OK:")


def test_report_generate_refuses_with_a_one_line_reason(known, tmp_path):
    campaign, _facts = known
    with pytest.raises(CommandError, match=r"No campaign with slug or id 'nope'"):
        call_command("report", "generate", "nope", "--format", "html", "--out", str(tmp_path / "x"))
    with pytest.raises(CommandError, match=r"directory .* does not exist"):
        call_command("report", "generate", campaign.slug, "--format", "md",
                     "--out", str(tmp_path / "missing" / "r.md"))  # fmt: skip
    assert not list(tmp_path.rglob("*.partial"))
