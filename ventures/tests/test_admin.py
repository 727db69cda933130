"""The operator console: scoping per role, permissions, POST-only actions, confirm flows, audit."""

from __future__ import annotations

import html
import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import (
    CampaignFactory,
    IcpSegmentFactory,
    MembershipFactory,
    UserFactory,
    VentureFactory,
)
from tests.http import text
from ventures.admin_toolkit import CappedCountPaginator
from ventures.models import (
    AuditEvent,
    Campaign,
    CampaignStatus,
    IcpSegment,
    SendMode,
    SystemControl,
    Venture,
    VentureMembership,
)
from ventures.roles import OPERATOR, VIEWER
from ventures.services import (
    audit_record,
    campaign_set_kill_switch,
    campaign_transition,
    global_kill_switch_set,
    venture_set_kill_switch,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", is_superuser=True)


def admin_url(name: str, *args) -> str:
    return reverse(f"admin:ventures_{name}", args=args)


def op_url(obj, operation: str) -> str:
    return admin_url(f"{obj._meta.model_name}_operation", obj.pk, operation)


def run_action(client, action: str, objects, **extra):
    data = {"action": action, ACTION_CHECKBOX_NAME: [o.pk for o in objects], **extra}
    return client.post(admin_url("campaign_changelist"), data, follow=True)


def running(campaign: Campaign) -> Campaign:
    return campaign_transition(campaign=campaign, action="start", actor="test")


def changelist_rows(client, name: str) -> list:
    response = client.get(admin_url(f"{name}_changelist"))
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def campaign_form_data(client, campaign, **changes) -> dict:
    """The campaign change form's current values as a browser would post them, plus changes."""
    form = client.get(admin_url("campaign_change", campaign.pk)).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if k in form.fields and v is not None}
    data.update(
        venture=campaign.venture.pk,
        send_window_start=campaign.send_window_start.strftime("%H:%M"),
        send_window_end=campaign.send_window_end.strftime("%H:%M"),
        send_days=list(campaign.send_days),
    )
    data.update(changes)
    return data


# --- Scoping -------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_member_sees_only_campaigns_of_own_ventures(request, client, role, campaign):
    other = CampaignFactory()
    client.force_login(request.getfixturevalue(role))
    assert changelist_rows(client, "campaign") == [campaign]
    assert changelist_rows(client, "venture") == [campaign.venture]
    assert other.venture.name not in text(client.get(admin_url("campaign_changelist")))


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_member_sees_only_segments_of_own_ventures(request, client, role, venture):
    own = IcpSegmentFactory(venture=venture)
    IcpSegmentFactory()
    client.force_login(request.getfixturevalue(role))
    assert changelist_rows(client, "icpsegment") == [own]


def test_administrator_sees_every_venture_and_campaign(client, administrator, campaign):
    other = CampaignFactory()
    client.force_login(administrator)
    assert set(changelist_rows(client, "campaign")) == {campaign, other}
    assert set(changelist_rows(client, "venture")) == {campaign.venture, other.venture}


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_other_ventures_detail_pages_are_404(request, client, role, other_venture_campaign):
    segment = IcpSegmentFactory(venture=other_venture_campaign.venture)
    client.force_login(request.getfixturevalue(role))
    urls = [
        admin_url("campaign_change", other_venture_campaign.pk),
        admin_url("campaign_history", other_venture_campaign.pk),
        admin_url("campaign_delete", other_venture_campaign.pk),
        admin_url("venture_change", other_venture_campaign.venture.pk),
        admin_url("icpsegment_change", segment.pk),
        op_url(other_venture_campaign, "kill"),
    ]
    for url in urls:
        assert client.get(url).status_code == 404, url
    assert client.post(admin_url("campaign_change", other_venture_campaign.pk)).status_code == 404


def test_missing_campaign_is_404_not_a_redirect(client, administrator):
    client.force_login(administrator)
    assert client.get(admin_url("campaign_change", 999999)).status_code == 404


def test_operator_cannot_operate_another_ventures_campaign(
    client, operator, other_venture_campaign
):
    client.force_login(operator)
    assert client.post(op_url(other_venture_campaign, "start")).status_code == 404
    run_action(client, "start_campaigns", [other_venture_campaign])
    other_venture_campaign.refresh_from_db()
    assert other_venture_campaign.status == CampaignStatus.DRAFT
    assert not AuditEvent.objects.filter(action="campaign.start").exists()


def test_bulk_action_acts_only_on_visible_campaigns(
    client, operator, campaign, other_venture_campaign
):
    client.force_login(operator)
    confirm = text(run_action(client, "start_campaigns", [campaign, other_venture_campaign]))
    assert campaign.name in confirm and other_venture_campaign.name not in confirm
    response = run_action(client, "start_campaigns", [campaign, other_venture_campaign], post="yes")
    assert "Started 1 campaign." in text(response)
    campaign.refresh_from_db()
    other_venture_campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING
    assert other_venture_campaign.status == CampaignStatus.DRAFT


def test_venture_filter_offers_only_visible_ventures(client, operator, campaign):
    hidden = VentureFactory(name="Hidden Ventures Ltd")
    client.force_login(operator)
    for name in ("campaign", "icpsegment", "auditevent"):
        page = text(client.get(admin_url(f"{name}_changelist")))
        assert campaign.venture.name in page
        assert hidden.name not in page


def test_campaign_form_offers_only_visible_ventures(client, operator, venture):
    VentureFactory(name="Hidden Ventures Ltd")
    client.force_login(operator)
    response = client.get(admin_url("campaign_add"))
    assert list(response.context["adminform"].form.fields["venture"].queryset) == [venture]


def test_operator_cannot_create_a_campaign_in_another_venture(client, operator):
    hidden = VentureFactory()
    client.force_login(operator)
    response = client.post(
        admin_url("campaign_add"),
        {
            "venture": hidden.pk,
            "name": "Sneaky",
            "slug": "sneaky",
            "daily_send_limit": 10,
            "warmup_daily_increase": 0,
            "send_days": ["1", "2", "3", "4", "5"],
            "send_window_start": "09:00",
            "send_window_end": "17:00",
            "value_per_positive_reply": "0",
        },
    )
    assert response.status_code == 200
    assert "venture" in response.context["adminform"].form.errors
    assert not Campaign.objects.filter(slug="sneaky").exists()


def test_other_ventures_audit_events_are_hidden(client, operator, campaign, other_venture_campaign):
    own = audit_record(actor="t", action="campaign.note", entity=campaign)
    hidden = audit_record(actor="t", action="campaign.note", entity=other_venture_campaign)
    system = audit_record(actor="t", action="global.kill", entity=SystemControl.load())
    client.force_login(operator)
    assert changelist_rows(client, "auditevent") == [own]
    assert client.get(admin_url("auditevent_change", hidden.pk)).status_code == 404
    assert client.get(admin_url("auditevent_change", system.pk)).status_code == 404
    assert client.get(admin_url("auditevent_change", own.pk)).status_code == 200


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_members_cannot_change_memberships(request, client, role, venture):
    client.force_login(request.getfixturevalue(role))
    response = client.get(admin_url("venture_change", venture.pk))
    assert response.status_code == 200
    inline = response.context["inline_admin_formsets"]
    assert all(not f.has_add_permission and not f.has_change_permission for f in inline)
    assert client.get("/admin/ventures/venturemembership/").status_code == 404


def test_operator_does_not_see_global_kill_switch_or_heartbeats(client, operator):
    client.force_login(operator)
    assert client.get(admin_url("systemcontrol_changelist")).status_code == 403
    assert client.get(admin_url("workerheartbeat_changelist")).status_code == 403
    index = client.get(reverse("admin:index"))
    assert "global kill switch" not in text(index).lower()


# --- Permissions ---------------------------------------------------------------------------------


def test_operator_cannot_kill_a_campaign(client, operator, campaign):
    running(campaign)
    client.force_login(operator)
    assert client.get(op_url(campaign, "kill")).status_code == 403
    assert client.post(op_url(campaign, "kill"), {"post": "yes", "reason": "x"}).status_code == 403
    assert client.post(op_url(campaign, "unkill"), {"post": "yes"}).status_code == 403
    response = run_action(client, "kill_campaigns", [campaign], post="yes", reason="x")
    assert "No action selected." in text(response)
    campaign.refresh_from_db()
    assert campaign.kill_switch is False


def test_an_operator_gives_a_campaign_a_new_capture_link_after_confirming(
    client, operator, campaign
):
    from leads.views import capture_url

    old = capture_url(campaign)
    client.force_login(operator)
    page = text(client.get(op_url(campaign, "new-capture-link")))
    assert "stops working at once" in page
    campaign.refresh_from_db()
    assert capture_url(campaign) == old  # the confirm page changed nothing

    response = client.post(
        op_url(campaign, "new-capture-link"), {"post": "yes", "reason": "spam"}, follow=True
    )

    assert "a new lead-capture link; the old one no longer works" in text(response)
    campaign.refresh_from_db()
    assert campaign.capture_key and capture_url(campaign) != old
    event = AuditEvent.objects.get(action="campaign.capture_link")
    assert event.reason == "spam" and campaign.capture_key not in str(event.after)


def test_the_changelist_action_renews_the_capture_links_of_the_selected_campaigns(
    client, operator, campaign
):
    other = CampaignFactory(venture=campaign.venture)
    client.force_login(operator)
    confirm = run_action(client, "new_capture_links", [campaign, other])
    assert "stops working at once" in text(confirm)
    run_action(client, "new_capture_links", [campaign, other], post="yes", reason="")
    keys = {c.capture_key for c in Campaign.objects.filter(pk__in=[campaign.pk, other.pk])}
    assert len(keys) == 2 and "" not in keys


def test_a_viewer_cannot_renew_a_capture_link(client, viewer, campaign):
    client.force_login(viewer)
    assert client.get(op_url(campaign, "new-capture-link")).status_code == 403
    response = client.post(op_url(campaign, "new-capture-link"), {"post": "yes"})
    assert response.status_code == 403
    campaign.refresh_from_db()
    assert campaign.capture_key == ""


def test_operator_cannot_switch_a_campaign_to_live(client, operator, campaign):
    client.force_login(operator)
    assert client.get(op_url(campaign, "go-live")).status_code == 403
    assert client.post(op_url(campaign, "go-live"), {"post": "yes"}).status_code == 403
    run_action(client, "go_live_campaigns", [campaign], post="yes")
    campaign.refresh_from_db()
    assert campaign.mode == SendMode.PROOF


def test_operator_cannot_toggle_a_venture_kill_switch(client, operator, venture):
    client.force_login(operator)
    assert client.get(op_url(venture, "kill")).status_code == 403
    venture.refresh_from_db()
    assert venture.kill_switch is False


def test_viewer_cannot_operate_campaigns(client, viewer, campaign):
    client.force_login(viewer)
    for operation in ("start", "stop", "go-proof"):
        assert client.post(op_url(campaign, operation)).status_code == 403
    run_action(client, "start_campaigns", [campaign])
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT
    page = client.get(admin_url("campaign_change", campaign.pk))
    assert page.context["operation_buttons"] == []


def test_operator_sees_only_the_buttons_it_may_use(client, operator, campaign):
    running(campaign)
    client.force_login(operator)
    page = client.get(admin_url("campaign_change", campaign.pk))
    assert [b["name"] for b in page.context["operation_buttons"]] == [
        "pause",
        "stop",
        "new-capture-link",
    ]


def test_administrator_sees_kill_and_live_buttons(client, administrator, campaign):
    client.force_login(administrator)
    page = client.get(admin_url("campaign_change", campaign.pk))
    names = [b["name"] for b in page.context["operation_buttons"]]
    assert names == ["start", "stop", "kill", "go-live", "new-capture-link"]
    assert op_url(campaign, "kill") in text(page)


# --- POST-only operations and their reports ------------------------------------------------------


@pytest.mark.parametrize("operation", ["start", "pause", "resume", "stop", "go-proof"])
def test_every_campaign_button_confirms_before_it_changes_anything(
    client, administrator, campaign, operation
):
    campaign.mode = SendMode.LIVE
    campaign.save()
    client.force_login(administrator)
    for response in (
        client.get(op_url(campaign, operation)),
        client.post(op_url(campaign, operation)),
    ):
        assert response.status_code == 200
        assert "are you sure?" in text(response)
        assert f"{campaign.name} ({campaign.venture.name}): Draft" in text(response)
    assert client.put(op_url(campaign, operation)).status_code == 405
    campaign.refresh_from_db()
    assert (campaign.status, campaign.mode) == (CampaignStatus.DRAFT, SendMode.LIVE)
    assert not AuditEvent.objects.for_entity(campaign).exists()


def test_start_button_starts_the_campaign_and_says_so(client, operator, campaign):
    client.force_login(operator)
    response = client.post(op_url(campaign, "start"), {"post": "yes"})
    assert response.status_code == 302
    assert response.url == admin_url("campaign_change", campaign.pk)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING
    event = AuditEvent.objects.for_entity(campaign).get(action="campaign.start")
    assert event.actor == operator.username
    assert "Started 1 campaign." in text(client.get(response.url))


def test_illegal_transition_is_an_error_message_not_a_500(client, operator, campaign):
    client.force_login(operator)
    response = client.post(op_url(campaign, "pause"), {"post": "yes"}, follow=True)
    assert response.status_code == 200
    assert f"Cannot pause campaign '{campaign.slug}': it is Draft." in text(response)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT


def test_bulk_start_reports_count_and_each_refusal(client, operator, venture):
    drafts = CampaignFactory.create_batch(2, venture=venture)
    already = running(CampaignFactory(venture=venture))
    client.force_login(operator)
    response = run_action(client, "start_campaigns", [*drafts, already], post="yes")
    page = text(response)
    assert "Started 2 campaigns." in page
    assert f"Cannot start campaign '{already.slug}': it is Running." in page
    statuses = set(Campaign.objects.filter(venture=venture).values_list("status", flat=True))
    assert statuses == {CampaignStatus.RUNNING}


def test_pause_resume_stop_round_trip_through_actions(client, operator, campaign):
    client.force_login(operator)
    for action, expected in [
        ("start_campaigns", CampaignStatus.RUNNING),
        ("pause_campaigns", CampaignStatus.PAUSED),
        ("resume_campaigns", CampaignStatus.RUNNING),
        ("stop_campaigns", CampaignStatus.STOPPED),
    ]:
        run_action(client, action, [campaign], post="yes")
        campaign.refresh_from_db()
        assert campaign.status == expected
    actions = list(AuditEvent.objects.for_entity(campaign).values_list("action", flat=True))
    assert actions == ["campaign.stop", "campaign.resume", "campaign.pause", "campaign.start"]


# --- Kill: confirm first -------------------------------------------------------------------------


def test_kill_get_shows_a_confirm_page_and_changes_nothing(client, administrator, campaign):
    running(campaign)
    client.force_login(administrator)
    response = client.get(op_url(campaign, "kill"))
    assert response.status_code == 200
    assert response.templates[0].name == "admin/ventures/confirm_operation.html"
    assert "Yes, kill" in text(response)
    assert campaign.name in text(response)
    campaign.refresh_from_db()
    assert campaign.kill_switch is False


def test_kill_confirmed_with_reason_kills_and_audits(client, administrator, campaign):
    running(campaign)
    client.force_login(administrator)
    response = client.post(
        op_url(campaign, "kill"), {"post": "yes", "reason": "Client complaint"}, follow=True
    )
    assert "Killed 1 campaign." in text(response)
    campaign.refresh_from_db()
    assert campaign.kill_switch is True
    assert campaign.kill_reason == "Client complaint"
    assert campaign.status == CampaignStatus.RUNNING  # the switch halts, the status stays
    event = AuditEvent.objects.for_entity(campaign).get(action="campaign.kill")
    assert (event.actor, event.reason) == (administrator.username, "Client complaint")


def test_kill_without_a_reason_is_refused_on_the_confirm_page(client, administrator, campaign):
    client.force_login(administrator)
    response = client.post(op_url(campaign, "kill"), {"post": "yes", "reason": "  "})
    assert response.status_code == 200
    assert "Give a reason" in text(response)
    campaign.refresh_from_db()
    assert campaign.kill_switch is False


def test_bulk_kill_action_confirms_before_killing(client, administrator, venture):
    campaigns = CampaignFactory.create_batch(2, venture=venture)
    client.force_login(administrator)
    first = run_action(client, "kill_campaigns", campaigns)
    assert first.templates[0].name == "admin/ventures/confirm_operation.html"
    assert not Campaign.objects.filter(kill_switch=True).exists()
    second = run_action(client, "kill_campaigns", campaigns, post="yes", reason="Spam trap hit")
    assert "Killed 2 campaigns." in text(second)
    assert Campaign.objects.filter(kill_switch=True, kill_reason="Spam trap hit").count() == 2
    assert AuditEvent.objects.filter(action="campaign.kill", reason="Spam trap hit").count() == 2


def test_unkill_lifts_the_kill_switch_and_reports_unchanged_ones(client, administrator, venture):
    killed, alive = CampaignFactory.create_batch(2, venture=venture)
    client.force_login(administrator)
    client.post(op_url(killed, "kill"), {"post": "yes", "reason": "r"})
    confirm = run_action(client, "unkill_campaigns", [killed, alive])
    assert "starts sending again" in text(confirm)
    killed.refresh_from_db()
    assert killed.kill_switch is True  # nothing happens before the confirmation
    response = run_action(client, "unkill_campaigns", [killed, alive], post="yes", reason="fixed")
    page = text(response)
    assert "Lifted the kill switch of 1 campaign." in page
    assert "1 campaign not killed." in page
    killed.refresh_from_db()
    assert killed.kill_switch is False


def test_campaign_unkill_button_confirms_before_sending_resumes(client, administrator, campaign):
    running(campaign)
    client.force_login(administrator)
    client.post(op_url(campaign, "kill"), {"post": "yes", "reason": "complaint"})
    page = client.get(op_url(campaign, "unkill"))
    assert page.status_code == 200
    assert "starts sending again" in text(page)
    campaign.refresh_from_db()
    assert campaign.kill_switch is True
    client.post(op_url(campaign, "unkill"), {"post": "yes", "reason": "resolved"})
    campaign.refresh_from_db()
    assert campaign.kill_switch is False
    event = AuditEvent.objects.for_entity(campaign).get(action="campaign.unkill")
    assert event.reason == "resolved"


# --- Live mode: confirm first, preflight enforced -----------------------------------------------


def test_going_live_while_running_is_refused_when_preflight_fails(client, administrator, campaign):
    running(campaign)
    client.force_login(administrator)
    confirm = client.get(op_url(campaign, "go-live"))
    assert confirm.status_code == 200
    assert "Preflight for live mode fails" in text(confirm)
    response = client.post(op_url(campaign, "go-live"), {"post": "yes"}, follow=True)
    page = text(response)
    assert f"Cannot switch running campaign '{campaign.slug}' to live: preflight fails" in page
    assert "AICMO_SEND_MODE is proof" in page
    campaign.refresh_from_db()
    assert campaign.mode == SendMode.PROOF
    assert not AuditEvent.objects.filter(action="campaign.mode").exists()


def test_going_live_while_draft_is_allowed_and_audited(client, administrator, campaign):
    client.force_login(administrator)
    response = client.post(
        op_url(campaign, "go-live"), {"post": "yes", "reason": "Client signed off"}, follow=True
    )
    assert "Switched 1 campaign to live mode." in text(response)
    campaign.refresh_from_db()
    assert campaign.mode == SendMode.LIVE
    event = AuditEvent.objects.for_entity(campaign).get(action="campaign.mode")
    assert (event.before, event.after, event.reason) == (
        {"mode": "proof"},
        {"mode": "live"},
        "Client signed off",
    )


def test_bulk_go_live_confirms_first(client, administrator, campaign):
    client.force_login(administrator)
    first = run_action(client, "go_live_campaigns", [campaign])
    assert first.templates[0].name == "admin/ventures/confirm_operation.html"
    campaign.refresh_from_db()
    assert campaign.mode == SendMode.PROOF
    run_action(client, "go_live_campaigns", [campaign], post="yes")
    campaign.refresh_from_db()
    assert campaign.mode == SendMode.LIVE


def test_operator_may_switch_back_to_proof(client, operator, campaign):
    campaign.mode = SendMode.LIVE
    campaign.save()
    client.force_login(operator)
    client.post(op_url(campaign, "go-proof"), {"post": "yes"})
    campaign.refresh_from_db()
    assert campaign.mode == SendMode.PROOF


def test_state_fields_are_not_editable_in_the_change_form(client, administrator, campaign):
    client.force_login(administrator)
    form = client.get(admin_url("campaign_change", campaign.pk)).context["adminform"].form
    assert not {"status", "mode", "kill_switch", "kill_reason"} & set(form.fields)
    data = campaign_form_data(
        client, campaign, daily_send_limit=80, status="running", mode="live", kill_switch="on"
    )
    data["_save"] = "Save"
    response = client.post(admin_url("campaign_change", campaign.pk), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    campaign.refresh_from_db()
    assert campaign.daily_send_limit == 80
    assert (campaign.status, campaign.mode, campaign.kill_switch) == ("draft", "proof", False)


def test_a_campaign_cannot_be_moved_to_another_venture(client, administrator, campaign):
    from tests.factories import VentureFactory

    other = VentureFactory()
    client.force_login(administrator)
    form = client.get(admin_url("campaign_change", campaign.pk)).context["adminform"].form
    assert "venture" not in form.fields
    data = campaign_form_data(client, campaign, daily_send_limit=70)
    data.update(venture=other.pk, _save="Save")
    response = client.post(admin_url("campaign_change", campaign.pk), data)
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.venture_id, campaign.daily_send_limit) == (campaign.venture.pk, 70)
    assert campaign.venture_id != other.pk
    # A new campaign still chooses its venture.
    add = client.get(admin_url("campaign_add")).context["adminform"].form
    assert "venture" in add.fields


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_lead_can_only_name_its_campaigns_venture_on_postgresql():
    from django.db import IntegrityError, transaction

    from leads.models import Lead
    from tests.factories import CampaignFactory, VentureFactory

    campaign = CampaignFactory()
    stranger = VentureFactory()
    refused = 'violates its reference to "ventures_campaign"'  # leads/0008's check
    with pytest.raises(IntegrityError, match=refused), transaction.atomic():
        Lead.objects.create(campaign=campaign, venture=stranger, email_key="x@y.example")
    Lead.objects.create(campaign=campaign, venture=campaign.venture, email_key="x@y.example")
    still = 'is still referenced from table "leads_lead"'
    with pytest.raises(IntegrityError, match=still), transaction.atomic():
        type(campaign).objects.filter(pk=campaign.pk).update(venture=stranger)


# --- Venture and global kill switches ------------------------------------------------------------


def test_administrator_kills_and_unkills_a_venture_after_confirming(client, administrator, venture):
    client.force_login(administrator)
    assert "Yes, kill" in text(client.get(op_url(venture, "kill")))
    client.post(op_url(venture, "kill"), {"post": "yes", "reason": "Domain blacklisted"})
    venture.refresh_from_db()
    assert (venture.kill_switch, venture.kill_reason) == (True, "Domain blacklisted")
    assert "Yes, unkill" in text(client.get(op_url(venture, "unkill")))
    venture.refresh_from_db()
    assert venture.kill_switch is True
    client.post(op_url(venture, "unkill"), {"post": "yes"})
    venture.refresh_from_db()
    assert venture.kill_switch is False
    actions = AuditEvent.objects.for_entity(venture).values_list("action", flat=True)
    assert list(actions) == ["venture.unkill", "venture.kill"]


def test_administrator_toggles_the_global_kill_switch_after_confirming(client, administrator):
    client.force_login(administrator)
    page = client.get(admin_url("systemcontrol_changelist"), follow=True)
    assert [b["name"] for b in page.context["operation_buttons"]] == ["kill"]
    control = SystemControl.load()
    assert "Yes, stop all sending" in text(client.get(op_url(control, "kill")))
    control.refresh_from_db()
    assert control.kill_switch is False
    response = client.post(
        op_url(control, "kill"), {"post": "yes", "reason": "Incident 42"}, follow=True
    )
    assert "Global kill switch turned ON" in text(response)
    control.refresh_from_db()
    assert (control.kill_switch, control.kill_reason) == (True, "Incident 42")
    assert AuditEvent.objects.filter(action="global.kill", reason="Incident 42").count() == 1
    campaigns_page = text(client.get(admin_url("campaign_changelist")))
    assert "The global kill switch is ON: nothing is sent." in campaigns_page


def test_global_kill_switch_form_cannot_be_edited_directly(client, administrator):
    control = SystemControl.load()
    client.force_login(administrator)
    response = client.post(admin_url("systemcontrol_change", control.pk), {"kill_switch": "on"})
    assert response.status_code == 403
    control.refresh_from_db()
    assert control.kill_switch is False


def test_operator_cannot_toggle_the_global_kill_switch(client, operator):
    control = SystemControl.load()
    client.force_login(operator)
    assert client.get(op_url(control, "kill")).status_code == 403
    assert client.post(op_url(control, "kill"), {"post": "yes", "reason": "x"}).status_code == 403
    control.refresh_from_db()
    assert control.kill_switch is False


# --- Audit trail ---------------------------------------------------------------------------------


def test_campaign_page_shows_its_audit_trail_newest_first(client, operator, campaign):
    client.force_login(operator)
    client.post(op_url(campaign, "start"), {"post": "yes"})
    client.post(op_url(campaign, "pause"), {"post": "yes"})
    page = text(client.get(admin_url("campaign_change", campaign.pk)))
    assert page.index("campaign.pause") < page.index("campaign.start")
    assert "status: running → paused" in page
    assert "Halt reason" in page or "halt reason" in page.lower()


def test_audit_trail_escapes_html(client, administrator, campaign):
    audit_record(actor="t", action="campaign.note", entity=campaign, reason="<script>x()</script>")
    client.force_login(administrator)
    body = client.get(admin_url("campaign_change", campaign.pk)).content.decode()
    assert "<script>x()</script>" not in body
    assert "&lt;script&gt;x()&lt;/script&gt;" in body


def test_audit_events_cannot_be_added_changed_or_deleted_even_by_a_superuser(
    client, superuser, campaign
):
    event = audit_record(actor="t", action="campaign.note", entity=campaign, reason="kept")
    client.force_login(superuser)
    assert client.get(admin_url("auditevent_add")).status_code == 403
    change = client.get(admin_url("auditevent_change", event.pk))
    assert change.status_code == 200
    assert change.context["has_change_permission"] is False
    assert change.context["has_delete_permission"] is False
    post = client.post(admin_url("auditevent_change", event.pk), {"reason": "rewritten"})
    assert post.status_code == 403
    assert client.post(admin_url("auditevent_delete", event.pk), {"post": "yes"}).status_code == 403
    bulk = client.post(
        admin_url("auditevent_changelist"),
        {"action": "delete_selected", ACTION_CHECKBOX_NAME: [event.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    event.refresh_from_db()
    assert event.reason == "kept"
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_config_edit_through_the_admin_is_audited(client, operator, campaign):
    client.force_login(operator)
    data = campaign_form_data(client, campaign, daily_send_limit=80, objective="Book demos")
    assert client.post(admin_url("campaign_change", campaign.pk), data).status_code == 302
    event = AuditEvent.objects.for_entity(campaign).get(action="campaign.update")
    assert event.actor == operator.username
    assert event.before == {"daily_send_limit": 50, "objective": campaign.objective}
    assert event.after == {"daily_send_limit": 80, "objective": "Book demos"}


def test_unchanged_save_records_no_audit_event(client, operator, campaign):
    client.force_login(operator)
    data = campaign_form_data(client, campaign)
    assert client.post(admin_url("campaign_change", campaign.pk), data).status_code == 302
    assert not AuditEvent.objects.for_entity(campaign).exists()


def test_send_days_are_weekday_checkboxes_stored_as_iso_digits(client, operator, campaign):
    client.force_login(operator)
    form = client.get(admin_url("campaign_change", campaign.pk)).context["adminform"].form
    assert [label for _, label in form.fields["send_days"].choices][:2] == ["Monday", "Tuesday"]
    data = campaign_form_data(client, campaign, send_days=["5", "1", "3"])
    assert client.post(admin_url("campaign_change", campaign.pk), data).status_code == 302
    campaign.refresh_from_db()
    assert campaign.send_days == "135"
    event = AuditEvent.objects.for_entity(campaign).get(action="campaign.update")
    assert (event.before, event.after) == ({"send_days": "12345"}, {"send_days": "135"})


def test_a_campaign_needs_at_least_one_send_day(client, operator, campaign):
    client.force_login(operator)
    data = campaign_form_data(client, campaign)
    data.pop("send_days")
    response = client.post(admin_url("campaign_change", campaign.pk), data)
    assert response.status_code == 200
    assert "send_days" in response.context["adminform"].form.errors
    campaign.refresh_from_db()
    assert campaign.send_days == "12345"


def test_segment_creation_is_audited(client, operator, venture):
    client.force_login(operator)
    response = client.post(
        admin_url("icpsegment_add"),
        {
            "venture": venture.pk,
            "name": "Heads of sales",
            "slug": "heads-of-sales",
            "priority": 10,
            "industries": '["software"]',
            "title_keywords": '["sales"]',
            "countries": "[]",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    segment = IcpSegment.objects.get(slug="heads-of-sales")
    event = AuditEvent.objects.for_entity(segment).get()
    assert (event.action, event.venture_id) == ("icpsegment.create", venture.pk)
    assert event.after["industries"] == ["software"]


def venture_form_data(client, venture, **roles) -> dict:
    """The venture page's form and members as a browser posts them; `roles` maps a user name
    to the role to choose, or to "remove" to tick its Remove box."""
    page = client.get(admin_url("venture_change", venture.pk))
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if k in form.fields and v is not None}
    data["default_channels"] = '["email"]'
    (members,) = page.context["inline_admin_formsets"]
    formset = members.formset
    data.update({f"{formset.prefix}-{k}": v for k, v in formset.management_form.initial.items()})
    for i, member in enumerate(formset.forms):
        name = member.instance.user.get_username()
        data[f"{formset.prefix}-{i}-id"] = member.instance.pk
        data[f"{formset.prefix}-{i}-venture"] = venture.pk
        data[f"{formset.prefix}-{i}-role"] = member.fields["role"].initial
        if roles.get(name) == "remove":
            data[f"{formset.prefix}-{i}-DELETE"] = "on"
        elif name in roles:
            data[f"{formset.prefix}-{i}-role"] = roles[name]
    return data


def test_venture_edit_and_member_role_change_are_audited(
    client, administrator, operator, viewer, venture
):
    client.force_login(administrator)
    data = venture_form_data(client, venture, **{"viewer-vera": OPERATOR})
    data["name"] = "Renamed Co"
    response = client.post(admin_url("venture_change", venture.pk), data)
    assert response.status_code == 302, response.context["errors"]
    assert viewer.groups.filter(name=OPERATOR).exists()
    assert not viewer.groups.filter(name=VIEWER).exists()
    events = {e.action: e for e in AuditEvent.objects.for_entity(venture)}
    assert events["venture.update"].after == {"name": "Renamed Co"}
    assert events["venture.member_role"].before == {"user": "viewer-vera", "role": VIEWER}
    assert events["venture.member_role"].after == {"user": "viewer-vera", "role": OPERATOR}
    assert "venture.member_remove" not in events  # the unchanged operator stays
    assert VentureMembership.objects.filter(venture=venture, user=operator).exists()


def test_removing_a_member_from_the_venture_page_is_audited(
    client, administrator, operator, viewer, venture
):
    client.force_login(administrator)
    data = venture_form_data(client, venture, **{"op-otto": "remove"})
    response = client.post(admin_url("venture_change", venture.pk), data)
    assert response.status_code == 302, response.context["errors"]
    members = VentureMembership.objects.filter(venture=venture)
    assert list(members.values_list("user__username", flat=True)) == ["viewer-vera"]
    assert operator.groups.filter(name=OPERATOR).exists()  # the login and role stay
    event = AuditEvent.objects.for_entity(venture).get(action="venture.member_remove")
    assert event.before == {"user": "op-otto", "role": OPERATOR}


def test_the_venture_page_adds_no_member_through_its_list(client, administrator, venture):
    """Adding is "Add a member" only: a new row posted to the members list is ignored."""
    newcomer = UserFactory(username="new-nina")
    client.force_login(administrator)
    data = venture_form_data(client, venture)
    data.update(
        {
            "memberships-TOTAL_FORMS": "1",
            "memberships-0-user": newcomer.pk,
            "memberships-0-venture": venture.pk,
            "memberships-0-role": OPERATOR,
        }
    )
    client.post(admin_url("venture_change", venture.pk), data)
    assert not VentureMembership.objects.filter(user=newcomer).exists()
    assert not AuditEvent.objects.filter(action="venture.member_add").exists()


def test_venture_deletion_is_audited(client, administrator):
    doomed = VentureFactory(slug="doomed")
    client.force_login(administrator)
    client.post(admin_url("venture_delete", doomed.pk), {"post": "yes"})
    assert not Venture.objects.filter(slug="doomed").exists()
    event = AuditEvent.objects.get(action="venture.delete")
    assert event.before["slug"] == "doomed"


# --- Changelist cost -----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["administrator", "operator"])
def test_campaign_changelist_queries_do_not_grow_with_rows(
    request, client, role, venture, django_assert_num_queries
):
    user = request.getfixturevalue(role)
    CampaignFactory.create_batch(2, venture=venture)
    client.force_login(user)
    url = admin_url("campaign_changelist")
    client.get(url)  # warm per-process caches (content types)
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    more_ventures = VentureFactory.create_batch(3)
    for v in more_ventures:
        MembershipFactory(venture=v, user=user)
        CampaignFactory.create_batch(5, venture=v)
    with django_assert_num_queries(len(few)):
        response = client.get(url)
    assert len(response.context["cl"].result_list) == 17


def test_audit_log_queries_do_not_grow_with_rows(
    client, operator, campaign, django_assert_num_queries
):
    for i in range(2):
        audit_record(actor="t", action=f"campaign.note{i}", entity=campaign)
    client.force_login(operator)
    url = admin_url("auditevent_changelist")
    client.get(url)
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    for i in range(20):
        audit_record(actor="t", action=f"campaign.more{i}", entity=campaign)
    with django_assert_num_queries(len(few)):
        response = client.get(url)
    assert len(response.context["cl"].result_list) == 22
    assert campaign.venture.name in text(response)


def test_audit_log_stops_counting_at_the_cap(client, administrator, campaign, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "cap", 3)
    for i in range(5):
        audit_record(actor="t", action=f"campaign.note{i}", entity=campaign)
    client.force_login(administrator)
    response = client.get(admin_url("auditevent_changelist"))
    assert response.context["cl"].result_count == 4  # cap + 1: "more than 3"
    assert "More than 3 audit events" in text(response)
    assert len(response.context["cl"].result_list) == 5


def test_bulk_venture_kill_confirms_then_kills_every_selected_venture(client, administrator):
    ventures = VentureFactory.create_batch(2)
    client.force_login(administrator)
    url = admin_url("venture_changelist")
    data = {"action": "kill_ventures", ACTION_CHECKBOX_NAME: [v.pk for v in ventures]}
    first = client.post(url, data)
    assert first.templates[0].name == "admin/ventures/confirm_operation.html"
    assert not Venture.objects.filter(kill_switch=True).exists()
    response = client.post(url, {**data, "post": "yes", "reason": "Provider incident"}, follow=True)
    assert "Killed 2 ventures" in text(response)
    assert Venture.objects.filter(kill_switch=True, kill_reason="Provider incident").count() == 2


def test_campaign_page_names_the_venture_kill_switch_as_halt_reason(client, operator, campaign):
    venture = campaign.venture
    venture.kill_switch = True
    venture.save()
    client.force_login(operator)
    page = text(client.get(admin_url("campaign_change", campaign.pk)))
    assert f"venture kill switch ({venture.slug})" in page


def test_operation_on_a_campaign_deleted_meanwhile_is_an_error_message(rf, administrator, campaign):
    from django.contrib.admin import site
    from django.contrib.messages.storage.cookie import CookieStorage

    stale = Campaign.objects.get(pk=campaign.pk)
    campaign.delete()
    request = rf.post("/")
    request.user = administrator
    request._messages = CookieStorage(request)
    model_admin = site.get_model_admin(Campaign)
    model_admin.run_operation(request, [stale], model_admin.operations["start"])
    assert [str(m) for m in request._messages] == [f"{stale} no longer exists."]


def test_audit_log_link_on_the_campaign_page_lists_that_campaigns_events(client, operator, venture):
    first, second = CampaignFactory.create_batch(2, venture=venture)
    mine = audit_record(actor="t", action="campaign.note", entity=first)
    audit_record(actor="t", action="campaign.note", entity=second)
    client.force_login(operator)
    page = client.get(admin_url("campaign_change", first.pk))
    link = admin_url("auditevent_changelist") + (
        f"?entity_type=ventures.campaign&entity_id={first.pk}"
    )
    assert html.escape(link) in page.content.decode()
    assert list(client.get(link).context["cl"].result_list) == [mine]


# --- The state badge follows the one halt rule --------------------------------------------------
def state_badges(response) -> list[str]:
    """The text of each row's state badge on the campaign changelist."""
    return [
        html.unescape(label)
        for label in re.findall(
            r'<td class="field-state"><span class="state[^"]*"[^>]*>([^<]*)<', text(response)
        )
    ]


@pytest.fixture
def running_now(campaign):
    """The campaign running, with a send window that is always open."""
    Campaign.objects.filter(pk=campaign.pk).update(
        send_days="1234567", send_window_start="00:00", send_window_end="23:59:59"
    )
    campaign.refresh_from_db()
    return running(campaign)


def test_changelist_shows_every_campaign_halted_while_the_admin_global_switch_is_on(
    client, operator, running_now
):
    client.force_login(operator)
    url = reverse("admin:ventures_campaign_changelist")
    assert state_badges(client.get(url)) == ["Running"]

    global_kill_switch_set(on=True, actor="root", reason="incident")

    assert state_badges(client.get(url)) == ["Running, halted: global kill switch (admin)"]


def test_changelist_shows_every_campaign_halted_while_the_global_setting_is_on(
    client, operator, running_now, settings
):
    client.force_login(operator)
    settings.AICMO_KILL_SWITCH = True

    response = client.get(reverse("admin:ventures_campaign_changelist"))

    assert state_badges(response) == ["Running, halted: global kill switch (AICMO_KILL_SWITCH)"]
    assert "The global kill switch is ON" in text(response)


def test_changelist_badge_follows_campaign_then_venture_switches(client, operator, running_now):
    sibling = running(CampaignFactory(venture=running_now.venture, name="Sibling"))
    Campaign.objects.filter(pk=sibling.pk).update(
        send_days="1234567", send_window_start="00:00", send_window_end="23:59:59"
    )
    client.force_login(operator)
    url = reverse("admin:ventures_campaign_changelist")

    campaign_set_kill_switch(campaign=running_now, on=True, actor="t", reason="complaint")
    assert sorted(state_badges(client.get(url))) == ["Killed: complaint", "Running"]

    venture_set_kill_switch(venture=running_now.venture, on=True, actor="t")
    slug = running_now.venture.slug
    assert sorted(state_badges(client.get(url))) == [
        "Killed: complaint",
        f"Running, halted: venture kill switch ({slug})",
    ]
