"""The campaign state machine, kill switches and their audit, through services and the CLI."""

from __future__ import annotations

import itertools
import json

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from tests.factories import CampaignFactory, VentureFactory
from ventures.models import CAMPAIGN_TRANSITIONS, AuditEvent, Campaign, CampaignStatus, SendMode
from ventures.selectors import campaign_halt_reason, global_kill_switch_on
from ventures.services import (
    IllegalTransitionError,
    PreflightFailedError,
    campaign_set_kill_switch,
    campaign_set_mode,
    campaign_transition,
    global_kill_switch_set,
    venture_set_kill_switch,
)

LEGAL = [
    (source, action, target)
    for action, (sources, target) in CAMPAIGN_TRANSITIONS.items()
    for source in sorted(sources)
]
ILLEGAL = [
    (source, action)
    for source, action in itertools.product(CampaignStatus.values, CAMPAIGN_TRANSITIONS)
    if source not in CAMPAIGN_TRANSITIONS[action][0]
]


def audit_of(campaign: Campaign) -> list[AuditEvent]:
    return list(AuditEvent.objects.for_entity(campaign).order_by("id"))


@pytest.mark.django_db
@pytest.mark.parametrize(("source", "action", "target"), LEGAL)
def test_legal_transition_moves_status_and_is_audited(source, action, target):
    campaign = CampaignFactory(status=source)

    campaign_transition(campaign=campaign, action=action, actor="alice", reason="planned")

    campaign.refresh_from_db()
    assert campaign.status == target
    [event] = audit_of(campaign)
    assert (event.actor, event.action, event.reason) == ("alice", f"campaign.{action}", "planned")
    assert event.before == {"status": source}
    assert event.after == {"status": target}
    assert event.venture_id == campaign.venture_id


@pytest.mark.django_db
@pytest.mark.parametrize(("source", "action"), ILLEGAL)
def test_illegal_transition_is_refused_and_changes_nothing(source, action):
    campaign = CampaignFactory(status=source)

    with pytest.raises(IllegalTransitionError, match=f"Cannot {action} campaign"):
        campaign_transition(campaign=campaign, action=action, actor="alice")

    campaign.refresh_from_db()
    assert campaign.status == source
    assert audit_of(campaign) == []


def test_every_status_has_a_legal_or_final_answer():
    # Stopped and completed are final: no action leaves them.
    finals = {
        s
        for s in CampaignStatus.values
        if not any(s in src for src, _ in CAMPAIGN_TRANSITIONS.values())
    }
    assert finals == {CampaignStatus.STOPPED, CampaignStatus.COMPLETED}


@pytest.mark.django_db
def test_start_records_started_at_once_and_stop_records_finished_at(campaign):
    campaign_transition(campaign=campaign, action="start", actor="a")
    campaign.refresh_from_db()
    first_start = campaign.started_at
    assert first_start is not None and campaign.finished_at is None

    campaign_transition(campaign=campaign, action="pause", actor="a")
    campaign_transition(campaign=campaign, action="resume", actor="a")
    campaign_transition(campaign=campaign, action="stop", actor="a")

    campaign.refresh_from_db()
    assert campaign.started_at == first_start
    assert campaign.finished_at is not None


@pytest.mark.django_db
def test_unknown_action_is_refused(campaign):
    with pytest.raises(IllegalTransitionError, match="Unknown campaign action"):
        campaign_transition(campaign=campaign, action="explode", actor="a")


# --- live mode and preflight ---------------------------------------------------------------

LIVE_READY = {
    "AICMO_SEND_MODE": "live",
    "AICMO_SITE_URL": "https://aicmo.example.com",
    "EMAIL_URL_CONFIGURED": True,
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
}


@pytest.mark.django_db
def test_live_campaign_does_not_start_while_preflight_fails(campaign):
    campaign.mode = SendMode.LIVE
    campaign.save()

    # The test environment is in proof mode with no EMAIL_URL: live preflight fails.
    with pytest.raises(PreflightFailedError, match="AICMO_SEND_MODE is proof"):
        campaign_transition(campaign=campaign, action="start", actor="a")

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT


@pytest.mark.django_db
def test_live_campaign_starts_when_preflight_passes(campaign):
    campaign.mode = SendMode.LIVE
    campaign.save()
    with override_settings(**LIVE_READY):
        campaign_transition(campaign=campaign, action="start", actor="a")
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING


@pytest.mark.django_db
def test_running_campaign_cannot_switch_to_live_while_preflight_fails(campaign):
    campaign_transition(campaign=campaign, action="start", actor="a")

    with pytest.raises(PreflightFailedError):
        campaign_set_mode(campaign=campaign, mode=SendMode.LIVE, actor="a")

    campaign.refresh_from_db()
    assert campaign.mode == SendMode.PROOF


@pytest.mark.django_db
def test_mode_change_of_a_draft_campaign_is_audited(campaign):
    assert campaign_set_mode(campaign=campaign, mode=SendMode.LIVE, actor="root", reason="go")
    assert not campaign_set_mode(campaign=campaign, mode=SendMode.LIVE, actor="root")

    campaign.refresh_from_db()
    assert campaign.mode == SendMode.LIVE
    [event] = audit_of(campaign)
    assert (event.action, event.before, event.after) == (
        "campaign.mode",
        {"mode": "proof"},
        {"mode": "live"},
    )


# --- kill switches ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_campaign_kill_switch_halts_only_that_campaign_and_keeps_its_status(campaign):
    sibling = CampaignFactory(venture=campaign.venture)
    campaign_transition(campaign=campaign, action="start", actor="a")

    assert campaign_set_kill_switch(campaign=campaign, on=True, actor="root", reason="complaint")

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING
    assert campaign_halt_reason(campaign) == "campaign kill switch"
    assert campaign_halt_reason(sibling) is None
    kill = audit_of(campaign)[-1]
    assert (kill.action, kill.reason, kill.after["kill_switch"]) == (
        "campaign.kill",
        "complaint",
        True,
    )


@pytest.mark.django_db
def test_unkill_restores_sending_and_repeated_kill_is_a_no_op(campaign):
    campaign_set_kill_switch(campaign=campaign, on=True, actor="root")
    assert not campaign_set_kill_switch(campaign=campaign, on=True, actor="root")
    assert campaign_set_kill_switch(campaign=campaign, on=False, actor="root")

    campaign.refresh_from_db()
    assert campaign_halt_reason(campaign) is None
    assert [e.action for e in audit_of(campaign)] == ["campaign.kill", "campaign.unkill"]


@pytest.mark.django_db
def test_venture_kill_switch_halts_every_campaign_of_the_venture(campaign):
    sibling = CampaignFactory(venture=campaign.venture)
    stranger = CampaignFactory(venture=VentureFactory())

    venture_set_kill_switch(venture=campaign.venture, on=True, actor="root", reason="legal hold")

    for c in (campaign, sibling, stranger):
        c.refresh_from_db()
    assert campaign_halt_reason(campaign) == f"venture kill switch ({campaign.venture.slug})"
    assert campaign_halt_reason(sibling) == campaign_halt_reason(campaign)
    assert campaign_halt_reason(stranger) is None
    [event] = AuditEvent.objects.for_entity(campaign.venture)
    assert (event.action, event.reason) == ("venture.kill", "legal hold")


@pytest.mark.django_db
def test_global_admin_kill_switch_halts_everything(campaign):
    stranger = CampaignFactory(venture=VentureFactory())

    global_kill_switch_set(on=True, actor="root", reason="incident")

    assert global_kill_switch_on()
    assert campaign_halt_reason(campaign) == "global kill switch (admin)"
    assert campaign_halt_reason(stranger) == "global kill switch (admin)"
    assert AuditEvent.objects.filter(action="global.kill", reason="incident").count() == 1

    global_kill_switch_set(on=False, actor="root")
    assert campaign_halt_reason(campaign) is None


@pytest.mark.django_db
def test_global_kill_switch_setting_halts_everything_and_wins_over_the_toggle(campaign):
    with override_settings(AICMO_KILL_SWITCH=True):
        assert global_kill_switch_on()
        assert campaign_halt_reason(campaign) == "global kill switch (AICMO_KILL_SWITCH)"
    assert campaign_halt_reason(campaign) is None


# --- the command line ------------------------------------------------------------------------


def run(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("campaign", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_cli_walks_a_campaign_through_its_life_with_audit(campaign):
    assert "is now Running" in run("start", campaign.slug, "--actor", "ops")
    assert "is now Paused" in run("pause", str(campaign.pk), "--actor", "ops")
    assert "killed" in run("kill", campaign.slug, "--reason", "spam trap hit", "--actor", "ops")
    assert "HALTED by campaign kill switch" in run("status", campaign.slug)
    assert "unkilled" in run("unkill", campaign.slug, "--actor", "ops")
    assert "is now Running" in run("resume", campaign.slug, "--actor", "ops")
    assert "is now Stopped" in run("stop", campaign.slug, "--actor", "ops")

    actions = [(e.actor, e.action) for e in audit_of(campaign)]
    assert actions == [
        ("cli:ops", "campaign.start"),
        ("cli:ops", "campaign.pause"),
        ("cli:ops", "campaign.kill"),
        ("cli:ops", "campaign.unkill"),
        ("cli:ops", "campaign.resume"),
        ("cli:ops", "campaign.stop"),
    ]


@pytest.mark.django_db
def test_cli_refuses_illegal_transition_with_one_line_reason(campaign):
    with pytest.raises(CommandError) as excinfo:
        run("resume", campaign.slug)
    assert str(excinfo.value) == (
        f"Cannot resume campaign '{campaign.slug}': it is Draft. Allowed actions: start, stop."
    )


@pytest.mark.django_db
def test_cli_unknown_campaign_is_a_clear_error():
    with pytest.raises(CommandError, match="No campaign with slug or id 'nope'"):
        run("status", "nope")


@pytest.mark.django_db
def test_cli_json_output_is_machine_readable(campaign):
    data = json.loads(run("--json", "start", campaign.slug))
    assert data["changed"] is True
    assert data["status"] == "running"
    assert data["allowed_actions"] == ["pause", "stop", "complete"]

    listing = json.loads(run("--json", "list"))
    assert [c["slug"] for c in listing["campaigns"]] == [campaign.slug]


@pytest.mark.django_db
def test_cli_list_shows_every_campaign_and_kill_state(campaign):
    killed = CampaignFactory(venture=campaign.venture, kill_switch=True)
    text = run("list")
    lines = text.splitlines()
    assert lines[0].split() == ["CAMPAIGN", "VENTURE", "STATUS", "MODE", "KILL"]
    by_slug = {line.split()[0]: line.split() for line in lines[1:]}
    assert by_slug[campaign.slug][-1] == "no"
    assert by_slug[killed.slug][-1] == "yes"
