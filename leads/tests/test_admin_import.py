"""The admin import flow: upload -> preview -> confirm -> result, file-level errors, background."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from leads.models import BatchState, ImportBatch, Lead, SourceChannel
from tests.factories import CampaignFactory, LeadFactory
from tests.http import text

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]

IMPORT_URL = "admin:leads_lead_import"
CSV = (
    "Work Email,First Name,Last Name,Company Name for Emails,Title,Country,Icebreaker\n"
    "ann@acme.example,Ann,Smith,Acme,VP Sales,Germany,Saw your talk\n"
    "not-an-email,Bob,Jones,Beta,CTO,France,\n"
    "ANN@acme.example,Ann,Smith,Acme,VP Sales,Germany,\n"
    "carl@gamma.example,Carl,Berg,Gamma,Founder,Austria,Loved the podcast\n"
)


def upload(client, campaign, content: str | bytes = CSV, name: str = "leads.csv", **extra):
    data = content.encode() if isinstance(content, str) else content
    payload = {"campaign": campaign.pk, "file": SimpleUploadedFile(name, data), **extra}
    return client.post(reverse(IMPORT_URL), payload)


def ticket_of(response) -> str:
    return re.search(r'name="ticket" value="([^"]+)"', response.content.decode()).group(1)


def confirm(client, ticket: str, **kwargs):
    return client.post(reverse("admin:leads_lead_import_confirm"), {"ticket": ticket}, **kwargs)


def staged_files() -> list[Path]:
    folder = Path(settings.AICMO_ARTIFACT_DIR) / "lead-import-staging"
    return list(folder.iterdir()) if folder.exists() else []


def test_upload_shows_mapping_and_first_rows_then_confirm_imports(client, operator, campaign):
    client.force_login(operator)
    preview = upload(client, campaign, source="Apollo Q4")
    page = text(preview)
    assert preview.status_code == 200
    assert "Column mapping" in page
    assert re.search(
        r'data-column="Work Email">.*?<option value="email" selected>Email<', page, re.S
    )
    assert "custom: Icebreaker" in page
    assert re.search(
        r'data-column="Icebreaker">.*?value="custom" selected>Keep as a custom', page, re.S
    )
    assert "Invalid email" in page  # row 3's problem, shown before anything is written
    assert "duplicate of row 2" in page
    assert "4 data rows" in page
    assert not ImportBatch.objects.exists() and not Lead.objects.exists()

    result = confirm(client, ticket_of(preview), follow=True)
    batch = ImportBatch.objects.get()
    assert result.redirect_chain[-1][0] == reverse(
        "admin:leads_importbatch_change", args=[batch.pk]
    )
    assert f"Import #{batch.pk} into {campaign.name} finished: 4 rows, 2 created" in text(result)
    assert (batch.state, batch.created, batch.invalid, batch.duplicates_in_file) == (
        "done",
        2,
        1,
        1,
    )
    assert batch.uploaded_by == operator and batch.source == "Apollo Q4"
    ann = Lead.objects.get(email_key="ann@acme.example")
    assert ann.custom_fields == {"Icebreaker": "Saw your talk"}
    assert ann.source_list == "Apollo Q4" and ann.source_batch == batch
    assert staged_files() == []


def test_xlsx_upload_is_previewed_and_imported(client, operator, campaign):
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["Email", "First Name", "Company"])
    sheet.append(["xl@sheet.example", "Xena", "Sheet Co"])
    buffer = io.BytesIO()
    book.save(buffer)
    client.force_login(operator)
    preview = upload(client, campaign, buffer.getvalue(), name="leads.xlsx")
    assert "XLSX" in text(preview)
    confirm(client, ticket_of(preview))
    assert Lead.objects.get().email == "xl@sheet.example"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty."),
        (b"Email,Name\n", "no data rows"),
        (b"Name,Company\nAnn,Acme\n", "No email column"),
        (bytes(range(256)) * 40, ""),
        (b"Email,Email\na@b.example,c@d.example\n", "appears twice"),
    ],
    ids=["empty", "header-only", "no-email-column", "binary-garbage", "duplicate-headers"],
)
def test_file_level_error_is_a_message_on_the_upload_form_and_writes_nothing(
    client, operator, campaign, content, message
):
    client.force_login(operator)
    response = upload(client, campaign, content)
    assert response.status_code == 200
    page = text(response)
    assert "Upload and preview" in page  # still the upload form
    assert 'class="errorlist' in page
    assert message in page
    assert not ImportBatch.objects.exists() and not Lead.objects.exists()
    assert staged_files() == []


def test_already_imported_file_is_refused_unless_forced(client, operator, campaign):
    client.force_login(operator)
    confirm(client, ticket_of(upload(client, campaign)))
    again = upload(client, campaign)
    assert "already imported" in text(again)
    assert 'name="ticket"' not in again.content.decode()  # no confirm button
    forced = upload(client, campaign, force="on")
    assert "You chose to import it again" in text(forced)
    confirm(client, ticket_of(forced))
    assert ImportBatch.objects.count() == 2


def test_large_file_runs_in_the_background_and_progress_is_reported(
    client, operator, campaign, settings, django_capture_on_commit_callbacks
):
    settings.AICMO_IMPORT_BACKGROUND_BYTES = 10  # every upload counts as large
    client.force_login(operator)
    preview = upload(client, campaign)
    assert "imported in the background" in text(preview)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = confirm(client, ticket_of(preview), follow=True)
    batch = ImportBatch.objects.get()
    assert batch.state == BatchState.PENDING
    assert "runs in the background" in text(response)
    assert "import_progress.js" in text(response)  # the page polls while it runs
    progress_url = reverse("admin:leads_importbatch_progress", args=[batch.pk])
    waiting = client.get(progress_url).json()
    assert waiting["finished"] is False and waiting["percent"] == 0
    assert len(callbacks) == 1
    callbacks[0]()  # the on_commit hook enqueues the task; django-q2 runs it in sync mode
    done = client.get(progress_url).json()
    assert done["state"] == "done" and done["finished"] is True and done["percent"] == 100
    assert done["created"] == 2 and done["invalid"] == 1
    assert Lead.objects.count() == 2


def test_confirm_with_a_forged_or_foreign_ticket_is_refused(
    client, operator, campaign, administrator
):
    client.force_login(administrator)
    ticket = ticket_of(upload(client, campaign))
    client.force_login(operator)
    response = confirm(client, ticket, follow=True)
    assert "expired or is not yours" in text(response)
    response = confirm(client, ticket[:-3] + "abc", follow=True)
    assert "expired or is not yours" in text(response)
    assert not ImportBatch.objects.exists()


def test_operator_cannot_import_into_another_ventures_campaign(
    client, operator, other_venture_campaign
):
    client.force_login(operator)
    response = upload(client, other_venture_campaign)
    assert "Select a valid choice" in text(response)
    assert not ImportBatch.objects.exists()


def test_viewer_cannot_open_the_import(client, viewer, campaign):
    client.force_login(viewer)
    assert client.get(reverse(IMPORT_URL)).status_code == 403
    assert upload(client, campaign).status_code == 403
    assert "Import leads" not in text(client.get(reverse("admin:leads_lead_changelist")))


def test_lead_list_and_campaign_action_lead_to_the_import(client, operator, campaign):
    client.force_login(operator)
    listing = text(client.get(reverse("admin:leads_lead_changelist")))
    assert reverse(IMPORT_URL) in listing
    response = client.post(
        reverse("admin:ventures_campaign_changelist"),
        {"action": "import_leads_into_campaign", ACTION_CHECKBOX_NAME: [campaign.pk]},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse(IMPORT_URL) + f"?campaign={campaign.pk}"
    form_page = client.get(response["Location"])
    assert f'<option value="{campaign.pk}" selected>' in form_page.content.decode()


def test_campaign_action_needs_exactly_one_campaign(client, operator, campaign):
    second = CampaignFactory(venture=campaign.venture)
    client.force_login(operator)
    response = client.post(
        reverse("admin:ventures_campaign_changelist"),
        {"action": "import_leads_into_campaign", ACTION_CHECKBOX_NAME: [campaign.pk, second.pk]},
        follow=True,
    )
    assert "Select exactly one campaign" in text(response)


def test_import_fills_blanks_of_existing_leads_and_never_lifts_dnc(client, operator, campaign):
    existing = LeadFactory(
        campaign=campaign,
        email="ann@acme.example",
        email_key="ann@acme.example",
        title="",
        consent_status="dnc",
    )
    client.force_login(operator)
    confirm(client, ticket_of(upload(client, campaign)))
    existing.refresh_from_db()
    assert existing.title == "VP Sales"
    assert existing.consent_status == "dnc"
    assert existing.source_channel == SourceChannel.IMPORT
