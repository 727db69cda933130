"""A stopped or completed campaign takes no new leads, whichever way they come in.

`Campaign.accepts_leads()` is the one rule; before it, file imports did not check at all.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from leads.models import BatchState, ImportBatch, Lead
from leads.services.imports import import_batch_create, lead_import
from leads.services.runs import import_batch_run_now
from leads.views import capture_url
from tests.http import text
from ventures.models import CampaignStatus
from ventures.services import DomainError, campaign_transition, venture_api_token_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]

CSV = "Email,First Name\nann@acme.example,Ann\nbob@beta.example,Bob\n"
CLOSED = [CampaignStatus.STOPPED, CampaignStatus.COMPLETED]


def close(campaign, status: str) -> None:
    campaign.status = status
    campaign.save(update_fields=["status"])


def nothing_written() -> bool:
    return not ImportBatch.objects.exists() and not Lead.objects.exists()


@pytest.mark.parametrize("status", [CampaignStatus.DRAFT, CampaignStatus.RUNNING, "paused"])
def test_draft_running_and_paused_campaigns_accept_leads(campaign, status):
    close(campaign, status)
    assert campaign.accepts_leads()


@pytest.mark.parametrize("status", CLOSED)
def test_file_import_into_a_closed_campaign_is_refused_before_anything_is_written(
    campaign, write_csv, status
):
    close(campaign, status)
    with pytest.raises(DomainError, match=f"is {status}: it takes no new leads"):
        lead_import(campaign=campaign, path=write_csv(CSV), actor="test")
    with pytest.raises(DomainError, match="takes no new leads"):
        lead_import(campaign=campaign, path=write_csv(CSV), actor="test", dry_run=True)
    uploads = Path(settings.AICMO_ARTIFACT_DIR) / "lead-imports"
    before = set(uploads.iterdir()) if uploads.exists() else set()
    with pytest.raises(DomainError, match="takes no new leads"):
        import_batch_create(
            campaign=campaign, source_path=write_csv(CSV), file_name="l.csv", actor="test"
        )
    assert nothing_written()
    assert (set(uploads.iterdir()) if uploads.exists() else set()) == before


def test_queued_import_of_a_campaign_stopped_meanwhile_fails_with_a_reason(campaign, write_csv):
    batch = import_batch_create(
        campaign=campaign, source_path=write_csv(CSV), file_name="l.csv", actor="test"
    )
    campaign_transition(campaign=campaign, action="start", actor="test")
    campaign_transition(campaign=campaign, action="stop", actor="test")

    import_batch_run_now(batch_id=batch.pk)

    batch.refresh_from_db()
    assert batch.state == BatchState.FAILED
    assert "was stopped before the import finished: it takes no new leads" in batch.error
    assert not Lead.objects.exists()
    assert not Path(batch.stored_path).exists()


def test_cli_import_into_a_stopped_campaign_is_a_one_line_command_error(campaign, write_csv):
    close(campaign, CampaignStatus.STOPPED)
    with pytest.raises(CommandError) as refused:
        call_command("leads", "import", campaign.slug, str(write_csv(CSV)), stdout=io.StringIO())
    [line] = str(refused.value).splitlines()
    assert f"Campaign '{campaign.slug}' is stopped: it takes no new leads" in line
    assert nothing_written()


def test_admin_upload_into_a_completed_campaign_is_a_message_not_a_500(client, operator, campaign):
    close(campaign, CampaignStatus.COMPLETED)
    client.force_login(operator)
    response = client.post(
        reverse("admin:leads_lead_import"),
        {"campaign": campaign.pk, "file": SimpleUploadedFile("l.csv", CSV.encode())},
    )
    assert response.status_code == 200
    assert "is completed: it takes no new leads" in text(response)
    assert 'name="ticket"' not in response.content.decode()  # nothing to confirm
    assert nothing_written()


def test_api_and_capture_form_refuse_a_completed_campaign(client, campaign):
    _, token = venture_api_token_create(venture=campaign.venture, name="site", actor="test")
    close(campaign, CampaignStatus.COMPLETED)
    api = client.post(
        reverse("leads:api", args=[campaign.slug]),
        json.dumps({"leads": [{"email": "ann@acme.example"}]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert api.status_code == 409
    assert client.get(capture_url(campaign)).status_code == 404
    assert nothing_written()
