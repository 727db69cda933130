from __future__ import annotations

import pytest
from django.db import IntegrityError

from leads.models import Lead, LeadStatus, identity_hash_of
from tests.factories import LeadFactory


def test_identity_hash_prefers_email_then_phone_then_linkedin():
    assert identity_hash_of(email_key="a@b.example") != identity_hash_of(phone="+4930123")
    assert identity_hash_of(email_key="a@b.example", phone="+4930123") == identity_hash_of(
        email_key="a@b.example"
    )
    assert identity_hash_of() == ""
    assert len(identity_hash_of(linkedin_url="https://www.linkedin.com/in/x")) == 64


def test_same_email_key_twice_in_one_campaign_is_refused_by_the_database(campaign):
    LeadFactory(campaign=campaign, email="Ann@x.example")
    with pytest.raises(IntegrityError):
        LeadFactory(campaign=campaign, email="ann@x.example")


def test_erased_leads_without_email_key_do_not_collide(campaign):
    LeadFactory(campaign=campaign, email="", email_key="", identity_hash="", status="erased")
    LeadFactory(campaign=campaign, email="", email_key="", identity_hash="", status="erased")
    assert Lead.objects.filter(campaign=campaign, status=LeadStatus.ERASED).count() == 2
