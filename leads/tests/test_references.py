"""A lead names an existing campaign (of its venture), source batch and segment.

PostgreSQL checks these references with triggers, once per statement (leads/0009); SQLite with
Django's foreign keys. The PostgreSQL tests prove the checks hold for every way leads are
written, on both sides of the reference, and between real processes.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from leads import import_sql
from leads.models import ImportBatch, Lead
from tests.factories import (
    CampaignFactory,
    IcpSegmentFactory,
    ImportBatchFactory,
    LeadFactory,
    VentureFactory,
)
from tests.proc import REPO, clean_env, running_database_url
from ventures.models import Campaign, IcpSegment

checks = importlib.import_module("leads.migrations.0009_references_checked_per_statement")

MISSING = 987_654_321
FOREIGN_KEY_VIOLATION = "23503"
# (table, trigger): the design that leads/0009 put in place.
TRIGGERS = {
    ("leads_lead", "lead_references_inserted"),
    ("leads_lead", "lead_references_updated"),
    ("ventures_campaign", "lead_references_campaign_deleted"),
    ("ventures_campaign", "lead_references_campaign_rekeyed"),
    ("leads_importbatch", "lead_references_batch_deleted"),
    ("leads_importbatch", "lead_references_batch_rekeyed"),
    ("ventures_icpsegment", "lead_references_segment_deleted"),
    ("ventures_icpsegment", "lead_references_segment_rekeyed"),
    ("ventures_campaign", "lead_references_campaign_truncated"),
    ("leads_importbatch", "lead_references_batch_truncated"),
    ("ventures_icpsegment", "lead_references_segment_truncated"),
}


@pytest.fixture
def segment(venture):
    return IcpSegmentFactory(venture=venture)


@pytest.fixture
def batch(campaign):
    return ImportBatchFactory(campaign=campaign)


def _rows(sql: str, params=None) -> list[tuple]:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def _refused(write) -> str:
    """Run `write` in a savepoint; it must fail with a foreign-key violation. Its message."""
    with pytest.raises((IntegrityError, psycopg.IntegrityError)) as caught, transaction.atomic():
        write()
    error = caught.value
    assert (getattr(error, "sqlstate", None) or error.__cause__.sqlstate) == FOREIGN_KEY_VIOLATION
    return str(error)


def _orphans() -> int:
    """Leads whose campaign (of their venture), source batch or segment does not exist."""
    return _rows(
        """
        SELECT count(*) FROM leads_lead l
        WHERE NOT EXISTS (SELECT FROM ventures_campaign c
                          WHERE c.id = l.campaign_id AND c.venture_id = l.venture_id)
           OR (l.source_batch_id IS NOT NULL
               AND NOT EXISTS (SELECT FROM leads_importbatch b WHERE b.id = l.source_batch_id))
           OR (l.segment_id IS NOT NULL
               AND NOT EXISTS (SELECT FROM ventures_icpsegment s WHERE s.id = l.segment_id))
        """
    )[0][0]


# --- the schema ------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db
def test_leads_have_no_per_row_foreign_key_on_postgresql():
    keys = _rows(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'leads_lead'::regclass AND contype = 'f'"
    )
    assert not keys, (
        f"leads_lead has foreign keys again: {keys}. On PostgreSQL a lead's references are "
        "checked once per statement by triggers (leads/0009; per-row keys cost about 7.8 s of "
        "PostgreSQL CPU per million imported leads). A migration re-added them (Django does on "
        "AddField, or when db_constraint is turned on): drop them in it, as leads/0009 does."
    )


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_reference_triggers_exist_and_are_enabled_on_postgresql():
    found = {
        (table, name): (enabled, constraint, deferred)
        for table, name, enabled, constraint, deferred in _rows(
            "SELECT tgrelid::regclass::text, tgname, tgenabled, tgconstraint <> 0, "
            "tgdeferrable AND tginitdeferred FROM pg_trigger WHERE tgname LIKE 'lead_references_%'"
        )
    }
    assert set(found) == TRIGGERS, (
        "The triggers that check a lead's references on PostgreSQL (leads/0009) changed: without "
        "them leads can name a missing campaign, batch or segment, as leads_lead has no foreign "
        f"keys there. Missing: {TRIGGERS - set(found)}; unexpected: {set(found) - TRIGGERS}."
    )
    assert {key: enabled for key, (enabled, _, _) in found.items() if enabled not in "OA"} == {}, (
        "A reference trigger is disabled: leads are not checked."
    )
    referenced = {key for key in TRIGGERS if key[1].endswith(("_deleted", "_rekeyed"))}
    # Deferred to commit like Django's keys, so a collector can null the leads first.
    assert {key for key, (_, constraint, deferred) in found.items() if constraint and deferred} == (
        referenced
    )


@pytest.mark.django_db
def test_leads_keep_djangos_foreign_keys_on_sqlite():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only: PostgreSQL checks these references with triggers")
    with connection.cursor() as cur:
        constraints = connection.introspection.get_constraints(cur, "leads_lead")
    keys = {c["columns"][0]: c["foreign_key"] for c in constraints.values() if c["foreign_key"]}
    assert keys["campaign_id"] == ("ventures_campaign", "id")
    assert keys["venture_id"] == ("ventures_venture", "id")
    assert keys["source_batch_id"] == ("leads_importbatch", "id")
    assert keys["segment_id"] == ("ventures_icpsegment", "id")


@pytest.mark.postgres
@pytest.mark.parametrize("plans", ["force_generic_plan", "force_custom_plan"])
def test_the_check_for_leads_still_referencing_a_row_probes_an_index(
    plans, campaign, segment, batch
):
    # Every lead has the same campaign, batch and segment: an equality lookup that expects a
    # match soon would be planned as a sequential scan here.
    Lead.objects.bulk_create(
        Lead(
            campaign=campaign,
            venture=campaign.venture,
            source_batch=batch,
            segment=segment,
            email_key=f"p{i}@x.example",
        )
        for i in range(2000)
    )
    keys = {
        "campaign": (campaign.pk, campaign.venture_id),
        "batch": (batch.pk,),
        "segment": (segment.pk,),
    }
    with connection.cursor() as cur:
        cur.execute("ANALYZE leads_lead")
        cur.execute(f"SET LOCAL plan_cache_mode = {plans}")
        for ref in checks.REFERENCES:
            params = tuple(f"${i}" for i in range(1, len(ref.key) + 1))
            types = ", ".join(["bigint"] * len(params))
            cur.execute(f"PREPARE referencing ({types}) AS {checks.referencing_query(ref, params)}")
            cur.execute(
                f"EXPLAIN EXECUTE referencing ({', '.join(['%s'] * len(params))})", keys[ref.name]
            )
            plan = "\n".join(row[0] for row in cur.fetchall())
            cur.execute("DEALLOCATE referencing")
            assert "Seq Scan" not in plan and "Sort" not in plan, plan
            assert f"Index Cond: (({ref.columns[0]} >= " in plan, plan


# --- writing leads -----------------------------------------------------------------------------


def _copy(*, campaign_id, venture_id, batch_id, segment_ids) -> None:
    """COPY leads straight into the lead table as the importer writes a chunk: a line a lead,
    with the batch's columns appended to every line."""
    lines = []
    for i, segment_id in enumerate(segment_ids):
        values = dict.fromkeys(import_sql.STAGE_TEXT_COLUMNS, "")
        values.update(
            email_key=f"w{i}@x.example",
            consent_status="unknown",
            custom_fields="{}",
            grade="D",
            company_size=None,
            segment_id=segment_id,
            consent_at=None,
            value_estimate=None,
            source_row=i + 2,
            fit_score=0,
        )
        lines.append(import_sql.copy_line(values))
    now = timezone.now()
    shared = {
        "campaign_id": campaign_id,
        "venture_id": venture_id,
        "status": "active",
        "source_channel": "import",
        "source_list": "",
        "source_batch_id": batch_id,
        "last_batch_id": batch_id,
        **dict.fromkeys(("first_touch_at", "last_touch_at", "created_at", "updated_at"), now),
    }
    suffix = "\t" + "\t".join(import_sql.copy_text(shared[c]) for c in import_sql.BATCH_COLUMNS)
    assert import_sql.copy_leads("".join(line + suffix + "\n" for line in lines).encode())


def _write(how: str, *, campaign_id, venture_id, batch_id=None, segment_ids=(None,)) -> None:
    """Write one lead a segment id, the ORM's way or the importer's."""
    if how == "copy":
        _copy(
            campaign_id=campaign_id,
            venture_id=venture_id,
            batch_id=batch_id,
            segment_ids=segment_ids,
        )
        return
    leads = [
        Lead(
            campaign_id=campaign_id,
            venture_id=venture_id,
            source_batch_id=batch_id,
            segment_id=segment_id,
            email_key=f"w{i}@x.example",
        )
        for i, segment_id in enumerate(segment_ids)
    ]
    if how == "create":
        for lead in leads:
            lead.save()
    else:
        Lead.objects.bulk_create(leads)


def _bad_reference(case: str, campaign: Campaign, other: Campaign) -> tuple[dict, str]:
    """What to write for `case`, and what the refusal must say."""
    venture = campaign.venture_id
    if case == "missing campaign":
        refs = {"campaign_id": MISSING, "venture_id": venture}
        said = f'"ventures_campaign": key (campaign_id, venture_id)=({MISSING}, {venture})'
    elif case == "another venture's campaign":
        refs = {"campaign_id": other.pk, "venture_id": venture}
        said = f'"ventures_campaign": key (campaign_id, venture_id)=({other.pk}, {venture})'
    elif case == "missing source batch":
        refs = {"campaign_id": campaign.pk, "venture_id": venture, "batch_id": MISSING}
        said = f'"leads_importbatch": key (source_batch_id)=({MISSING})'
    else:
        refs = {"campaign_id": campaign.pk, "venture_id": venture, "segment_ids": (MISSING,)}
        said = f'"ventures_icpsegment": key (segment_id)=({MISSING})'
    return refs, f'insert or update on table "leads_lead" violates its reference to {said}'


@pytest.mark.postgres
@pytest.mark.parametrize("how", ["create", "bulk_create", "copy"])
@pytest.mark.parametrize(
    "case",
    ["missing campaign", "another venture's campaign", "missing source batch", "missing segment"],
)
def test_a_lead_with_a_missing_reference_is_refused_and_nothing_is_written(
    how, case, campaign, other_venture_campaign
):
    refs, said = _bad_reference(case, campaign, other_venture_campaign)

    message = _refused(lambda: _write(how, **refs))

    assert said in message and "is not present" in message
    assert not Lead.objects.exists()


@pytest.mark.postgres
@pytest.mark.parametrize("how", ["bulk_create", "copy"])
def test_a_statement_mixing_good_leads_and_one_bad_one_writes_nothing(how, campaign, segment):
    segment_ids = [segment.pk, None] * 250 + [MISSING] + [segment.pk] * 10

    message = _refused(
        lambda: _write(
            how, campaign_id=campaign.pk, venture_id=campaign.venture_id, segment_ids=segment_ids
        )
    )

    assert f"key (segment_id)=({MISSING}) is not present" in message
    assert not Lead.objects.exists()


@pytest.mark.postgres
@pytest.mark.parametrize("how", ["create", "bulk_create", "copy"])
def test_leads_with_existing_or_no_batch_and_segment_are_written(how, campaign, batch, segment):
    _write(
        how,
        campaign_id=campaign.pk,
        venture_id=campaign.venture_id,
        batch_id=batch.pk,
        segment_ids=(segment.pk, None, segment.pk),
    )
    second = CampaignFactory(venture=campaign.venture)
    _write(how, campaign_id=second.pk, venture_id=second.venture_id, batch_id=None)

    assert Lead.objects.filter(campaign=campaign, source_batch=batch).count() == 3
    assert Lead.objects.filter(segment=segment).count() == 2
    assert Lead.objects.filter(campaign=second, source_batch=None, segment=None).count() == 1


# --- updating leads ----------------------------------------------------------------------------


@pytest.mark.postgres
def test_moving_a_lead_to_another_ventures_campaign_is_refused(campaign, other_venture_campaign):
    lead = LeadFactory(campaign=campaign)
    lead.campaign = other_venture_campaign  # the venture stays: the pair does not exist

    message = _refused(lead.save)

    assert (
        f"key (campaign_id, venture_id)=({other_venture_campaign.pk}, {campaign.venture_id}) "
        "is not present" in message
    )
    lead.refresh_from_db()
    assert lead.campaign == campaign


@pytest.mark.postgres
def test_moving_a_lead_to_another_campaign_with_its_venture_is_accepted(
    campaign, other_venture_campaign
):
    lead = LeadFactory(campaign=campaign)

    Lead.objects.filter(pk=lead.pk).update(
        campaign=other_venture_campaign, venture=other_venture_campaign.venture
    )

    lead.refresh_from_db()
    assert lead.campaign == other_venture_campaign
    connection.check_constraints()


@pytest.mark.postgres
@pytest.mark.parametrize("field", ["segment_id", "source_batch_id"])
def test_pointing_a_lead_at_a_missing_segment_or_batch_is_refused(field, campaign, segment, batch):
    lead = LeadFactory(campaign=campaign, segment=segment, source_batch=batch)

    message = _refused(lambda: Lead.objects.filter(pk=lead.pk).update(**{field: MISSING}))

    assert f"key ({field})=({MISSING}) is not present" in message
    lead.refresh_from_db()
    assert (lead.segment, lead.source_batch) == (segment, batch)


def _reference_check_calls() -> dict[str, int]:
    """Calls of the reference check functions in this transaction (track_functions = 'pl')."""
    return dict(
        _rows(
            "SELECT funcname, calls FROM pg_stat_xact_user_functions "
            "WHERE funcname LIKE 'lead_references_check_%'"
        )
    )


@pytest.mark.postgres
def test_status_profile_fill_and_campaign_updates_call_no_reference_check(campaign, segment, batch):
    lead = LeadFactory(campaign=campaign, segment=segment, source_batch=batch)
    other_segment = IcpSegmentFactory(venture=campaign.venture)
    with connection.cursor() as cur:
        cur.execute("SET LOCAL track_functions = 'pl'")

    Lead.objects.filter(pk=lead.pk).update(status="unsubscribed")
    lead.refresh_from_db()
    lead.first_name = "Ann"
    lead.save()  # every column, the references with their values
    lead.title = "CEO"  # an import filling in blanks writes the segment with its value
    values = {**{c: getattr(lead, c) for c in import_sql.UPDATE_COLUMNS}, "custom_fields": "{}"}
    now = timezone.now()
    import_sql.update_leads(
        [(*(values[c] for c in import_sql.UPDATE_COLUMNS), batch.pk, now, now, lead.pk)]
    )
    Lead.objects.filter(pk=lead.pk).update(segment=None)  # Django's SET_NULL
    campaign.name = "Renamed"
    campaign.save()  # the venture written with its value

    lead.refresh_from_db()
    assert (lead.status, lead.first_name, lead.title, lead.segment) == (
        "unsubscribed",
        "Ann",
        "CEO",
        None,
    )
    assert _reference_check_calls() == {}
    # The counting works: a real change of a reference calls the check once.
    Lead.objects.filter(pk=lead.pk).update(segment=other_segment)
    assert _reference_check_calls() == {"lead_references_check_updated": 1}


# --- deleting or re-keying what leads reference ------------------------------------------------


def _referenced(what: str, campaign: Campaign) -> tuple[str, int]:
    """A row of `what` that a new lead references: its table and id."""
    if what == "campaign":
        LeadFactory(campaign=campaign)
        return "ventures_campaign", campaign.pk
    if what == "segment":
        segment = IcpSegmentFactory(venture=campaign.venture)
        LeadFactory(campaign=campaign, segment=segment)
        return "ventures_icpsegment", segment.pk
    batch = ImportBatchFactory(campaign=campaign)
    LeadFactory(campaign=campaign, source_batch=batch)
    return "leads_importbatch", batch.pk


@pytest.mark.postgres
@pytest.mark.parametrize("what", ["campaign", "segment", "batch"])
def test_deleting_a_referenced_row_with_raw_sql_is_refused(what, campaign):
    table, pk = _referenced(what, campaign)
    deleted = []

    def delete():
        with connection.cursor() as cur:
            cur.execute(f"DELETE FROM {table} WHERE id = %s", [pk])  # noqa: S608 - a constant
            deleted.append(pk)  # deferred: the DELETE itself goes through
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")

    message = _refused(delete)

    assert deleted == [pk]
    refused = f'update or delete on table "{table}" violates the reference from table "leads_lead"'
    assert refused in message and "is still referenced" in message
    assert _rows(f"SELECT count(*) FROM {table} WHERE id = %s", [pk]) == [(1,)]  # noqa: S608


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_deleting_a_campaign_that_has_leads_fails_at_commit():
    campaign = CampaignFactory()
    LeadFactory(campaign=campaign)
    deleted = False

    with (
        pytest.raises(IntegrityError, match="is still referenced from table"),
        transaction.atomic(),
    ):
        with connection.cursor() as cur:
            cur.execute("DELETE FROM ventures_campaign WHERE id = %s", [campaign.pk])
        deleted = True

    assert deleted
    assert Campaign.objects.filter(pk=campaign.pk).exists()


@pytest.mark.postgres
@pytest.mark.parametrize("what", ["campaign", "segment", "batch"])
def test_deleting_and_inserting_the_same_key_again_in_one_transaction_is_accepted(what, campaign):
    table, pk = _referenced(what, campaign)

    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE kept AS SELECT * FROM {table} WHERE id = %s", [pk])  # noqa: S608
        cur.execute(f"DELETE FROM {table} WHERE id = %s", [pk])  # noqa: S608 - a constant
        cur.execute(f"INSERT INTO {table} SELECT * FROM kept")  # noqa: S608 - a constant
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")

    assert _orphans() == 0


@pytest.mark.postgres
def test_moving_a_campaign_that_has_leads_to_another_venture_is_refused(campaign):
    LeadFactory(campaign=campaign)
    other = VentureFactory()

    def move():
        with connection.cursor() as cur:
            cur.execute(
                "UPDATE ventures_campaign SET venture_id = %s WHERE id = %s",
                [other.pk, campaign.pk],
            )
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")

    message = _refused(move)

    assert f"key (id, venture_id)=({campaign.pk}, {campaign.venture_id}) is still referenced" in (
        message
    )
    campaign.refresh_from_db()
    assert campaign.venture_id != other.pk


@pytest.mark.django_db
@pytest.mark.parametrize("model", [IcpSegment, ImportBatch])
def test_deleting_a_segment_or_batch_through_the_orm_clears_the_leads_reference(model, campaign):
    segment = IcpSegmentFactory(venture=campaign.venture)
    batch = ImportBatchFactory(campaign=campaign)
    leads = [LeadFactory(campaign=campaign, segment=segment, source_batch=batch) for _ in range(3)]

    (segment if model is IcpSegment else batch).delete()
    connection.check_constraints()  # PostgreSQL: runs the deferred checks now

    field = "segment" if model is IcpSegment else "source_batch"
    for lead in leads:
        lead.refresh_from_db()
        assert getattr(lead, field) is None
    assert Lead.objects.filter(campaign=campaign).count() == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("level", ["REPEATABLE_READ", "SERIALIZABLE"])
def test_deleting_a_referenced_row_outside_read_committed_is_refused(level):
    segment = IcpSegmentFactory()  # no lead references it: the isolation alone decides

    with psycopg.connect(running_database_url()) as conn:
        conn.isolation_level = psycopg.IsolationLevel[level]
        with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
            conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
            conn.execute("DELETE FROM ventures_icpsegment WHERE id = %s", [segment.pk])
        conn.rollback()
        message = str(caught.value)
        assert (
            'deleting or changing the key of a row of "ventures_icpsegment" needs READ COMMITTED '
            f"isolation, not {level.replace('_', ' ')}" in message
        )
        assert "cannot see leads committed by concurrent transactions" in message
        conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
        conn.execute("DELETE FROM ventures_icpsegment WHERE id = %s", [segment.pk])

    assert not IcpSegment.objects.filter(pk=segment.pk).exists()


# --- two real processes: an import and a DELETE of its campaign --------------------------------

# Inserts 100 leads into a campaign in one transaction and holds it open until told (a line on
# stdin, or its end). Prints its backend pid, then "inserted", then "committed" or
# "failed <SQLSTATE>".
INSERTER = """
import sys
import django; django.setup()
from django.db import connection, transaction
from leads.models import Lead
campaign_id, venture_id = int(sys.argv[1]), int(sys.argv[2])
with connection.cursor() as cur:
    cur.execute("SET lock_timeout = '60s'")  # nothing waits forever if the test fails
    cur.execute("SELECT pg_backend_pid()")
    print("pid", cur.fetchone()[0], flush=True)
try:
    with transaction.atomic():
        Lead.objects.bulk_create(
            Lead(campaign_id=campaign_id, venture_id=venture_id, email_key=f"c{i}@x.example")
            for i in range(100)
        )
        print("inserted", flush=True)
        sys.stdin.readline()
except Exception as exc:
    print("failed", exc.__cause__.sqlstate, flush=True)
else:
    print("committed", flush=True)
"""

# Deletes a campaign with raw SQL and commits when told. Prints its backend pid, "deleted" once
# its DELETE went through, then "committed" or "failed <SQLSTATE>".
DELETER = """
import sys
import psycopg
with psycopg.connect(sys.argv[1], options="-c lock_timeout=60s") as conn:
    print("pid", conn.info.backend_pid, flush=True)
    try:
        conn.execute("DELETE FROM ventures_campaign WHERE id = %s", [int(sys.argv[2])])
        print("deleted", flush=True)
        sys.stdin.readline()
        conn.commit()
    except psycopg.Error as exc:
        print("failed", exc.sqlstate, flush=True)
    else:
        print("committed", flush=True)
"""


class Child:
    """A Python process started with the test database; reads its lines, tells it to go on."""

    def __init__(self, code: str, *args: object):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *map(str, args)],
            cwd=REPO,
            env=clean_env(DATABASE_URL=running_database_url()),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = int(self.line().removeprefix("pid "))

    def line(self) -> str:
        line = self.proc.stdout.readline().strip()
        assert line, f"the process ended: {self.proc.stderr.read()[-2000:]}"
        return line

    def go_on(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=60)


def _wait_until_blocked(waiter: Child, holder: Child) -> None:
    """Until the waiter's backend waits for a lock the holder's backend holds."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        (blocked,) = _rows("SELECT %s = ANY (pg_blocking_pids(%s))", [holder.pid, waiter.pid])[0]
        if blocked:
            return
        assert waiter.proc.poll() is None, waiter.proc.stdout.read()
        time.sleep(0.05)
    pytest.fail("the second process never waited for the first")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_campaign_deleted_while_an_import_writes_its_leads_waits_then_fails():
    campaign = CampaignFactory()
    importer = Child(INSERTER, campaign.pk, campaign.venture_id)
    deleter = None
    try:
        assert importer.line() == "inserted"  # holds the campaign FOR KEY SHARE, uncommitted
        deleter = Child(DELETER, running_database_url(), campaign.pk)
        _wait_until_blocked(deleter, importer)

        importer.go_on()
        assert importer.line() == "committed"
        assert deleter.line() == "deleted"  # the row was only locked: the DELETE goes through
        deleter.go_on()
        # ... and the check at its commit sees the leads committed meanwhile.
        assert deleter.line() == f"failed {FOREIGN_KEY_VIOLATION}"
    finally:
        importer.end()
        if deleter:
            deleter.end()

    assert Campaign.objects.filter(pk=campaign.pk).exists()
    assert Lead.objects.filter(campaign=campaign).count() == 100
    assert _orphans() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_import_into_a_campaign_being_deleted_waits_then_fails():
    campaign = CampaignFactory()
    deleter = Child(DELETER, running_database_url(), campaign.pk)
    importer = None
    try:
        assert deleter.line() == "deleted"  # uncommitted
        importer = Child(INSERTER, campaign.pk, campaign.venture_id)
        _wait_until_blocked(importer, deleter)

        deleter.go_on()
        assert deleter.line() == "committed"  # the leads being inserted are not committed
        # The import's check finds the campaign gone once the DELETE committed.
        assert importer.line() == f"failed {FOREIGN_KEY_VIOLATION}"
    finally:
        deleter.end()
        if importer:
            importer.end()

    assert not Campaign.objects.filter(pk=campaign.pk).exists()
    assert not Lead.objects.exists()
    assert _orphans() == 0


@pytest.mark.postgres
@pytest.mark.parametrize("what", ["campaign", "segment", "batch"])
def test_truncating_a_referenced_table_is_refused_while_leads_reference_it(what, campaign):
    table, _ = _referenced(what, campaign)

    def truncate():
        with connection.cursor() as cur:
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred events may be pending
            cur.execute(f"TRUNCATE {table} CASCADE")

    message = _refused(truncate)

    assert f'cannot truncate "{table}": leads in "leads_lead" still reference it' in message
    assert _orphans() == 0 and Lead.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.parametrize("what", ["campaign", "segment", "batch"])
def test_truncating_a_referenced_table_with_the_leads_in_one_statement_is_accepted(what, campaign):
    table, _ = _referenced(what, campaign)

    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred events may be pending
        cur.execute(f"TRUNCATE {table}, leads_lead CASCADE")

    assert Lead.objects.count() == 0
    assert _rows(f"SELECT count(*) FROM {table}") == [(0,)]  # noqa: S608 - a constant
