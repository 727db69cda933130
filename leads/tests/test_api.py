"""The JSON bulk lead API: token auth, venture scoping, clear errors, the import pipeline."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from leads.models import ImportBatch, Lead, SourceChannel
from tests.factories import CampaignFactory, LeadFactory
from ventures.models import CampaignStatus
from ventures.services import venture_api_token_create, venture_api_token_revoke

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]

LEADS = [
    {"email": "ann@acme.example", "first_name": "Ann", "title": "VP Sales", "utm_source": "zapier"},
    {"Email": "bob@beta.example", "First Name": "Bob", "Icebreaker": "Loved your post"},
    {"email": "not-an-email"},
    {"email": "ANN@acme.example"},
]


@pytest.fixture
def token(campaign):
    _, plaintext = venture_api_token_create(venture=campaign.venture, name="site", actor="test")
    return plaintext


def post(client, campaign_slug: str, body, token: str | None = None, **headers):
    if token is not None:
        headers.setdefault("HTTP_AUTHORIZATION", f"Bearer {token}")
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    url = reverse("leads:api", args=[campaign_slug])
    return client.post(url, data, content_type="application/json", **headers)


def test_valid_request_imports_through_the_pipeline_and_reports_counts(client, campaign, token):
    response = post(client, campaign.slug, {"source": "website", "leads": LEADS}, token)
    assert response.status_code == 201
    data = response.json()
    batch = ImportBatch.objects.get(pk=data["batch"])
    assert batch.channel == SourceChannel.API and batch.source == "website"
    assert data["counts"]["rows_total"] == 4
    assert data["counts"]["created"] == 2
    assert data["counts"]["invalid"] == 1
    assert data["counts"]["duplicates_in_file"] == 1
    assert data["errors"][0]["row"] == 3 and "Invalid email" in data["errors"][0]["reason"]
    ann = Lead.objects.get(email_key="ann@acme.example")
    assert ann.utm_source == "zapier" and ann.source_channel == SourceChannel.API
    bob = Lead.objects.get(email_key="bob@beta.example")
    assert bob.first_name == "Bob" and bob.custom_fields == {"Icebreaker": "Loved your post"}


def test_a_bare_list_is_accepted(client, campaign, token):
    response = post(client, campaign.slug, [{"email": "solo@x.example"}], token)
    assert response.status_code == 201
    assert Lead.objects.get().email_key == "solo@x.example"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Missing Authorization header"),
        ("Token abc", "Malformed Authorization header"),
        ("Bearer ", "Malformed Authorization header"),
        ("Bearer aicmo_not-a-real-token", "Invalid or revoked API token."),
    ],
)
def test_missing_or_bad_token_is_401(client, campaign, header, message):
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = post(client, campaign.slug, {"leads": LEADS}, **extra)
    assert response.status_code == 401
    assert message in response.json()["error"]
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not ImportBatch.objects.exists()


def test_revoked_token_is_refused(client, campaign):
    token, plaintext = venture_api_token_create(venture=campaign.venture, name="x", actor="test")
    venture_api_token_revoke(token=token, actor="test")
    response = post(client, campaign.slug, {"leads": LEADS}, plaintext)
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid or revoked API token."}
    assert not Lead.objects.exists()


def test_token_cannot_reach_another_ventures_campaign(client, token, other_venture_campaign):
    response = post(client, other_venture_campaign.slug, {"leads": LEADS}, token)
    assert response.status_code == 404
    assert "in this token's venture" in response.json()["error"]
    assert not Lead.objects.exists()


def test_unknown_campaign_is_404(client, token):
    assert post(client, "no-such-campaign", {"leads": LEADS}, token).status_code == 404


def test_stopped_campaign_is_409(client, campaign, token):
    campaign.status = CampaignStatus.STOPPED
    campaign.save(update_fields=["status"])
    assert post(client, campaign.slug, {"leads": LEADS}, token).status_code == 409


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("{not json", 400, "not valid JSON"),
        (b"\xff\xfe\x00garbage", 400, "not valid JSON"),
        ({"rows": []}, 400, 'Expected {"leads": [...]}'),
        ({"leads": "ann@acme.example"}, 400, "must be a list"),
        ({"leads": []}, 400, "No leads"),
        ({"leads": ["ann@acme.example"]}, 400, "Lead 1 is not an object"),
        ({"leads": [{"email": {"nested": 1}}]}, 400, "must be a string, number"),
        ({"leads": [{"name": "No Email"}]}, 400, "No email column"),
        ({"leads": [{"email": "a@b.example", "Email": "c@d.example"}]}, 400, "twice"),
        ({"source": 5, "leads": [{"email": "a@b.example"}]}, 400, '"source" must be a string'),
        ("42", 400, "must be a list"),
    ],
)
def test_bad_payloads_are_clear_json_errors(client, campaign, token, body, status, message):
    response = post(client, campaign.slug, body, token)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert not ImportBatch.objects.exists() and not Lead.objects.exists()


def test_too_many_rows_is_413(client, campaign, token, settings):
    settings.AICMO_API_MAX_ROWS = 3
    response = post(client, campaign.slug, {"leads": LEADS}, token)
    assert response.status_code == 413
    assert "limit is 3" in response.json()["error"]


def test_too_large_body_is_413(client, campaign, token, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = post(client, campaign.slug, {"leads": LEADS * 5}, token)
    assert response.status_code == 413
    assert not ImportBatch.objects.exists()


def test_not_json_content_type_is_415(client, campaign, token):
    url = reverse("leads:api", args=[campaign.slug])
    response = client.post(
        url, {"email": "a@b.example"}, HTTP_AUTHORIZATION=f"Bearer {token}"
    )  # form-encoded
    assert response.status_code == 415


def test_get_is_405(client, campaign, token):
    response = client.get(reverse("leads:api", args=[campaign.slug]))
    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_api_fills_blanks_of_existing_leads_and_counts_them(client, campaign, token):
    LeadFactory(campaign=campaign, email="ann@acme.example", email_key="ann@acme.example", title="")
    response = post(client, campaign.slug, {"leads": LEADS[:1]}, token)
    data = response.json()
    assert data["counts"]["created"] == 0 and data["counts"]["updated"] == 1
    assert Lead.objects.get().title == "VP Sales"


def test_token_of_one_venture_imports_only_into_its_own_campaigns(client, campaign, token):
    sibling = CampaignFactory(venture=campaign.venture)
    assert post(client, sibling.slug, [{"email": "z@z.example"}], token).status_code == 201
    assert Lead.objects.get().campaign == sibling
