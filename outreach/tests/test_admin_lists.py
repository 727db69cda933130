"""Lists of a million rows: the message and feedback searches and the sent-date filter
(outreach 0013_lists_search_indexes) and the suppression list's search (leads
0015_lists_suppression_search_index) are index lookups on PostgreSQL, never a scan."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib import admin
from django.db import connection
from django.test import RequestFactory

from outreach.admin import recipient_search
from outreach.models import DispatchRun, FeedbackEvent, OutboundMessage
from tests.plans import plan

pytestmark = pytest.mark.django_db

INDEXES = {
    OutboundMessage: "outbound_recipient_lower_idx",
    FeedbackEvent: "feedback_recipient_lower_idx",
}


def test_the_recipient_search_indexes_exist():
    with connection.cursor() as cursor:
        for model, name in INDEXES.items():
            assert name in connection.introspection.get_constraints(cursor, model._meta.db_table)


@pytest.mark.postgres
@pytest.mark.parametrize("model", list(INDEXES))
def test_searching_an_address_is_an_index_lookup_on_postgresql(model, administrator):
    request = RequestFactory().get("/")
    request.user = administrator
    model_admin = admin.site.get_model_admin(model)
    page = recipient_search(model_admin.get_queryset(request), "ANN@acme")[:100]
    found = plan(page)
    assert INDEXES[model] in found and "Seq Scan" not in found, found


@pytest.mark.postgres
def test_the_sent_date_filter_and_the_run_order_are_index_lookups_on_postgresql():
    today = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
    sent = OutboundMessage.objects.filter(
        sent_at__gte=today, sent_at__lt=today + dt.timedelta(days=1)
    ).order_by()
    assert "outbound_sent_at_idx" in plan(sent)
    assert "dispatchrun_started_idx" in plan(DispatchRun.objects.all()[:100])


@pytest.mark.postgres
def test_searching_the_suppression_list_is_an_index_lookup_on_postgresql(administrator):
    from leads.models import SuppressionEntry

    request = RequestFactory().get("/")
    request.user = administrator
    model_admin = admin.site.get_model_admin(SuppressionEntry)
    found, _ = model_admin.get_search_results(request, model_admin.get_queryset(request), "ann@")
    shown = plan(found[:100])
    assert "suppression_value_like_idx" in shown and "Seq Scan" not in shown, shown
