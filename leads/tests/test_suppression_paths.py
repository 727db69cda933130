"""The command line, the suppression-entry form and the lead list's bulk action suppress
through one service: the same entries, the same leads suppressed, the same audit row."""

from __future__ import annotations

import io

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import call_command
from django.urls import reverse

from leads.models import Lead, LeadStatus, SuppressionEntry, identity_hash_of
from tests.factories import CampaignFactory, LeadFactory
from ventures.models import AuditEvent

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]

ADDRESS = "pat@x.example"


def by_cli(client, operator, campaign) -> None:
    call_command(
        "leads", "suppress", ADDRESS, "--venture", campaign.venture.slug, stdout=io.StringIO()
    )


def by_form(client, operator, campaign) -> None:
    client.force_login(operator)
    response = client.post(
        reverse("admin:leads_suppressionentry_add"),
        {"kind": "email", "value": ADDRESS.upper(), "venture": campaign.venture_id},
    )
    assert response.status_code == 302


def by_bulk_action(client, operator, campaign) -> None:
    client.force_login(operator)
    lead = Lead.objects.filter(campaign=campaign).get()
    data = {"action": "suppress", ACTION_CHECKBOX_NAME: [lead.pk], "post": "yes"}
    response = client.post(reverse("admin:leads_lead_changelist"), data)
    assert response.status_code == 302


@pytest.mark.parametrize("suppress", [by_cli, by_form, by_bulk_action])
def test_every_way_in_lists_the_person_suppresses_them_everywhere_and_audits_alike(
    client, operator, campaign, suppress
):
    twin = CampaignFactory(venture=campaign.venture)
    for where in (campaign, twin):
        LeadFactory(campaign=where, email=ADDRESS, email_key=ADDRESS)

    suppress(client, operator, campaign)

    entry = SuppressionEntry.objects.get()
    assert (entry.kind, entry.value, entry.venture_id) == ("email", ADDRESS, campaign.venture_id)
    assert set(Lead.objects.values_list("status", flat=True)) == {LeadStatus.SUPPRESSED}
    [event] = AuditEvent.objects.filter(action="leads.suppress")
    assert event.venture_id == campaign.venture_id
    assert event.after == {
        "venture": campaign.venture_id,
        "added": 1,
        "already": 0,
        "domains": [],
        "identity_hashes": [identity_hash_of(email_key=ADDRESS)],
        "leads_suppressed": 2,
        "campaigns": {str(campaign.pk): 1, str(twin.pk): 1},
    }
    assert ADDRESS not in str(event.after)
