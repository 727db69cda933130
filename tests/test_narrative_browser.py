"""Narrative memory in a real browser: which narrative is winning in each segment and how
sure that is, only for the operator's ventures, and why a message got its variant."""

from __future__ import annotations

import pytest
import time_machine
from django.urls import reverse
from playwright.sync_api import expect

from leads.models import Lead
from outreach.dispatch import tick
from outreach.feedback import reply_record
from outreach.models import MessageState, NarrativeStat, OutboundMessage
from outreach.tests.outbox import NOON, running_campaign, variant_sequence
from tests.browser import BROWSER_MARKS, log_in
from tests.factories import IcpSegmentFactory, LeadFactory, MembershipFactory, UserFactory
from tests.proc import REPO
from ventures.roles import OPERATOR

pytestmark = BROWSER_MARKS
SHOTS = REPO / "var" / "screenshots"


@pytest.mark.django_db(transaction=True)
def test_operator_sees_which_narrative_wins_and_why_a_message_got_its_variant(page, settings):
    settings.AICMO_GLOBAL_DAILY_LIMIT = settings.AICMO_RECIPIENT_DOMAIN_DAILY_LIMIT = 100_000
    campaign = running_campaign(name="Spring outreach", daily_limit=100_000)
    variant_sequence(campaign)
    segment = IcpSegmentFactory(venture=campaign.venture, name="RevOps leads")
    Lead.objects.bulk_create(LeadFactory.build_batch(150, campaign=campaign, segment=segment))
    Lead.objects.bulk_create(LeadFactory.build_batch(20, campaign=campaign))
    user = UserFactory(username="op-nora", role=OPERATOR)
    MembershipFactory(venture=campaign.venture, user=user)
    hidden = running_campaign(name="Someone else's")
    NarrativeStat.objects.create(venture=hidden.venture, narrative_angle="secret angle", sends=50)
    with time_machine.travel(NOON, tick=False):
        tick()
    sent = OutboundMessage.objects.filter(state=MessageState.SENT, segment=segment)
    # Peer proof gets a yes from every fourth lead, the others from almost nobody.
    for n, message in enumerate(sent.select_related("template").order_by("id")):
        label = message.template.variant_label
        if (label == "C" and n % 4 == 0) or (label == "B" and n % 25 == 0):
            reply_record(message=message, sentiment="positive", actor="op", notes="Let's talk.")

    # The next batch reads those figures: its choices show them.
    later = Lead.objects.bulk_create(
        LeadFactory.build_batch(30, campaign=campaign, segment=segment)
    )
    with time_machine.travel(NOON, tick=False):
        tick()

    log_in(page, "op-nora")
    page.goto(reverse("admin:outreach_narrativestat_changelist"))
    revops = page.locator("section.narrative-segment", has_text="RevOps leads")
    expect(revops.locator("p.verdict")).to_contain_text("peer proof · C leads:")
    expect(revops.locator("tr.winner")).to_contain_text("★ peer proof · C (winning)")
    expect(page.locator("section.narrative-segment", has_text="No segment")).to_contain_text(
        "Too early to tell: no positive replies yet (20 sent)."
    )
    expect(page.locator("#content")).not_to_contain_text("secret angle")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / "narrative-standings.png", full_page=True)

    message = OutboundMessage.objects.filter(lead__in=later, state=MessageState.SENT).first()
    page.goto(reverse("admin:outreach_outboundmessage_change", args=[message.pk]))
    choice = page.locator("table.narrative-choice")
    expect(choice.locator("tr.chosen")).to_contain_text(message.template.narrative_angle)
    positives = {a["variant"]: a["positive"] for a in message.narrative_choice["arms"]}
    assert positives["C"] > positives["A"] == 0  # the figures at decision time
    expect(choice.locator("tr", has_text="peer proof · C")).to_contain_text(str(positives["C"]))
    expect(page.locator("p.narrative-method")).to_contain_text(message.narrative_choice["seed"])
    page.screenshot(path=SHOTS / "narrative-choice.png", full_page=True)
