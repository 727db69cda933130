"""The audit trail is append-only: in the ORM, in raw SQL, and in the admin's permissions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import DatabaseError, connection, transaction

from ventures.models import AuditEvent, AuditImmutableError
from ventures.roles import ADMINISTRATOR, OPERATOR, VIEWER
from ventures.services import audit_changes, audit_record, snapshot


@pytest.fixture
def event(campaign):
    return audit_record(actor="alice", action="campaign.start", entity=campaign, reason="go")


@pytest.mark.django_db
def test_saving_an_existing_event_is_refused(event):
    event.reason = "rewritten history"
    with pytest.raises(AuditImmutableError):
        event.save()
    event.refresh_from_db()
    assert event.reason == "go"


@pytest.mark.django_db
def test_deleting_an_event_is_refused(event):
    with pytest.raises(AuditImmutableError):
        event.delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.django_db
def test_queryset_update_and_delete_are_refused(event):
    with pytest.raises(AuditImmutableError):
        AuditEvent.objects.filter(pk=event.pk).update(reason="x")
    with pytest.raises(AuditImmutableError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).reason == "go"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ventures_auditevent SET reason = 'x'",
        "DELETE FROM ventures_auditevent",
    ],
)
def test_raw_sql_cannot_change_or_delete_events(event, sql):
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
    assert AuditEvent.objects.get(pk=event.pk).reason == "go"


@pytest.mark.django_db
def test_new_events_can_still_be_appended(event, campaign):
    audit_record(actor="bob", action="campaign.pause", entity=campaign)
    assert AuditEvent.objects.for_entity(campaign).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("role", [ADMINISTRATOR, OPERATOR, VIEWER])
def test_no_role_may_add_change_or_delete_audit_events(role):
    codenames = set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))
    assert "view_auditevent" in codenames
    assert not codenames & {"add_auditevent", "change_auditevent", "delete_auditevent"}


@pytest.mark.django_db
def test_config_change_records_only_the_changed_fields(campaign):
    before = snapshot(campaign)
    campaign.daily_send_limit = 75
    campaign.sender_name = "Sam S."
    campaign.save()

    event = audit_changes(actor="alice", entity=campaign, before=before)

    assert event.before == {"daily_send_limit": 50, "sender_name": "Sam Sender"}
    assert event.after == {"daily_send_limit": 75, "sender_name": "Sam S."}
    assert audit_changes(actor="alice", entity=campaign, before=snapshot(campaign)) is None


@pytest.mark.django_db
def test_roles_follow_the_permission_table():
    def perms(role):
        return set(
            Group.objects.get(name=role).permissions.values_list(
                "content_type__app_label", "codename"
            )
        )

    admin, operator, viewer = perms(ADMINISTRATOR), perms(OPERATOR), perms(VIEWER)
    assert ("ventures", "kill_campaign") in admin
    assert ("ventures", "go_live") in admin
    assert ("auth", "add_user") in admin
    assert ("ventures", "operate_campaign") in operator
    assert ("ventures", "kill_campaign") not in operator
    assert ("ventures", "go_live") not in operator
    assert ("ventures", "delete_venture") not in operator
    assert ("auth", "add_user") not in operator
    assert all(codename.startswith(("view_", "download_")) for _, codename in viewer)
    assert ("ventures", "operate_campaign") not in viewer


@pytest.mark.django_db(transaction=True)
def test_flush_maintenance_command_may_empty_the_audit_table(campaign):
    from django.core.management import call_command

    audit_record(actor="alice", action="campaign.start", entity=campaign)
    call_command("flush", interactive=False, verbosity=0)
    assert AuditEvent.objects.count() == 0
