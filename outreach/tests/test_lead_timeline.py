"""What the outbox adds to a lead's activity timeline (through `leads.timeline`)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from outreach.feedback import reply_record
from outreach.tests.outbox import first_emails_sent
from tests.factories import MembershipFactory, UserFactory
from tests.http import text
from ventures.roles import OPERATOR

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]


def test_lead_timeline_shows_enrollment_each_message_and_each_feedback_event(client):
    message = first_emails_sent(1)[0]
    reply_record(message=message, sentiment="positive", actor="op-rita", notes="call me")
    user = UserFactory(username="op-rita", role=OPERATOR)
    MembershipFactory(venture=message.campaign.venture, user=user)
    client.force_login(user)
    page = text(client.get(reverse("admin:leads_lead_change", args=[message.lead_id])))
    timeline = page[page.index("lead-timeline") :]
    enrollment = message.enrollment
    assert f"In sequence {enrollment.sequence}" in timeline
    assert enrollment.route_reason in timeline
    assert "Step 1 (automatic email): sent" in timeline
    assert reverse("admin:outreach_outboundmessage_change", args=[message.pk]) in timeline
    assert "Step 2 (automatic email): blocked (the lead replied" in timeline
    # Newest first: the reply, then the messages, then the enrollment, then the arrival.
    order = ["Replied", "Step 2 (", "Step 1 (", "In sequence", "Arrived"]
    assert [timeline.index(marker) for marker in order] == sorted(
        timeline.index(marker) for marker in order
    )


def test_lead_timeline_costs_a_fixed_number_of_queries(django_assert_max_num_queries):
    from leads.timeline import lead_timeline

    message = first_emails_sent(1)[0]
    lead = message.lead
    with django_assert_max_num_queries(8):
        lead_timeline(lead)
