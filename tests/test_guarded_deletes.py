"""Deleting what holds history, and taking someone off a suppression list, as a demanding
operator expects: a sequence or mailbox with messages stays (a clear refusal, nothing
deleted); one without is deleted only after a confirm page naming it and a reason, audited;
a kept report's file goes with its row, the page naming the file; a suppression is never
deleted, only lifted, confirmed, with a reason, audited, and never one a person asked for."""

from __future__ import annotations

from pathlib import Path

import pytest
import time_machine
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from leads.models import Lead, ScoringRule, SuppressionEntry
from outreach.dispatch import tick
from outreach.models import Mailbox, OutboundMessage, RoutingRule, Sequence
from outreach.tests.outbox import NOON, running_campaign, two_step_sequence
from reporting.models import ReportFile
from tests.factories import (
    IcpSegmentFactory,
    LeadFactory,
    SuppressionEntryFactory,
    VentureFactory,
)
from tests.http import text
from ventures.models import AuditEvent, IcpSegment, Venture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]


def changelist(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def act(client, model, action: str, objects, **confirm):
    """Post the changelist action for `objects`; with `confirm`, as the confirm page posts."""
    data = {"action": action, ACTION_CHECKBOX_NAME: [o.pk for o in objects]}
    if confirm:
        data["post"] = "yes"
        data.update(confirm)
    return client.post(changelist(model), data, follow=True)


@pytest.fixture
def sent(db):
    """A running campaign with a mailbox whose first emails have gone out."""
    with time_machine.travel(NOON, tick=False):
        campaign = running_campaign()
        sequence = two_step_sequence(campaign)
        box = Mailbox.objects.create(venture=campaign.venture, name="Lena", from_email="lena@v.example",
                                     min_gap_seconds=0, gap_jitter_seconds=0)  # fmt: skip
        box.campaigns.add(campaign)
        LeadFactory.create_batch(2, campaign=campaign)
        tick()
    return campaign, sequence, box


@pytest.mark.parametrize("which", ["sequence", "mailbox"])
def test_a_sequence_or_mailbox_with_messages_is_not_deleted_and_the_operator_is_told_why(
    client, administrator, sent, which
):
    campaign, sequence, box = sent
    obj = sequence if which == "sequence" else box
    client.force_login(administrator)
    page = text(act(client, type(obj), "delete_confirmed", [obj]))
    assert "cannot be deleted" in page and "Nothing was deleted." in page
    assert type(obj).objects.filter(pk=obj.pk).exists()
    # Nor from its page: no Delete link, and the delete address says why.
    change = reverse(f"admin:outreach_{which}_change", args=[obj.pk])
    delete = reverse(f"admin:outreach_{which}_delete", args=[obj.pk])
    assert f'href="{delete}"' not in text(client.get(change))
    page = text(client.post(delete, {"post": "yes"}, follow=True))
    assert "cannot be deleted" in page
    assert type(obj).objects.filter(pk=obj.pk).exists()
    assert OutboundMessage.objects.filter(campaign=campaign).count() == 4


@pytest.mark.parametrize("which", ["sequence", "mailbox"])
def test_one_without_messages_is_deleted_after_a_confirm_page_and_a_reason(
    client, administrator, which
):
    campaign = running_campaign()
    if which == "sequence":
        obj = Sequence.objects.create(campaign=campaign, slug="spare", name="Spare sequence")
    else:
        obj = Mailbox.objects.create(
            venture=campaign.venture, name="Spare", from_email="spare@v.example"
        )
    model = type(obj)
    client.force_login(administrator)
    page = text(act(client, model, "delete_confirmed", [obj]))
    assert 'name="post" value="yes"' in page and str(obj) in page
    assert model.objects.filter(pk=obj.pk).exists()  # shown, not done
    page = text(act(client, model, "delete_confirmed", [obj], reason=""))
    assert model.objects.filter(pk=obj.pk).exists()  # a reason is required
    act(client, model, "delete_confirmed", [obj], reason="Set up by mistake")
    assert not model.objects.filter(pk=obj.pk).exists()
    event = AuditEvent.objects.get(action=f"{which}.delete", entity_id=str(obj.pk))
    assert event.reason == "Set up by mistake" and event.actor == "admin-ann"


def test_a_kept_report_is_deleted_with_its_file_the_confirm_page_naming_the_file(
    client, administrator, campaign, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.AICMO_ARTIFACT_DIR = str(tmp_path)
    path = Path("reports") / campaign.slug / "kept.html"
    (tmp_path / path).parent.mkdir(parents=True)
    (tmp_path / path).write_text("<html>report</html>")
    kept = ReportFile.objects.create(campaign=campaign, format="html", path=path.as_posix(),
                                     sha256="0" * 64, generated_by="t")  # fmt: skip
    client.force_login(administrator)
    page = text(act(client, ReportFile, "delete_confirmed", [kept]))
    assert f"{kept}: {path.as_posix()}" in page
    assert "removed from the artifact directory" in page
    with django_capture_on_commit_callbacks(execute=True):
        act(client, ReportFile, "delete_confirmed", [kept], reason="Sent the wrong figures")
    assert not ReportFile.objects.filter(pk=kept.pk).exists()
    assert not (tmp_path / path).exists()
    event = AuditEvent.objects.get(action="reportfile.delete")
    assert event.reason == "Sent the wrong figures" and event.before["path"] == path.as_posix()


def test_a_suppression_is_lifted_only_confirmed_with_a_reason_and_audited(
    client, administrator, venture
):
    entry = SuppressionEntryFactory(venture=venture, value="ann@prospect.example", source="admin")
    client.force_login(administrator)
    page = text(act(client, SuppressionEntry, "lift_suppressions", [entry]))
    assert "ann@prospect.example" in page and "may go out again" in page
    act(client, SuppressionEntry, "lift_suppressions", [entry], reason="")
    assert SuppressionEntry.objects.filter(pk=entry.pk).exists()  # no reason, no lift
    page = text(act(client, SuppressionEntry, "lift_suppressions", [entry], reason="Asked back in"))
    assert "Lifted 1 suppression entry." in page
    assert not SuppressionEntry.objects.filter(pk=entry.pk).exists()
    event = AuditEvent.objects.get(action="leads.suppression_lift")
    assert event.reason == "Asked back in" and event.venture_id == venture.pk
    assert event.before["lifted"] == 1 and event.before["identity_hashes"] == [entry.identity_hash]
    assert "ann@prospect.example" not in str(event.before)  # never an address in the trail


def test_a_suppression_is_never_deleted_and_its_page_offers_lift(client, administrator, venture):
    entry = SuppressionEntryFactory(venture=venture, source="admin")
    client.force_login(administrator)
    change = reverse("admin:leads_suppressionentry_change", args=[entry.pk])
    delete = reverse("admin:leads_suppressionentry_delete", args=[entry.pk])
    page = text(client.get(change))
    assert "Lift suppression…" in page and f'href="{delete}"' not in page
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert SuppressionEntry.objects.filter(pk=entry.pk).exists()


@pytest.mark.parametrize("source", ["unsubscribe (link)", "complaint", "erasure"])
def test_what_a_person_asked_for_is_never_lifted(client, administrator, venture, source):
    asked = SuppressionEntryFactory(venture=venture, source=source)
    other = SuppressionEntryFactory(venture=venture, source="admin")
    client.force_login(administrator)
    page = text(act(client, SuppressionEntry, "lift_suppressions", [asked, other], reason="x"))
    assert f"Nothing was lifted: {asked} was listed by {source}" in page
    assert SuppressionEntry.objects.filter(pk__in=[asked.pk, other.pk]).count() == 2
    change = reverse("admin:leads_suppressionentry_change", args=[asked.pk])
    assert "Lift suppression…" not in text(client.get(change))


def test_an_operator_cannot_lift_a_suppression(client, operator, venture):
    entry = SuppressionEntryFactory(venture=venture, source="admin")
    client.force_login(operator)
    act(client, SuppressionEntry, "lift_suppressions", [entry], reason="x")
    assert SuppressionEntry.objects.filter(pk=entry.pk).exists()
    response = client.get(changelist(SuppressionEntry))
    assert "lift_suppressions" not in text(response)


# --- Ventures and ICP segments: what their deletion would take with it ---------------------


def test_a_venture_with_campaigns_or_suppressions_is_not_deleted_and_says_what_keeps_it(
    client, administrator, campaign
):
    venture = campaign.venture
    spare = VentureFactory(name="Spare Co")
    SuppressionEntryFactory(venture=spare)
    client.force_login(administrator)

    page = text(act(client, Venture, "delete_confirmed", [venture, spare]))

    assert (
        f"Venture '{venture}' still has campaigns, which keep it, and cannot be "
        "deleted. Kill it instead to stop all its sending; its history stays for reports."
    ) in page
    assert (
        "Venture 'Spare Co' has 1 suppression entry (addresses never to email) and "
        "cannot be deleted: they would go with it, and a suppression is never deleted, only "
        "lifted."
    ) in page
    assert "Nothing was deleted." in page
    assert Venture.objects.filter(pk__in=[venture.pk, spare.pk]).count() == 2
    # Nor from its page: no Delete link, and the delete address says why.
    change = reverse("admin:ventures_venture_change", args=[spare.pk])
    delete = reverse("admin:ventures_venture_delete", args=[spare.pk])
    assert f'href="{delete}"' not in text(client.get(change))
    assert "suppression entry" in text(client.post(delete, {"post": "yes"}, follow=True))
    assert SuppressionEntry.objects.filter(venture=spare).exists()


def test_a_venture_nothing_keeps_is_deleted_after_a_page_naming_what_goes_with_it(
    client, administrator
):
    venture = VentureFactory(name="Trial Co")
    IcpSegmentFactory.create_batch(2, venture=venture)
    ScoringRule.objects.create(venture=venture, label="senior title", field="title",
                               values=["cto"], points=20)  # fmt: skip
    client.force_login(administrator)

    page = text(act(client, Venture, "delete_confirmed", [venture]))

    assert "Trial Co (with 2 ICP segments and 1 scoring rule)" in page
    assert Venture.objects.filter(pk=venture.pk).exists()  # shown, not done
    act(client, Venture, "delete_confirmed", [venture], reason="Trial never started")
    assert not Venture.objects.filter(pk=venture.pk).exists()
    assert not ScoringRule.objects.exists()
    event = AuditEvent.objects.get(action="venture.delete", entity_id=str(venture.pk))
    assert (event.reason, event.actor) == ("Trial never started", "admin-ann")


def test_a_segment_a_running_campaign_routes_by_is_not_deleted(client, administrator):
    campaign = running_campaign(name="Spring outreach")
    segment = IcpSegmentFactory(venture=campaign.venture, name="DACH RevOps")
    sequence = two_step_sequence(campaign)
    RoutingRule.objects.create(campaign=campaign, sequence=sequence, segment=segment)
    client.force_login(administrator)

    page = text(act(client, IcpSegment, "delete_confirmed", [segment]))

    assert (
        "ICP segment 'DACH RevOps' routes the leads of running campaign 'Spring "
        "outreach' and cannot be deleted: its routing rules would go with it and new leads "
        "would fall to the default sequence. Change or remove those rules first."
    ) in page
    assert IcpSegment.objects.filter(pk=segment.pk).exists()
    assert RoutingRule.objects.filter(segment=segment).exists()


def test_a_segment_messages_were_composed_for_is_not_deleted(client, administrator, sent):
    campaign, _, _ = sent
    segment = IcpSegmentFactory(venture=campaign.venture, name="Nordics")
    OutboundMessage.objects.filter(campaign=campaign).update(segment=segment)
    client.force_login(administrator)

    page = text(act(client, IcpSegment, "delete_confirmed", [segment]))

    assert "ICP segment 'Nordics' has 4 messages composed for it and cannot be" in page
    assert IcpSegment.objects.filter(pk=segment.pk).exists()


def test_a_draft_campaigns_segment_is_deleted_the_page_naming_its_rules_and_leads(
    client, administrator, campaign
):
    segment = IcpSegmentFactory(venture=campaign.venture, name="Benelux")
    sequence = two_step_sequence(campaign)  # a draft campaign: its routing may change
    RoutingRule.objects.create(campaign=campaign, sequence=sequence, segment=segment)
    leads = LeadFactory.create_batch(3, campaign=campaign, segment=segment)
    client.force_login(administrator)

    page = text(act(client, IcpSegment, "delete_confirmed", [segment]))

    assert (
        f"Benelux of {campaign.venture} (with 1 routing rule; 3 leads lose their segment)" in page
    )
    assert "Its routing rules go with it, and its leads stay without a segment" in page
    act(client, IcpSegment, "delete_confirmed", [segment], reason="Merged into DACH")
    assert not IcpSegment.objects.filter(pk=segment.pk).exists()
    assert not RoutingRule.objects.exists()
    assert Lead.objects.filter(pk__in=[lead.pk for lead in leads], segment=None).count() == 3
    event = AuditEvent.objects.get(action="icpsegment.delete", entity_id=str(segment.pk))
    assert event.reason == "Merged into DACH"
