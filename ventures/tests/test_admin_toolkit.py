"""The admin toolkit's own rules: one venture scope per request, and what an Operation is."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from tests.factories import CampaignFactory, IcpSegmentFactory, VentureFactory
from ventures.admin_toolkit import (
    Operation,
    ReadOnlyMixin,
    scope_to_ventures,
    visible_campaigns,
)
from ventures.models import AuditEvent, IcpSegment

pytestmark = pytest.mark.django_db


def request_of(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def test_an_operator_is_scoped_to_their_ventures_and_asked_once_per_request(operator, venture):
    other = VentureFactory()
    mine, theirs = IcpSegmentFactory(venture=venture), IcpSegmentFactory(venture=other)
    request = request_of(operator)
    with CaptureQueriesContext(connection) as queries:
        first = set(scope_to_ventures(IcpSegment.objects.all(), request))
        second = set(scope_to_ventures(IcpSegment.objects.all(), request))
    assert first == second == {mine}
    assert theirs not in first
    # The membership lookup ran once; every later scope of the request reuses its ids.
    assert sum("ventures_venturemembership" in q["sql"] for q in queries.captured_queries) == 1


def test_rows_without_a_venture_are_kept_only_when_asked(operator, venture):
    other = VentureFactory()
    mine = AuditEvent.objects.create(
        actor="a", action="x", entity_type="t", entity_id="1", venture_id=venture.pk
    )
    everyone = AuditEvent.objects.create(actor="a", action="x", entity_type="t", entity_id="2")
    AuditEvent.objects.create(
        actor="a", action="x", entity_type="t", entity_id="3", venture_id=other.pk
    )
    request = request_of(operator)
    assert set(scope_to_ventures(AuditEvent.objects.all(), request, "venture_id")) == {mine}
    kept = scope_to_ventures(AuditEvent.objects.all(), request, "venture_id", with_global=True)
    assert set(kept) == {mine, everyone}


def test_an_administrator_is_not_filtered(administrator, venture):
    segments = {IcpSegmentFactory(venture=venture), IcpSegmentFactory(venture=VentureFactory())}
    request = request_of(administrator)
    assert set(scope_to_ventures(IcpSegment.objects.all(), request)) == segments
    campaigns = {CampaignFactory(venture=venture), CampaignFactory()}
    assert set(visible_campaigns(request)) == campaigns


def test_visible_campaigns_follows_the_same_rule_for_an_operator(operator, campaign):
    CampaignFactory()  # another venture's
    assert list(visible_campaigns(request_of(operator))) == [campaign]


def test_read_only_admins_refuse_add_change_and_delete(admin_user):
    request = request_of(admin_user)
    read_only = [m for m in admin.site._registry.values() if isinstance(m, ReadOnlyMixin)]
    assert {type(m).__name__.removeprefix("Guarded") for m in read_only} >= {
        "AuditEventAdmin",
        "ImportBatchAdmin",
        "MessageTemplateVersionAdmin",
        "RenderLogAdmin",
        "SystemControlAdmin",
        "WorkerHeartbeatAdmin",
    }
    for model_admin in read_only:
        assert not model_admin.has_add_permission(request)
        assert not model_admin.has_change_permission(request)
        assert not model_admin.has_delete_permission(request)


def test_an_operation_acts_per_object_or_on_the_whole_selection_never_both():
    def each(obj, user, reason):
        return True

    def whole(queryset, user, data):
        return []

    with pytest.raises(TypeError, match="exactly one"):
        Operation(name="x", label="X", permission="change")
    with pytest.raises(TypeError, match="exactly one"):
        Operation(name="x", label="X", permission="change", apply=each, apply_all=whole)
    assert Operation(name="x", label="X", permission="change", apply_all=whole)


@pytest.fixture
def venture_panels():
    """Two panels on the venture page (whose admin keeps the form first), removed after."""
    from django.utils.html import format_html

    from ventures import admin_toolkit
    from ventures.models import Venture

    saved = admin_toolkit._CHANGE_PANELS.pop(Venture, None)
    admin_toolkit.register_change_panel(
        Venture, "Later", lambda r, o: format_html("<p>{}</p>", "B")
    )
    admin_toolkit.register_change_panel(
        Venture, "Sooner", lambda r, o: format_html("<p>{}</p>", o.name), first=True
    )
    yield
    admin_toolkit._CHANGE_PANELS.pop(Venture, None)
    if saved is not None:
        admin_toolkit._CHANGE_PANELS[Venture] = saved


@pytest.mark.usefixtures("plain_http", "venture_panels")
def test_without_panels_first_the_panels_stay_below_the_form_in_their_order(
    client, administrator, venture
):
    from django.urls import reverse

    client.force_login(administrator)
    body = client.get(reverse("admin:ventures_venture_change", args=[venture.pk])).content.decode()
    assert (
        '<details class="configuration" id=' not in body and '<div class="page-header">' not in body
    )
    fields, sooner, later = (
        body.index(s) for s in ('name="name"', "<h2>Sooner</h2>", "<h2>Later</h2>")
    )
    assert fields < sooner < later < body.index('name="_save"')
    assert f"<p>{venture.name}</p>" in body
