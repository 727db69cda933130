"""The console's reading of a campaign: one state badge, the limit the outbox enforces, send
days by name, what a member of no venture is told, 403s inside the layout, the global kill
switch banner and control, confirmed limit raises, delete refusals and adding a member."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import CampaignFactory, MembershipFactory, UserFactory, VentureFactory
from tests.http import text
from ventures.console import campaign_limits, campaign_state
from ventures.models import (
    AuditEvent,
    Campaign,
    CampaignStatus,
    VentureMembership,
    send_days_label,
)
from ventures.roles import ADMINISTRATOR, OPERATOR, VIEWER
from ventures.services import (
    audit_record,
    campaign_transition,
    global_kill_switch_set,
)
from ventures.tests.test_admin import campaign_form_data, op_url

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]

# A Wednesday, 07:30 in Paris: before a 09:00-17:00 window opens.
EARLY = dt.datetime(2026, 12, 2, 6, 30, tzinfo=dt.UTC)
NOON = dt.datetime(2026, 12, 2, 11, 0, tzinfo=dt.UTC)


def paris(campaign: Campaign, **fields) -> Campaign:
    Campaign.objects.filter(pk=campaign.pk).update(
        timezone="Europe/Paris",
        send_days="12345",
        send_window_start=dt.time(9),
        send_window_end=dt.time(17),
        **fields,
    )
    campaign.refresh_from_db()
    return campaign


def badge(campaign: Campaign, *, global_reason=None, now=NOON) -> str:
    campaign = Campaign.objects.select_related("venture").get(pk=campaign.pk)
    return campaign_state(campaign, global_reason=global_reason, now=now).label


def start(campaign: Campaign) -> Campaign:
    return campaign_transition(campaign=campaign, action="start", actor="test")


# --- The state badge -----------------------------------------------------------------------------


def test_badge_of_a_running_campaign_in_its_window_is_running(campaign):
    assert badge(start(paris(campaign))) == "Running"


def test_badge_says_when_the_send_window_opens_in_the_campaigns_time_zone(campaign):
    start(paris(campaign))
    assert badge(campaign, now=EARLY) == "Outside send window until 09:00 (Europe/Paris)"
    friday_evening = dt.datetime(2026, 12, 4, 18, 0, tzinfo=dt.UTC)
    assert (
        badge(campaign, now=friday_evening) == "Outside send window until Mon 09:00 (Europe/Paris)"
    )


def test_badge_names_the_switch_that_halts_a_running_campaign(campaign):
    start(paris(campaign))
    reason = "global kill switch (admin)"
    assert badge(campaign, global_reason=reason) == f"Running, halted: {reason}"
    campaign.venture.kill_switch = True
    campaign.venture.save()
    assert badge(campaign) == f"Running, halted: venture kill switch ({campaign.venture.slug})"


def test_a_killed_campaign_says_killed_with_its_reason_whatever_its_status(campaign):
    Campaign.objects.filter(pk=campaign.pk).update(kill_switch=True, kill_reason="Spam trap")
    assert badge(campaign) == "Killed: Spam trap"
    start(campaign)
    assert badge(campaign, global_reason="global kill switch (admin)") == "Killed: Spam trap"


def test_paused_auto_paused_draft_and_finished_badges(campaign):
    assert badge(campaign) == "Draft"
    start(campaign)
    campaign_transition(campaign=campaign, action="pause", actor="op-otto")
    assert badge(campaign) == "Paused"
    campaign_transition(campaign=campaign, action="resume", actor="op-otto")
    campaign_transition(
        campaign=campaign,
        action="pause",
        actor="auto-pause",
        reason="Auto-paused: bounce rate 9.0% (9 of 100 sent) is above 5.0%",
    )
    assert badge(campaign) == "Auto-paused: bounce rate 9.0% (9 of 100 sent) is above 5.0%"
    campaign_transition(campaign=campaign, action="complete", actor="t")
    assert badge(campaign) == "Finished"
    stopped = CampaignFactory(venture=campaign.venture, status=CampaignStatus.STOPPED)
    assert badge(stopped) == "Finished (stopped)"


def test_the_campaign_list_reads_the_global_switch_once_whatever_the_rows(
    client, operator, venture
):
    CampaignFactory.create_batch(4, venture=venture)
    client.force_login(operator)
    global_kill_switch_set(on=True, actor="root", reason="incident")
    with CaptureQueriesContext(connection) as queries:
        page = client.get(reverse("admin:ventures_campaign_changelist"))
    switch_reads = [q for q in queries if "ventures_systemcontrol" in q["sql"]]
    # One read for the page's badges and banner, and the banner's reading of who and why.
    assert len(switch_reads) == 2, [q["sql"] for q in switch_reads]
    assert text(page).count("Killed") == 0
    assert text(page).count("Draft") >= 4


def test_the_old_halted_column_is_gone(client, operator, campaign):
    client.force_login(operator)
    page = text(client.get(reverse("admin:ventures_campaign_changelist")))
    assert "field-halted" not in page
    assert 'class="state state-idle"' in page


# --- Effective limit -----------------------------------------------------------------------------


def test_the_venture_cap_binds_below_the_campaign_limit(campaign, settings):
    settings.AICMO_GLOBAL_DAILY_LIMIT = 1000
    campaign.venture.daily_send_limit = 120
    campaign.venture.save()
    Campaign.objects.filter(pk=campaign.pk).update(daily_send_limit=5000)
    limits = campaign_limits(Campaign.objects.select_related("venture").get(pk=campaign.pk))
    assert limits.effective == 120
    assert limits.sentence() == (
        "Effective today: 120 (venture cap binds; global 1,000; venture 120; campaign 5,000)"
    )


def test_the_warm_up_ramp_of_today_is_shown_and_binds(campaign, settings):
    settings.AICMO_GLOBAL_DAILY_LIMIT = 1000
    Campaign.objects.filter(pk=campaign.pk).update(
        daily_send_limit=5000,
        warmup_start_limit=10,
        warmup_daily_increase=10,
        status=CampaignStatus.RUNNING,
        started_at=NOON - dt.timedelta(days=2),
        timezone="UTC",
    )
    with time_machine.travel(NOON, tick=False):
        limits = campaign_limits(Campaign.objects.select_related("venture").get(pk=campaign.pk))
        assert limits.short() == "30 (campaign cap binds)"
        assert "campaign 5,000, warm-up day 3: 30" in limits.sentence()


def test_the_global_limit_binds_when_it_is_lowest(campaign, settings):
    settings.AICMO_GLOBAL_DAILY_LIMIT = 20
    limits = campaign_limits(Campaign.objects.select_related("venture").get(pk=campaign.pk))
    assert limits.short() == "20 (global cap binds)"


def test_the_campaign_page_shows_the_limit_the_outbox_enforces(client, operator, campaign):
    campaign.venture.daily_send_limit = 120
    campaign.venture.save()
    Campaign.objects.filter(pk=campaign.pk).update(daily_send_limit=5000)
    client.force_login(operator)
    page = text(client.get(reverse("admin:ventures_campaign_change", args=[campaign.pk])))
    assert "Effective today: 120 (venture cap binds;" in page
    listing = text(client.get(reverse("admin:ventures_campaign_changelist")))
    assert re.search(r">120</span><div class=\"help\">venture cap binds<", listing)


# --- Raising a running campaign's limits confirms first ------------------------------------------


@pytest.fixture
def warming(campaign):
    campaign.venture.daily_send_limit = 120
    campaign.venture.save()
    Campaign.objects.filter(pk=campaign.pk).update(
        daily_send_limit=60, warmup_start_limit=10, warmup_daily_increase=10
    )
    campaign.refresh_from_db()
    return start(campaign)


def change(client, campaign, **fields):
    data = campaign_form_data(client, campaign, **fields)
    data["_save"] = "Save"
    return client.post(reverse("admin:ventures_campaign_change", args=[campaign.pk]), data)


def test_raising_a_running_campaigns_limits_asks_first_and_changes_nothing(
    client, operator, warming
):
    client.force_login(operator)
    response = change(client, warming, daily_send_limit=5000, warmup_start_limit="")
    assert response.status_code == 200
    assert response.templates[0].name == "admin/ventures/campaign_limits_confirm.html"
    page = text(response)
    assert re.search(r"Daily send limit</td><td>60</td><td>→</td><td><strong>5,000", page)
    assert "Warm-up: sends on the first day</td><td>10</td><td>→</td><td><strong>none" in page
    assert "After saving: Effective today: 120 (venture cap binds;" in page
    warming.refresh_from_db()
    assert (warming.daily_send_limit, warming.warmup_start_limit) == (60, 10)
    assert not AuditEvent.objects.for_entity(warming).filter(action="campaign.update").exists()


def test_a_raise_without_a_reason_is_refused_on_the_confirm_page(client, operator, warming):
    client.force_login(operator)
    data = campaign_form_data(client, warming, daily_send_limit=5000)
    data.update(_save="Save", _raise_confirmed="yes", _raise_reason="  ")
    response = client.post(reverse("admin:ventures_campaign_change", args=[warming.pk]), data)
    assert "Give a reason" in text(response)
    warming.refresh_from_db()
    assert warming.daily_send_limit == 60


def test_a_confirmed_raise_saves_and_audits_the_reason(client, operator, warming):
    client.force_login(operator)
    data = campaign_form_data(client, warming, daily_send_limit=5000, warmup_start_limit="")
    data.update(_save="Save", _raise_confirmed="yes", _raise_reason="Client doubled the list")
    response = client.post(reverse("admin:ventures_campaign_change", args=[warming.pk]), data)
    assert response.status_code == 302
    warming.refresh_from_db()
    assert (warming.daily_send_limit, warming.warmup_start_limit) == (5000, None)
    event = AuditEvent.objects.for_entity(warming).get(action="campaign.update")
    assert event.reason == "Client doubled the list"
    assert event.before == {"daily_send_limit": 60, "warmup_start_limit": 10}


def test_lowering_limits_or_editing_a_draft_saves_at_once(client, operator, warming, venture):
    client.force_login(operator)
    assert change(client, warming, daily_send_limit=40).status_code == 302
    draft = CampaignFactory(venture=venture)
    assert change(client, draft, daily_send_limit=5000).status_code == 302
    draft.refresh_from_db()
    assert draft.daily_send_limit == 5000


# --- Kill and go-live stand apart; running campaigns are not deleted -----------------------------


def test_kill_and_go_live_buttons_are_marked_dangerous_and_pause_is_not(
    client, administrator, campaign
):
    start(campaign)
    client.force_login(administrator)
    page = client.get(reverse("admin:ventures_campaign_change", args=[campaign.pk]))
    danger = {b["name"]: b["danger"] for b in page.context["operation_buttons"]}
    assert danger["kill"] and danger["go-live"]
    assert not danger["pause"] and not danger["stop"]
    assert "operation-kill operation-danger" in text(page)
    confirm = text(client.get(op_url(campaign, "kill")))
    assert "Kill stops every email of the campaign at once" in confirm
    assert 'class="default danger"' in confirm
    assert f"{campaign.name} ({campaign.venture.name}): " in confirm
    live = text(client.get(op_url(campaign, "go-live")))
    assert "Live mode sends real email to real people" in live
    assert "Email backend in force:" in live


def test_a_running_campaign_has_no_delete_link_and_deleting_it_is_refused(
    client, administrator, campaign
):
    start(campaign)
    client.force_login(administrator)
    page = client.get(reverse("admin:ventures_campaign_change", args=[campaign.pk]))
    assert page.context["has_delete_permission"] is False
    assert reverse("admin:ventures_campaign_delete", args=[campaign.pk]) not in text(page)
    url = reverse("admin:ventures_campaign_delete", args=[campaign.pk])
    response = client.post(url, {"post": "yes"}, follow=True)
    assert "is running and cannot be deleted: stop it first" in text(response)
    assert Campaign.objects.filter(pk=campaign.pk).exists()
    listing = client.get(reverse("admin:ventures_campaign_changelist"))
    assert "delete_selected" not in text(listing)


def test_a_draft_campaign_can_still_be_deleted(client, administrator, campaign):
    client.force_login(administrator)
    url = reverse("admin:ventures_campaign_delete", args=[campaign.pk])
    client.post(url, {"post": "yes"})
    assert not Campaign.objects.filter(pk=campaign.pk).exists()


# --- Send days by name ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("digits", "label"),
    [
        ("12345", "Mon–Fri"),
        ("135", "Mon, Wed, Fri"),
        ("1234567", "Every day"),
        ("67", "Sat, Sun"),
        ("12367", "Mon–Wed, Sat, Sun"),
        ("3", "Wed"),
    ],
)
def test_send_days_read_as_day_names(digits, label):
    assert send_days_label(digits) == label


def test_a_viewer_reads_send_days_as_names(client, viewer, campaign):
    client.force_login(viewer)
    page = text(client.get(reverse("admin:ventures_campaign_change", args=[campaign.pk])))
    assert "Mon–Fri" in page
    assert "12345" not in page
    listing = text(client.get(reverse("admin:ventures_campaign_changelist")))
    assert "Mon–Fri 09:00–17:00" in listing and "12345" not in listing


# --- A member of no venture is told what to do ---------------------------------------------------


def test_an_operator_without_a_venture_is_told_whom_to_ask(client, db):
    UserFactory(username="admin-ann", role=ADMINISTRATOR)
    lonely = UserFactory(username="op-lonely", role=OPERATOR)
    client.force_login(lonely)
    for url in (reverse("admin:index"), reverse("admin:ventures_campaign_changelist")):
        page = text(client.get(url))
        assert "You are not a member of any venture yet" in page, url
        assert "admin-ann@agency.example" in page
        assert "Add a member" in page


def test_members_and_administrators_see_no_such_hint(client, operator, administrator):
    for user in (operator, administrator):
        client.force_login(user)
        assert "not a member of any venture" not in text(client.get(reverse("admin:index")))


# --- 403 inside the console ----------------------------------------------------------------------


def test_a_refusal_is_a_console_page_with_a_way_back(client, viewer, campaign):
    client.force_login(viewer)
    response = client.get(reverse("admin:ventures_workerheartbeat_changelist"))
    assert response.status_code == 403
    page = text(response)
    assert "AICMO Campaign Engine" in page  # the admin's header
    assert "Your role does not allow this page or action." in page
    assert f'href="{reverse("admin:index")}"' in page
    content = page.split('id="content-main"', 1)[1]
    assert "heartbeat" not in content.lower()  # nothing about what the address names
    post = client.post(op_url(campaign, "start"))
    assert post.status_code == 403
    assert "Back to the console" in text(post)


# --- The global kill switch: banner and control --------------------------------------------------


def test_every_admin_page_shows_the_banner_while_the_switch_is_on(
    client, operator, administrator, campaign
):
    client.force_login(operator)
    assert "The global kill switch is ON" not in text(client.get(reverse("admin:index")))
    global_kill_switch_set(on=True, actor=administrator, reason="Provider incident 7")
    for url in (
        reverse("admin:index"),
        reverse("admin:ventures_campaign_changelist"),
        reverse("admin:ventures_campaign_change", args=[campaign.pk]),
        reverse("admin:ventures_auditevent_changelist"),
    ):
        page = text(client.get(url))
        assert "The global kill switch is ON: nothing is sent." in page, url
        assert "by admin-ann" in page and "Provider incident 7" in page, url


def test_the_banner_names_the_environment_setting(client, operator, settings):
    settings.AICMO_KILL_SWITCH = True
    client.force_login(operator)
    page = text(client.get(reverse("admin:index")))
    assert "It is set in the environment (AICMO_KILL_SWITCH)" in page


def test_the_index_offers_administrators_the_switch_as_one_red_control(client, administrator):
    client.force_login(administrator)
    page = text(client.get(reverse("admin:index")))
    url = reverse("admin:ventures_systemcontrol_operation", args=[1, "kill"])
    assert f'href="{url}" class="button kill-switch-kill danger"' in page
    assert "stops every send of every venture at once" in page
    confirm = text(client.get(url))
    assert "Every campaign of every venture stops sending at once" in confirm
    assert "running campaign(s) stop sending now" in confirm
    response = client.post(url, {"post": "yes", "reason": "Incident 9"}, follow=True)
    assert "Global kill switch turned ON" in text(response)
    index = text(client.get(reverse("admin:index")))
    off = reverse("admin:ventures_systemcontrol_operation", args=[1, "unkill"])
    assert f'href="{off}"' in index
    assert AuditEvent.objects.get(action="global.kill").reason == "Incident 9"


def test_operators_get_no_switch_control_on_the_index(client, operator):
    client.force_login(operator)
    page = text(client.get(reverse("admin:index")))
    assert "kill-switch-kill" not in page


# --- Adding a member from the venture page -------------------------------------------------------


def add_member_url(venture) -> str:
    return reverse("admin:ventures_venture_operation", args=[venture.pk, "add-member"])


def test_the_venture_page_offers_add_a_member_to_administrators_only(
    client, administrator, operator, venture
):
    client.force_login(administrator)
    page = client.get(reverse("admin:ventures_venture_change", args=[venture.pk]))
    assert page.context["member_add"]["url"] == add_member_url(venture)
    client.force_login(operator)
    page = client.get(reverse("admin:ventures_venture_change", args=[venture.pk]))
    assert page.context["member_add"] is None
    assert "operation-add-member" not in text(page)
    assert client.get(add_member_url(venture)).status_code == 403


def test_the_venture_page_has_one_members_list_with_roles_and_one_way_to_add(
    client, administrator, operator, viewer, venture
):
    client.force_login(administrator)
    response = client.get(reverse("admin:ventures_venture_change", args=[venture.pk]))
    page = text(response)
    members = page[page.index('id="memberships-heading"') : page.index("members-footer")]
    rows = re.findall(r'<tr class="form-row has_original".*?</tr>', members, re.S)
    assert len(rows) == 2
    assert "op-otto" in rows[0] and "viewer-vera" in rows[1]
    assert re.search(r'<option value="Operator"[^>]*selected', rows[0])
    assert re.search(r'<option value="Viewer"[^>]*selected', rows[1])
    assert all("Remove from the venture" in row for row in rows)
    (formset,) = response.context["inline_admin_formsets"]
    assert not formset.has_add_permission  # no "Add another" row: adding is "Add a member"
    assert page.count("operation-add-member") == 1  # under the list, not in the page's tools
    assert "add-member" not in [b["name"] for b in response.context["operation_buttons"]]


def test_operators_see_no_members_list(client, operator, venture):
    client.force_login(operator)
    page = text(client.get(reverse("admin:ventures_venture_change", args=[venture.pk])))
    assert "memberships-heading" not in page


def test_an_administrator_makes_an_existing_user_an_operator_of_the_venture(
    client, administrator, venture
):
    nina = UserFactory(username="new-nina")
    client.force_login(administrator)
    form = text(client.get(add_member_url(venture)))
    assert "Existing user" in form and "Or invite by email" in form
    response = client.post(
        add_member_url(venture),
        {"post": "yes", "user": nina.pk, "role": OPERATOR, "reason": "Joins the team"},
        follow=True,
    )
    assert f"Added new-nina to {venture.name} as Operator." in text(response)
    assert VentureMembership.objects.filter(venture=venture, user=nina).exists()
    assert nina.groups.filter(name=OPERATOR).exists()
    event = AuditEvent.objects.for_entity(venture).get(action="venture.member_add")
    assert event.after == {"user": "new-nina", "role": OPERATOR, "invited": False}
    assert event.reason == "Joins the team"


def test_inviting_by_email_makes_a_login_and_sends_a_set_password_link(
    client, administrator, venture, settings, tmp_path
):
    settings.AICMO_SEND_MODE = "live"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    client.force_login(administrator)
    response = client.post(
        add_member_url(venture),
        {"post": "yes", "email": "Vic@Client.example", "role": VIEWER, "reason": ""},
        follow=True,
    )
    page = text(response)
    assert f"Added Vic@Client.example to {venture.name} as Viewer." in page
    assert "The invitation with a set-password link was sent to Vic@Client.example" in page
    vic = get_user_model().objects.get(email="Vic@Client.example")
    assert not vic.has_usable_password() and vic.is_staff and vic.is_active
    assert vic.groups.filter(name=VIEWER).exists()
    (sent,) = mail.outbox
    assert sent.to == ["Vic@Client.example"] and sent.from_email == settings.DEFAULT_FROM_EMAIL
    link = re.search(r"https?://\S+/admin/set-password/\S+/", sent.body).group(0)

    client.logout()
    path = link.split("://", 1)[1].split("/", 1)[1]
    form = client.get("/" + path, follow=True)
    assert "Choose your password" in text(form)
    new = "a-long-new-pass-77"
    done = client.post(
        form.redirect_chain[-1][0] if form.redirect_chain else "/" + path,
        {"new_password1": new, "new_password2": new},
        follow=True,
    )
    assert "Password set" in text(done)
    vic.refresh_from_db()
    assert vic.check_password(new)


def test_an_invitation_in_proof_mode_is_written_as_an_eml_file(
    client, administrator, venture, settings, tmp_path
):
    settings.AICMO_ARTIFACT_DIR = tmp_path
    client.force_login(administrator)
    response = client.post(
        add_member_url(venture),
        {"post": "yes", "email": "otto@client.example", "role": OPERATOR},
        follow=True,
    )
    (eml,) = (tmp_path / "notifications").glob("invite-*.eml")
    assert "/admin/set-password/" in eml.read_text()
    assert f"written to {eml}" in text(response)


def test_add_a_member_needs_exactly_one_of_user_and_email(client, administrator, venture):
    nina = UserFactory(username="new-nina")
    client.force_login(administrator)
    for data in ({}, {"user": nina.pk, "email": "x@client.example"}):
        response = client.post(add_member_url(venture), {"post": "yes", "role": OPERATOR, **data})
        assert response.status_code == 200
        assert "Pick an existing user or give an email address to invite." in text(response)
    assert not VentureMembership.objects.filter(venture=venture).exists()


def test_adding_a_member_twice_or_an_administrator_is_a_clear_refusal(
    client, administrator, operator, venture
):
    client.force_login(administrator)
    again = client.post(
        add_member_url(venture), {"post": "yes", "user": operator.pk, "role": OPERATOR}, follow=True
    )
    assert f"Op-otto is already a member of {venture.name}." in text(again)
    boss = UserFactory(username="boss", role=ADMINISTRATOR)
    refused = client.post(
        add_member_url(venture),
        {"post": "yes", "email": boss.email, "role": OPERATOR},
        follow=True,
    )
    assert "Boss is an Administrator and sees every venture." in text(refused)
    assert VentureMembership.objects.filter(venture=venture).count() == 1


def test_a_viewer_made_operator_changes_role_everywhere_and_is_told(client, administrator):
    first, second = VentureFactory.create_batch(2)
    vera = UserFactory(username="vera", role=VIEWER)
    MembershipFactory(venture=first, user=vera)
    client.force_login(administrator)
    response = client.post(
        add_member_url(second), {"post": "yes", "user": vera.pk, "role": OPERATOR}, follow=True
    )
    assert "Their role changed from Viewer in every venture." in text(response)
    assert list(vera.groups.values_list("name", flat=True)) == [OPERATOR]
    event = AuditEvent.objects.for_entity(second).get(action="venture.member_add")
    assert event.before == {"user": "vera", "role": VIEWER}


def test_only_the_engines_own_pause_reads_as_auto_paused(campaign):
    start(campaign)
    campaign_transition(
        campaign=campaign, action="pause", actor="op-otto", reason="Auto-paused: not really"
    )
    audit_record(actor="auto-pause", action="campaign.note", entity=campaign)
    assert badge(campaign) == "Paused"


def test_kill_switches_read_as_words_not_ticks(client, administrator, campaign):
    venture = campaign.venture
    venture.kill_switch, venture.kill_reason = True, "Domain blacklisted"
    venture.save()
    client.force_login(administrator)
    page = text(client.get(reverse("admin:ventures_campaign_change", args=[campaign.pk])))
    assert re.search(r"field-kill_switch_text.*?<div class=\"readonly\">off</div>", page, re.S)
    ventures = text(client.get(reverse("admin:ventures_venture_changelist")))
    assert '<span class="state state-stop">Killed: Domain blacklisted</span>' in ventures


def test_the_outbox_panel_counts_against_the_limit_that_binds(client, operator, campaign):
    campaign.venture.daily_send_limit = 120
    campaign.venture.save()
    Campaign.objects.filter(pk=campaign.pk).update(daily_send_limit=5000)
    client.force_login(operator)
    page = text(client.get(reverse("admin:ventures_campaign_change", args=[campaign.pk])))
    assert "of 120 allowed today (venture cap binds;" in page


def test_campaign_status_on_the_command_line_gives_the_limit_that_binds(campaign, capsys):
    from django.core.management import call_command

    campaign.venture.daily_send_limit = 120
    campaign.venture.save()
    Campaign.objects.filter(pk=campaign.pk).update(daily_send_limit=5000)
    call_command("campaign", "status", campaign.slug)
    assert "Limit 120/day today (venture cap binds; campaign 5000)" in capsys.readouterr().out


def test_an_invitation_address_too_long_for_a_user_name_is_refused(client, administrator, venture):
    address = "a" * 140 + "@client.example"
    client.force_login(administrator)
    response = client.post(
        add_member_url(venture), {"post": "yes", "email": address, "role": OPERATOR}, follow=True
    )
    assert "is too long to be a user name: pick a user." in text(response)
    assert not get_user_model().objects.filter(email=address).exists()


def test_the_campaign_page_shows_the_whole_auto_pause_reason(client, operator, campaign):
    start(campaign)
    reason = "bounce rate 9.0% (9 of 100 sent since 2026-12-02 09:00 UTC) is above 5.0%"
    campaign_transition(
        campaign=campaign, action="pause", actor="auto-pause", reason="Auto-paused: " + reason
    )
    client.force_login(operator)
    page = text(client.get(reverse("admin:ventures_campaign_change", args=[campaign.pk])))
    assert f'<span class="state state-stop">Auto-paused: {reason}</span>' in page
    listing = text(client.get(reverse("admin:ventures_campaign_changelist")))
    assert f'title="Auto-paused: {reason}"' in listing and "…</span>" in listing


def test_the_global_switch_confirm_names_the_switch_once(client, administrator):
    from django.urls import reverse

    from ventures.models import SystemControl

    SystemControl.load()
    client.force_login(administrator)
    url = reverse("admin:ventures_systemcontrol_operation", args=[1, "kill"])
    page = client.get(url).content.decode()
    assert "Global kill switch: <strong>off</strong>" in page
    assert "Global kill switch: Global kill switch" not in page
