"""The identity index holds IdentityKey(identity_hash); every query by identity must use it."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from leads import import_sql
from leads.models import Lead, LeadStatus, identity_hash_of
from tests.factories import CampaignFactory, LeadFactory

pytestmark = pytest.mark.django_db


def _plan(sql: str, params=()) -> str:
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            # Tiny tables are cheaper to scan: forbid that, so the plan shows whether the
            # index can serve the query at all (an expression that does not match it cannot).
            cur.execute("SET LOCAL enable_seqscan = off")
            cur.execute("EXPLAIN " + sql, params)
        else:
            cur.execute("EXPLAIN QUERY PLAN " + sql, params)
        return "\n".join(str(row) for row in cur.fetchall())


def _people():
    first, second = CampaignFactory(), CampaignFactory()
    email = "ada@example.com"
    identity = identity_hash_of(email_key=email)
    a = LeadFactory(campaign=first, email=email, email_key=email, identity_hash=identity)
    b = LeadFactory(campaign=second, email=email, email_key=email, identity_hash=identity)
    # Enough other active leads that the campaign and status indexes are no way in.
    Lead.objects.bulk_create(
        Lead(
            campaign=first,
            venture=first.venture,
            email_key=f"p{i}@x.example",
            identity_hash=identity_hash_of(email_key=f"p{i}@x.example"),
        )
        for i in range(2000)
    )
    with connection.cursor() as cur:
        cur.execute("ANALYZE leads_lead")
    return identity, {a.pk, b.pk}


def test_a_person_is_found_in_every_venture_through_the_identity_index():
    identity, ids = _people()
    query = Lead.objects.filter(identity_hash=identity)
    assert set(query.values_list("pk", flat=True)) == ids
    sql, params = query.order_by().values("pk").query.sql_with_params()
    assert "lead_identity_key_idx" in _plan(sql, params)


def test_a_list_of_identities_is_looked_up_through_the_identity_index():
    identity, ids = _people()
    other = identity_hash_of(email_key="nobody@example.com")
    query = Lead.objects.filter(identity_hash__in=[identity, other], status=LeadStatus.ACTIVE)
    assert set(query.values_list("pk", flat=True)) == ids
    sql, params = query.order_by().values("pk").query.sql_with_params()
    assert "lead_identity_key_idx" in _plan(sql, params)


def test_blank_identities_match_only_blank_identities():
    _, ids = _people()
    erased = LeadFactory(email="", email_key="", identity_hash="", status=LeadStatus.ERASED)
    assert list(Lead.objects.filter(identity_hash="").values_list("pk", flat=True)) == [erased.pk]
    assert set(Lead.objects.exclude(identity_hash="").values_list("pk", flat=True)) >= ids


def test_the_importers_probe_finds_people_through_the_identity_index():
    identity, ids = _people()
    lead = Lead.objects.get(pk=min(ids))
    with CaptureQueriesContext(connection) as queries:
        existing, elsewhere = import_sql.fetch_people(
            lead.venture_id, lead.campaign_id, [identity, identity_hash_of(email_key="x@y.example")]
        )
    assert set(existing) == {lead.email_key}
    assert elsewhere == set()  # the same person in another venture is not "elsewhere"
    if connection.vendor == "postgresql":
        assert "lead_identity_key_idx" in _plan(queries.captured_queries[-1]["sql"])
