"""The audit log's search on a trail that only grows: the start of an action, an actor or an
entity's name, or an entity's exact id, each an index lookup on PostgreSQL (ventures
0013_audit_search_indexes), never a scan of the table; the help text says so."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.db import connection
from django.test import RequestFactory
from django.urls import reverse

from tests.http import text
from tests.plans import plan
from ventures.models import AuditEvent, Venture
from ventures.services import audit_record

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]

INDEXES = (
    "audit_action_lower_idx",
    "audit_actor_lower_idx",
    "audit_entity_repr_lower_idx",
    "audit_entity_id_idx",
)


@pytest.fixture
def trail(campaign):
    campaign.name = "Spring outreach"
    campaign.save(update_fields=["name"])
    audit_record(actor="admin-ann", action="campaign.pause", entity=campaign,
                 reason="Waiting for the new offer")  # fmt: skip
    audit_record(actor="auto-pause", action="campaign.start", entity=campaign)
    audit_record(actor="op-otto", action="venture.member_add",
                 entity=Venture(pk=987654, name="Gone Ltd"))  # fmt: skip
    return campaign


def found(client, term: str) -> list[str]:
    response = client.get(reverse("admin:ventures_auditevent_changelist"), {"q": term})
    assert response.status_code == 200
    return sorted(f"{e.actor} {e.action}" for e in response.context["cl"].result_list)


def test_the_audit_search_matches_the_start_of_an_action_an_actor_or_an_entity(
    client, administrator, trail
):
    client.force_login(administrator)
    assert found(client, "campaign.") == ["admin-ann campaign.pause", "auto-pause campaign.start"]
    assert found(client, "AUTO-") == ["auto-pause campaign.start"]
    assert found(client, "spring OUT") == ["admin-ann campaign.pause", "auto-pause campaign.start"]
    assert found(client, "987654") == ["op-otto venture.member_add"]
    assert found(client, "98765") == []  # an id is matched whole
    assert found(client, "") == sorted(f"{e.actor} {e.action}" for e in AuditEvent.objects.all())


def test_the_audit_search_does_not_match_inside_a_value_or_the_reason(client, administrator, trail):
    client.force_login(administrator)
    assert found(client, "outreach") == []  # inside "Spring outreach"
    assert found(client, "pause") == []  # inside "campaign.pause", "auto-pause"
    assert found(client, "Waiting") == []  # the reason is not searched


def test_the_search_box_says_what_it_matches(client, administrator, trail):
    client.force_login(administrator)
    page = text(client.get(reverse("admin:ventures_auditevent_changelist")))
    assert (
        "The start of an action (campaign.pause, or campaign. for all of a campaign's), of an "
        "actor or of an entity's name, not case-sensitive; or an entity's exact id." in page
    )


def test_the_audit_search_indexes_exist():
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, AuditEvent._meta.db_table)
    assert set(INDEXES) <= set(constraints)


@pytest.mark.postgres
def test_an_audit_search_is_an_index_lookup_on_postgresql(administrator, trail):
    """Every alternative of the search is a range of its own index, never a scan."""
    found = plan(searched(administrator, "Camp"))
    assert "Seq Scan" not in found, found
    for index in INDEXES:
        assert index in found, found


@pytest.mark.postgres
def test_an_operators_audit_search_is_an_index_lookup_on_postgresql(operator, trail):
    """An Operator's rows are their ventures' (audit_venture_idx or the search's indexes,
    whichever the planner finds cheaper): an index either way, never a scan."""
    found = plan(searched(operator, "Camp"))
    assert "Seq Scan" not in found and "Index" in found, found


def searched(user, term: str):
    http = RequestFactory().get("/")
    http.user = user
    model_admin = admin.site.get_model_admin(AuditEvent)
    queryset, _ = model_admin.get_search_results(http, model_admin.get_queryset(http), term)
    return queryset[:100]
