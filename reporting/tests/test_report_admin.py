"""The report in the console: members of the campaign's venture read it and download every
format; Viewers read and download but keep nothing; another venture's campaign is a 404."""

from __future__ import annotations

import zipfile
from io import BytesIO

import pytest
from django.urls import reverse

from reporting.models import ReportFile
from reporting.tests.campaigns import known_campaign
from tests.factories import MembershipFactory
from tests.http import text

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http", "report_settings")]


@pytest.fixture
def known(operator, viewer):
    campaign, _facts = known_campaign()
    for user in (operator, viewer):
        MembershipFactory(venture=campaign.venture, user=user)
    return campaign


def page(campaign) -> str:
    return reverse("admin:reporting_campaign_report", args=[campaign.pk])


def download(campaign, fmt: str) -> str:
    return reverse("admin:reporting_campaign_download", args=[campaign.pk, fmt])


def test_a_member_reads_the_report_with_its_figures_and_charts(client, operator, known):
    client.force_login(operator)
    response = client.get(page(known))
    assert response.status_code == 200
    body = response.content.decode()
    assert "<svg" in body and "Sent at least one email" in body
    assert "Start a nurture sequence" in body
    for fmt in ("html", "pdf", "md", "zip"):
        assert download(known, fmt) in body
    listing = client.get(reverse("admin:reporting_reportfile_changelist"))
    assert page(known) in listing.content.decode()


def test_every_format_downloads_from_the_admin(client, viewer, known):
    client.force_login(viewer)
    html = client.get(download(known, "html"))
    assert html["Content-Type"].startswith("text/html")
    assert f'filename="{known.slug}-report.html"' in html["Content-Disposition"]
    assert b"Replied positively" in html.content
    md = client.get(download(known, "md"))
    assert b"| Replied positively | 1 |" in md.content
    pdf = client.get(download(known, "pdf"))
    assert pdf.content.startswith(b"%PDF-")
    csv = client.get(download(known, "csv") + "?table=outcomes")
    assert b"".join(csv.streaming_content).startswith(b"lead_id,")
    bundle = client.get(download(known, "zip"))
    with zipfile.ZipFile(BytesIO(b"".join(bundle.streaming_content))) as archive:
        assert "manifest.json" in archive.namelist()
    assert client.get(download(known, "exe")).status_code == 404
    assert client.get(download(known, "csv") + "?table=passwords").status_code == 404


def test_a_viewer_cannot_keep_a_copy_and_an_operator_can(client, viewer, operator, known):
    client.force_login(viewer)
    keep = reverse("admin:reporting_campaign_keep", args=[known.pk])
    assert client.post(keep).status_code == 403
    assert "Keep a copy" not in client.get(page(known)).content.decode()
    client.force_login(operator)
    response = client.post(keep, follow=True)
    kept = ReportFile.objects.get()
    assert f"Kept a copy: {kept.path}" in text(response)
    assert kept.format == "zip" and kept.generated_by == "admin:op-otto" and len(kept.sha256) == 64
    got = client.get(reverse("admin:reporting_reportfile_download", args=[kept.pk]))
    assert b"".join(got.streaming_content)[:2] == b"PK"


def test_another_ventures_campaign_and_its_reports_look_missing(
    client, operator, known, other_venture_campaign
):
    from reporting.services import report_keep

    theirs = report_keep(other_venture_campaign, "md", actor="test")
    client.force_login(operator)
    assert client.get(page(other_venture_campaign)).status_code == 404
    assert client.get(download(other_venture_campaign, "md")).status_code == 404
    assert (
        client.get(reverse("admin:reporting_reportfile_download", args=[theirs.pk])).status_code
        == 404
    )
    listing = client.get(reverse("admin:reporting_reportfile_changelist")).content.decode()
    assert other_venture_campaign.name not in listing


def test_a_kept_report_whose_file_is_gone_says_so(client, operator, known):
    from reporting.services import report_file_path, report_keep

    kept = report_keep(known, "md", actor="test")
    report_file_path(kept).unlink()
    client.force_login(operator)
    response = client.get(
        reverse("admin:reporting_reportfile_download", args=[kept.pk]), follow=True
    )
    assert response.status_code == 200
    assert "is no longer in the artifact directory" in text(response)


def test_the_campaign_page_links_to_its_report_once_under_the_figures(client, operator, known):
    from reporting.models import ReportSchedule
    from reporting.services import report_keep

    client.force_login(operator)
    url = reverse("admin:ventures_campaign_change", args=[known.pk])
    body = client.get(url).content.decode()
    assert body.count(f'href="{page(known)}"') == 1
    figures = body[body.index("<h2>Figures</h2>") : body.index("<h2>Outbox</h2>")]
    assert f'href="{page(known)}"' in figures
    assert "No copy kept yet. No daily report." in figures

    kept = report_keep(known, "md", actor="test")
    ReportSchedule.objects.create(campaign=known, hour=7, formats=["zip"])
    body = client.get(url).content.decode()
    assert body.count(f'href="{page(known)}"') == 1
    assert f"Last kept copy: {kept.generated_at:%Y-%m-%d %H:%M} UTC (Markdown)." in body
    assert f"Daily report after 07:00 ({known.timezone})." in body


def test_users_who_may_not_read_reports_get_no_report_link(client, operator, known):
    from django.contrib.auth.models import Permission

    operator.groups.get().permissions.remove(Permission.objects.get(codename="view_reportfile"))
    client.force_login(operator)
    body = client.get(reverse("admin:ventures_campaign_change", args=[known.pk])).content.decode()
    assert page(known) not in body


def test_an_operator_sets_up_a_daily_report_with_checkboxes(
    client, operator, known, other_venture_campaign
):
    from reporting.models import ReportSchedule

    client.force_login(operator)
    add = reverse("admin:reporting_reportschedule_add")
    form = client.get(add + f"?campaign={known.pk}").content.decode()
    assert 'type="checkbox" name="formats" value="pdf"' in form
    assert other_venture_campaign.name not in form  # only the operator's campaigns to choose
    response = client.post(
        add, {"campaign": known.pk, "is_active": "on", "hour": "7", "formats": ["pdf", "zip"],
              "keep_days": "30"},
    )  # fmt: skip
    assert response.status_code == 302
    assert ReportSchedule.objects.get(campaign=known).formats == ["pdf", "zip"]
    refused = client.post(add, {"campaign": other_venture_campaign.pk, "hour": "7",
                                "formats": ["zip"], "keep_days": "30"})  # fmt: skip
    assert (
        refused.status_code == 200
        and not ReportSchedule.objects.filter(campaign=other_venture_campaign).exists()
    )
