"""Campaigns with known outcomes, built through the real paths (a tick, feedback events, an
unsubscribe), for the report tests."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import time_machine

from leads.models import ConsentStatus, Lead, LeadStatus, UnsubscribeReason, UnsubscribeSource
from leads.unsubscribes import lead_unsubscribe
from outreach.dispatch import tick
from outreach.feedback import Incoming, feedback_record
from outreach.models import MessageState, OutboundMessage, Sequence, SequenceStep, StepKind
from outreach.tests.outbox import NOON, running_campaign
from tests.factories import (
    IcpSegmentFactory,
    ImportBatchFactory,
    LeadFactory,
    MembershipFactory,
    MessageTemplateFactory,
    UserFactory,
    objection_rules_restore,
)
from ventures.roles import OPERATOR, VIEWER


def known_campaign():
    """A running campaign, two email steps (the first with narrative variants A and B), 20
    leads from two lists and two import batches, one segment, and this history:
    - day 0 (NOON): the first email to 18 leads (one lead is do-not-contact, one suppressed);
    - then 16 delivered, 5 opened, 2 clicked; replies from 3 leads (one positive, one with a
      price objection, one neutral); one hard bounce, one spam complaint, one auto-reply; one
      unsubscribe with a reason;
    - day 3: the follow-up to the leads still in the sequence.
    Returns (campaign, facts): facts holds the leads by their role."""
    objection_rules_restore()
    with time_machine.travel(NOON - dt.timedelta(days=1), tick=False):
        campaign = running_campaign(
            daily_limit=1000,
            value_per_positive_reply=Decimal("1500.00"),
            fixed_cost=Decimal("100.00"),
            cost_per_email=Decimal("0.5000"),
        )
        campaign.venture.daily_send_limit = 100_000
        campaign.venture.save(update_fields=["daily_send_limit"])
        sequence = Sequence.objects.create(
            campaign=campaign,
            slug="main",
            name="Main",
            is_default=True,
            stop_on_company_reply=False,
        )
        first = SequenceStep.objects.create(sequence=sequence, position=1, kind=StepKind.EMAIL)
        first.templates.add(
            MessageTemplateFactory(campaign=campaign, name="Opener A", narrative_angle="cost", variant_label="A"),
            MessageTemplateFactory(campaign=campaign, name="Opener B", narrative_angle="proof", variant_label="B"),
        )  # fmt: skip
        follow = SequenceStep.objects.create(
            sequence=sequence, position=2, kind=StepKind.EMAIL, delay_days=3
        )
        follow.templates.add(MessageTemplateFactory(campaign=campaign, name="Follow-up"))
        segment = IcpSegmentFactory(venture=campaign.venture, name="RevOps")
        apollo = ImportBatchFactory(campaign=campaign, file_name="apollo.csv")
        hubspot = ImportBatchFactory(campaign=campaign, file_name="hubspot.csv")

        def lead(n: int, **fields) -> Lead:
            return LeadFactory(
                campaign=campaign, email=f"p{n}@co{n}.example", email_key=f"p{n}@co{n}.example",
                company=f"Co {n}", **fields,
            )  # fmt: skip

        apollo_leads = [
            lead(n, segment=segment, source_list="Apollo Q3", source_batch=apollo,
                 utm_campaign="q3-outbound", value_estimate=Decimal("4000.00") if n == 0 else None)
            for n in range(12)
        ]  # fmt: skip
        hubspot_leads = [
            lead(n, source_list="HubSpot", source_batch=hubspot, utm_content="webinar")
            for n in range(12, 20)
        ]
        dnc = hubspot_leads[-1]
        Lead.objects.filter(pk=dnc.pk).update(consent_status=ConsentStatus.DNC)
        suppressed = hubspot_leads[-2]
        Lead.objects.filter(pk=suppressed.pk).update(status=LeadStatus.SUPPRESSED)
    with time_machine.travel(NOON, tick=False):
        tick()
    sent = {
        m.lead_id: m
        for m in OutboundMessage.objects.filter(campaign=campaign, state=MessageState.SENT)
    }
    facts = {
        "campaign": campaign,
        "segment": segment,
        "dnc": dnc,
        "suppressed": suppressed,
        "positive": apollo_leads[0],
        "price": apollo_leads[1],
        "neutral": hubspot_leads[0],
        "bounced": apollo_leads[2],
        "complained": hubspot_leads[1],
        "autoreplied": apollo_leads[3],
        "unsubscribed": apollo_leads[4],
    }
    reachable = [lead for lead in apollo_leads + hubspot_leads if lead.pk in sent]
    with time_machine.travel(NOON + dt.timedelta(hours=2), tick=False):
        n = 0

        def event(lead: Lead, kind: str, **fields):
            nonlocal n
            n += 1
            message = sent[lead.pk]
            feedback_record(
                Incoming(source="postmark", kind=kind, event_id=f"{kind}-{n}", recipient=message.recipient,
                         thread_ids=[message.message_id], **fields)
            )  # fmt: skip

        for lead in reachable:
            if lead.pk != facts["bounced"].pk and lead != reachable[-1]:
                event(lead, "delivered")
        for lead in reachable[5:10]:
            event(lead, "opened")
        for lead in reachable[5:7]:
            event(lead, "clicked", url="https://northwind.example/case")
        event(facts["positive"], "replied", text="Yes, let's talk next week.", sentiment="positive")
        event(facts["price"], "replied", text="Honestly this is too expensive for us.")
        event(facts["neutral"], "replied", text="Who else uses it?", sentiment="neutral")
        event(facts["bounced"], "bounced", reason="550 5.1.1 user unknown")
        event(facts["complained"], "complained")
        event(facts["autoreplied"], "autoresponded", text="I am out of the office.")
        lead_unsubscribe(
            lead=facts["unsubscribed"], source=UnsubscribeSource.LINK,
            reason=UnsubscribeReason.values[1], actor="test",
        )  # fmt: skip
    with time_machine.travel(NOON + dt.timedelta(days=3, hours=1), tick=False):
        tick()
    facts["reachable"] = reachable
    return campaign, facts


def known_campaign_with_members(settings, artifacts):
    """The known campaign for a browser test: caps out of its way, artifacts in `artifacts`,
    and its venture's Operator "op-rita" and Viewer "viewer-vic"."""
    settings.AICMO_GLOBAL_DAILY_LIMIT = settings.AICMO_RECIPIENT_DOMAIN_DAILY_LIMIT = 100_000
    settings.AICMO_ARTIFACT_DIR = artifacts
    campaign, _facts = known_campaign()
    for name, role in (("op-rita", OPERATOR), ("viewer-vic", VIEWER)):
        MembershipFactory(venture=campaign.venture, user=UserFactory(username=name, role=role))
    return campaign
