"""rows_update and rows_insert: many rows, each with its own values, in one statement, on
both databases."""

import datetime as dt

import pytest
from django.db import DataError, connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext

from outreach.enrollment import campaign_enrol
from outreach.models import Enrollment, OutboundMessage, SendLedger
from outreach.tests.outbox import running_campaign, two_step_sequence
from tests.factories import LeadFactory
from ventures import sql
from ventures.sql import rows_insert, rows_update

pytestmark = pytest.mark.django_db

DAY = dt.date(2026, 12, 3)
DAY_AT = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)


def ledger(n: int) -> list[SendLedger]:
    return SendLedger.objects.bulk_create(
        [SendLedger(scope="domain", key=f"1:d{i}.example", day=DAY, count=i) for i in range(n)]
    )


def test_each_row_gets_its_own_values_in_one_statement():
    rows = ledger(50)
    at = dt.datetime(2026, 12, 3, 9, 30, tzinfo=dt.UTC)
    with CaptureQueriesContext(connection) as captured:
        changed = rows_update(
            SendLedger,
            [(row.pk, 1000 + i, at + dt.timedelta(minutes=i)) for i, row in enumerate(rows)],
            fields=["count", "next_at"],
        )
    assert changed == 50
    assert len(captured.captured_queries) == 1
    for i, row in enumerate(rows):
        row.refresh_from_db()
        assert (row.count, row.next_at) == (1000 + i, at + dt.timedelta(minutes=i))


def test_a_condition_fences_rows_and_returning_names_only_those_changed():
    rows = ledger(6)
    changed = rows_update(
        SendLedger,
        [(row.pk, 99) for row in rows],
        fields=["count"],
        where="t.count >= %s",
        params=[3],
        returning=True,
    )
    assert sorted(changed) == sorted(row.pk for row in rows[3:])
    assert sorted(SendLedger.objects.values_list("count", flat=True)) == [0, 1, 2, 99, 99, 99]


def test_assign_computes_from_the_row_and_its_values_and_other_keys_match():
    ledger(3)  # counts 0, 1, 2
    rows_update(
        SendLedger,
        [("domain", "1:d1.example", DAY, 5), ("domain", "1:d2.example", DAY, 1)],
        keys=("scope", "key", "day"),
        fields=["count"],
        assign={"count": "CASE WHEN t.count > v.count THEN t.count - v.count ELSE 0 END"},
    )
    counts = dict(SendLedger.objects.values_list("key", "count"))
    assert counts == {"1:d0.example": 0, "1:d1.example": 0, "1:d2.example": 1}


def test_nothing_to_write_runs_no_statement():
    with CaptureQueriesContext(connection) as captured:
        assert rows_update(SendLedger, [], fields=["count"]) == 0
        assert rows_update(SendLedger, [], fields=["count"], returning=True) == []
    assert captured.captured_queries == []


def test_rows_beyond_one_statements_parameters_are_split_not_lost(monkeypatch):
    monkeypatch.setattr(sql, "MAX_PARAMS", 10)  # five rows of (pk, count) per VALUES list
    rows = ledger(12)
    changed = rows_update(SendLedger, [(row.pk, 7) for row in rows], fields=["count"])
    assert changed == 12
    assert set(SendLedger.objects.values_list("count", flat=True)) == {7}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite does not check lengths")
def test_a_value_too_long_for_its_column_is_an_error_not_cut():
    (row,) = ledger(1)
    with pytest.raises(DataError):
        rows_update(SendLedger, [(row.pk, "x" * 11)], fields=["scope"])


def test_rows_insert_fills_the_other_columns_with_their_defaults_and_skips_conflicts():
    (existing,) = ledger(1)  # 1:d0.example, count 0
    rows = [("domain", "1:d0.example", DAY), ("domain", "1:new.example", DAY)]
    with CaptureQueriesContext(connection) as captured:
        inserted = rows_insert(SendLedger, rows, fields=["scope", "key", "day"])
    assert inserted == 1 and len(captured.captured_queries) == 1
    new = SendLedger.objects.get(key="1:new.example")
    assert (new.count, new.next_at) == (0, None)  # the field defaults
    existing.refresh_from_db()
    assert existing.count == 0  # the conflicting row is left as it was


def test_rows_insert_returns_the_columns_asked_for_of_the_rows_it_inserted(monkeypatch):
    monkeypatch.setattr(sql, "MAX_PARAMS", 12)  # several statements on SQLite
    (existing,) = ledger(1)  # 1:d0.example
    rows = [("domain", f"1:n{i}.example", DAY) for i in range(5)]
    rows.insert(2, ("domain", "1:d0.example", DAY))
    returned = rows_insert(
        SendLedger, rows, fields=["scope", "key", "day"], returning=("id", "key")
    )
    assert sorted(key for _, key in returned) == [f"1:n{i}.example" for i in range(5)]
    assert {pk for pk, _ in returned} == set(
        SendLedger.objects.exclude(pk=existing.pk).values_list("pk", flat=True)
    )
    assert rows_insert(SendLedger, rows, fields=["scope", "key", "day"], returning=("id",)) == []


def test_rows_insert_sets_auto_now_columns_and_splits_big_inserts(monkeypatch):
    monkeypatch.setattr(sql, "MAX_PARAMS", 60)  # a few rows per statement on SQLite
    campaign = running_campaign()
    step = two_step_sequence(campaign).steps.get(position=1)
    leads = LeadFactory.create_batch(7, campaign=campaign)
    rows = []
    for lead in leads:
        enrollment = Enrollment.objects.create(
            lead=lead, campaign=campaign, sequence=step.sequence, route_reason="test"
        )
        rows.append((f"l{lead.pk}-s{step.pk}", enrollment.pk, lead.pk, campaign.pk,
                     lead.venture_id, step.pk, "email", DAY_AT, lead.email))  # fmt: skip
    fields = ["idempotency_key", "enrollment_id", "lead_id", "campaign_id", "venture_id",
              "step_id", "kind", "due_at", "recipient"]  # fmt: skip
    assert rows_insert(OutboundMessage, rows, fields=fields) == 7
    assert rows_insert(OutboundMessage, rows, fields=fields) == 0  # each once
    for message in OutboundMessage.objects.all():
        assert message.state == "scheduled" and message.attempts == 0 and message.reserved == []
        assert message.updated_at is not None and message.created_at is not None
        assert message.due_at == DAY_AT


def test_json_columns_keep_each_rows_own_value_quotes_and_all():
    campaign = running_campaign()
    two_step_sequence(campaign)
    LeadFactory.create_batch(3, campaign=campaign)
    campaign_enrol(campaign=campaign)
    messages = list(OutboundMessage.objects.order_by("id"))
    values = [
        {"method": "thompson", "arms": [{"angle": 'the "cost" angle', "draw": 0.25}]},
        {"note": "Grüße, ☃ and a back\\slash", "n": None},
        {},
    ]
    changed = rows_update(
        OutboundMessage,
        [
            (m.pk, value, [f"slot|{i}"])
            for i, (m, value) in enumerate(zip(messages, values, strict=True))
        ],
        fields=["narrative_choice", "reserved"],
        returning=True,
    )
    assert sorted(changed) == [m.pk for m in messages]
    for i, (m, value) in enumerate(zip(messages, values, strict=True)):
        m.refresh_from_db()
        assert (m.narrative_choice, m.reserved) == (value, [f"slot|{i}"])


AWKWARD_KEYS = [
    '1:a"b.example',
    "1:c,d.example",
    "1:{e}.example",
    "1:f\\g.example",
    "1:h'i.example",
]


def test_any_finds_the_rows_in_finds_with_the_list_as_one_parameter():
    rows = ledger(300)
    awkward = SendLedger.objects.bulk_create(
        [SendLedger(scope="domain", key=key, day=DAY) for key in AWKWARD_KEYS]
    )
    ids = [row.pk for row in rows[::3]] + [None, rows[0].pk]  # a NULL and a repeat
    for lookup, values in (("pk", ids), ("key", [*AWKWARD_KEYS, "1:d7.example", None])):
        with CaptureQueriesContext(connection) as captured:
            found = set(SendLedger.objects.filter(**{f"{lookup}__any": values}))
        assert found == set(SendLedger.objects.filter(**{f"{lookup}__in": values}))
        assert len(captured.captured_queries) == 1
        if connection.vendor == "postgresql":
            assert "= ANY(" in captured.captured_queries[0]["sql"]
    assert set(SendLedger.objects.filter(key__any=AWKWARD_KEYS)) == set(awkward)
    # Updates take it too; an empty list matches nothing, without a query, as __in does.
    assert SendLedger.objects.filter(pk__any=ids[:10]).update(count=7) == 10
    with CaptureQueriesContext(connection) as captured:
        assert list(SendLedger.objects.filter(pk__any=[])) == []
        assert list(SendLedger.objects.filter(pk__any=[None])) == []
    assert captured.captured_queries == []
    either = SendLedger.objects.filter(Q(key__any=[]) | Q(pk=rows[1].pk))
    assert list(either) == [rows[1]]
