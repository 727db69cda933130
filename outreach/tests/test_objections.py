"""Reply text and objection memory: the new part of a reply, filed under an objection by rules
an operator can refine, counted per segment and narrative."""

from __future__ import annotations

import pytest
import time_machine

from outreach.dispatch import tick
from outreach.feedback import Incoming, feedback_record, reply_record, reply_text_of
from outreach.models import ObjectionRule, OutboundMessage
from outreach.selectors import objection_counts
from outreach.tests.outbox import NOON, running_campaign, two_step_sequence
from tests.factories import IcpSegmentFactory, LeadFactory, objection_rules_restore

pytestmark = pytest.mark.django_db


@pytest.fixture
def rules():
    """The starting rules the migration adds (flushed by transactional tests: made again)."""
    objection_rules_restore()


@pytest.fixture
def sent():
    with time_machine.travel(NOON, tick=False):
        campaign = running_campaign()
        sequence = two_step_sequence(campaign)
        opener = sequence.steps.get(position=1).templates.get()
        opener.narrative_angle, opener.variant_label = "cost of manual reporting", "A"
        opener.save()
        segment = IcpSegmentFactory(venture=campaign.venture, name="RevOps leads")
        LeadFactory.create_batch(4, campaign=campaign, segment=segment)
        tick()
    return list(OutboundMessage.objects.filter(step__position=1).order_by("id"))


def reply(message, text: str, n: int = 0):
    event, _ = feedback_record(
        Incoming(source="postmark", kind="replied", event_id=f"r{message.pk}-{n}",
                 recipient=message.recipient, thread_ids=[message.message_id], text=text)
    )  # fmt: skip
    return event


QUOTED = "\n\nOn Wed, Dec 2, 2026 at 12:00 PM Sam Sender <sam@venture.example> wrote:\n> Hi,\n> ..."


def test_the_new_part_of_a_reply_is_kept_apart_from_the_quoted_thread():
    assert (
        reply_text_of("Yes, Friday works.\n\nBest,\nLena" + QUOTED)
        == "Yes, Friday works.\n\nBest,\nLena"
    )
    german = "Zu teuer für uns.\n\nAm Mi., 2. Dez. 2026 um 12:00 Uhr schrieb Sam <sam@venture.example>:\n> Hallo"
    assert reply_text_of(german) == "Zu teuer für uns."
    assert reply_text_of("") == ""


@pytest.mark.parametrize(
    ("text", "objection", "sentiment"),
    [
        ("Honestly this is too expensive for a team our size.", "price", "objection"),
        ("Not now, maybe next quarter.", "timing", "objection"),
        ("I'm not the right person, talk to my colleague Jan.", "not_right_person", "objection"),
        ("We already use Looker for this.", "has_solution", "objection"),
        ("Not interested, please remove me.", "not_interested", "negative"),
        ("Das ist uns zu teuer.", "price", "objection"),
        ("Sounds good, call me on Friday.", "", ""),
    ],
)
def test_a_reply_is_filed_under_the_first_rule_it_matches(rules, sent, text, objection, sentiment):
    event = reply(sent[0], text + QUOTED)
    assert (event.objection, event.sentiment) == (objection, sentiment)
    assert event.reply_text == text


def test_the_quoted_thread_does_not_classify_a_reply(rules, sent):
    # Our own email, quoted below, talks about pricing: only the new part counts.
    event = reply(sent[0], "Let's talk." + "\n\nOn Wed, Sam wrote:\n> our pricing starts at ...")
    assert event.objection == ""


def test_an_operator_refines_the_rules(rules, sent):
    assert reply(sent[0], "We're locked into a contract until 2028.", 1).objection == ""
    ObjectionRule.objects.create(
        category="has_solution", pattern=r"locked into a contract", priority=5
    )
    assert reply(sent[1], "We're locked into a contract until 2028.", 2).objection == "has_solution"


def test_an_invalid_pattern_is_refused_by_the_form_and_skipped_if_saved_anyway(rules, sent):
    from django.core.exceptions import ValidationError

    bad = ObjectionRule(category="price", pattern="(unclosed", priority=1)
    with pytest.raises(ValidationError, match="Not a valid regular expression"):
        bad.full_clean()
    bad.save()  # around the form: classification skips it
    assert reply(sent[0], "Too expensive.").objection == "price"


def test_a_negative_reply_no_rule_knows_is_other(rules, sent):
    event = reply_record(message=sent[0], sentiment="negative", actor="op", notes="Grumpy reply.")
    assert (event.objection, event.sentiment) == ("other", "negative")
    noted = reply_record(
        message=sent[1], sentiment="objection", actor="op", notes="Budget is gone."
    )
    assert noted.objection == "price"  # the operator's note is classified


def test_objections_are_counted_per_segment_and_narrative(rules, sent):
    reply(sent[0], "Too expensive.")
    reply(sent[1], "Our budget is spent.")
    reply(sent[2], "Not now.")
    reply(sent[3], "Great, let's talk.")
    counts = objection_counts(sent[0].campaign)
    assert counts == [
        {"objection": "price", "segment": "RevOps leads", "narrative": "cost of manual reporting",
         "variant": "A", "replies": 2},
        {"objection": "timing", "segment": "RevOps leads", "narrative": "cost of manual reporting",
         "variant": "A", "replies": 1},
    ]  # fmt: skip
