"""outreach.context: the lead -> template context builder and the recipients it gives the console."""

from __future__ import annotations

import pytest
from django.core import signing

from leads.models import LeadStatus
from outreach.context import (
    LEAD_CONTEXT_SCHEMA,
    LeadRecipients,
    lead_context,
    lead_recipient,
)
from outreach.unsubscribe import UNSUBSCRIBE_SALT
from templating.hooks import context_schema, recipient_source
from templating.rendering import render_message
from tests.factories import CampaignFactory, IcpSegmentFactory, LeadFactory

pytestmark = pytest.mark.django_db


def test_context_has_lead_fields_custom_fields_segment_campaign_venture_sender(campaign):
    segment = IcpSegmentFactory(venture=campaign.venture, name="DACH SaaS")
    lead = LeadFactory(
        campaign=campaign,
        first_name="Lena",
        company="Prospect GmbH",
        segment=segment,
        custom_fields={"Icebreaker": "Loved your talk", "Intent Signal": "hiring SDRs"},
    )
    context = lead_context(lead=lead, campaign=campaign)
    assert context["first_name"] == "Lena"
    assert context["lead"]["company"] == "Prospect GmbH"
    assert context["icebreaker"] == "Loved your talk"
    assert context["custom"]["intent_signal"] == "hiring SDRs"
    assert context["lead"]["custom"]["icebreaker"] == "Loved your talk"
    assert context["segment"] == {"name": "DACH SaaS", "slug": segment.slug}
    assert context["campaign"]["name"] == campaign.name
    assert context["venture"]["postal_address"] == campaign.venture.postal_address
    assert context["sender"] == {
        "name": "Sam Sender",
        "email": "sam@venture.example",
        "reply_to": "replies@venture.example",
    }


def test_blank_lead_fields_are_left_out_so_fallbacks_apply(campaign):
    lead = LeadFactory(campaign=campaign, first_name="", title="")
    context = lead_context(lead=lead, campaign=campaign)
    assert "first_name" not in context and "first_name" not in context["lead"]
    result = render_message(
        subject="Hi {{ first_name | default('there') }}",
        body_text="Hi {{ first_name }}",
        context=context,
        seed="s",
    )
    assert [r.code for r in result.reasons] == ["undefined_variable"]


def test_custom_field_cannot_shadow_a_lead_field_or_namespace(campaign):
    lead = LeadFactory(
        campaign=campaign,
        first_name="Lena",
        custom_fields={"First Name": "Mallory", "unsubscribe_url": "https://evil.example"},
    )
    context = lead_context(lead=lead, campaign=campaign)
    assert context["first_name"] == "Lena"
    assert context["unsubscribe_url"].startswith("http://localhost:8000/u/")
    assert context["custom"]["first_name"] == "Mallory"


def test_unsubscribe_url_carries_a_signed_lead_id(campaign):
    lead = LeadFactory(campaign=campaign)
    url = lead_context(lead=lead, campaign=campaign)["unsubscribe_url"]
    token = url.removeprefix("http://localhost:8000/u/").rstrip("/")
    assert signing.loads(token, salt=UNSUBSCRIBE_SALT) == lead.pk


def test_every_key_the_builder_produces_is_declared_in_the_schema(campaign):
    segment = IcpSegmentFactory(venture=campaign.venture)
    lead = LeadFactory(
        campaign=campaign,
        company_domain="prospect.example",
        website="https://prospect.example",
        phone="+4930123456",
        linkedin_url="https://linkedin.com/in/lena",
        city="Berlin",
        state="BE",
        timezone="Europe/Berlin",
        industry="Software",
        company_size=80,
        segment=segment,
    )
    context = lead_context(lead=lead, campaign=campaign, template=None)
    for namespace, attributes in LEAD_CONTEXT_SCHEMA.namespaces.items():
        if namespace in context:
            assert set(context[namespace]) <= attributes, namespace
    assert set(context["lead"]) - {"custom"} == LEAD_CONTEXT_SCHEMA.namespaces["lead"] - {"custom"}


def test_outreach_registers_its_schema_and_recipients():
    assert context_schema() is LEAD_CONTEXT_SCHEMA
    assert isinstance(recipient_source(), LeadRecipients)


def test_choice_seed_is_the_identity_so_a_person_gets_the_same_wording_everywhere(campaign):
    lead = LeadFactory(campaign=campaign, email="same@prospect.example")
    twin = LeadFactory(
        campaign=CampaignFactory(venture=campaign.venture), email="same@prospect.example"
    )
    assert lead_recipient(lead=lead, campaign=campaign).seed == lead.identity_hash
    assert lead_recipient(lead=twin, campaign=twin.campaign).seed == lead.identity_hash


def test_recipients_stay_inside_their_campaign(campaign, other_venture_campaign):
    mine = LeadFactory(campaign=campaign)
    foreign = LeadFactory(campaign=other_venture_campaign)
    source = LeadRecipients()
    assert source.get(campaign=campaign, ref=f"lead:{mine.pk}").ref == f"lead:{mine.pk}"
    assert source.get(campaign=campaign, ref=f"lead:{foreign.pk}") is None
    assert source.get(campaign=campaign, ref="lead:abc") is None
    assert source.get(campaign=campaign, ref="../1") is None


def test_check_covers_active_leads_only_and_preview_hides_erased(campaign):
    active = LeadFactory(campaign=campaign)
    LeadFactory(campaign=campaign, status=LeadStatus.SUPPRESSED)
    erased = LeadFactory(campaign=campaign, status=LeadStatus.ERASED)
    source = LeadRecipients()
    assert source.count(campaign=campaign) == 1
    assert [r.ref for r in source.iterate(campaign=campaign, limit=10)] == [f"lead:{active.pk}"]
    refs = [ref for ref, _ in source.choices(campaign=campaign, limit=10)]
    assert f"lead:{erased.pk}" not in refs and len(refs) == 2


def test_sample_lead_is_documented_and_never_saved(campaign):
    from leads.models import Lead

    sample = LeadRecipients().sample(campaign=campaign)
    assert sample.is_sample and sample.ref == "sample"
    assert sample.context["first_name"] == "Alex"
    assert sample.context["icebreaker"]
    assert not Lead.objects.exists()
