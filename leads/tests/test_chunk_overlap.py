"""A big import prepares its chunks in a forked process while this one writes: the outcome,
the order of effects and the failure behaviour must be those of doing both in one process."""

from __future__ import annotations

import os
import signal

import pytest
from django.forms.models import model_to_dict

from leads import import_fork, import_sql, importing
from leads.import_fork import ImportProcessDied
from leads.import_rows import RowNormaliser
from leads.importing import Chunking
from leads.models import BatchState, ImportBatch, ImportIssue, Lead
from leads.parsing import FileProblem

# Three rows a chunk, and a preparing process for any import of more than one row.
SMALL_FORKED = Chunking(rows=3, process_min_rows=1)
# Two rows a chunk, prepared in this process whatever the size, or in a forked one for any
# import of more than one row.
INLINE = Chunking(rows=2, process_min_rows=10**9)
FORKED = Chunking(rows=2, process_min_rows=1)
# Three rows a chunk; a preparing process as in production, for more than one chunk.
SMALL = Chunking(rows=3)


@pytest.fixture
def pids(tmp_path, monkeypatch):
    """A file that gets the pid of the process normalising each row."""
    path = tmp_path / "preparing-pids.txt"
    normalise = RowNormaliser.__call__

    def recording(self, number, row):
        with path.open("a") as fh:
            fh.write(f"{os.getpid()}\n")
        return normalise(self, number, row)

    monkeypatch.setattr(RowNormaliser, "__call__", recording)
    return path


def test_chunks_are_prepared_in_another_process_and_written_in_this_one(
    run_import, write_csv, pids
):
    rows = "".join(f"p{i}@acme.example\n" for i in range(8))

    outcome = run_import(write_csv("Email\n" + rows), chunking=SMALL_FORKED)

    preparing = set(pids.read_text().split())
    assert preparing and str(os.getpid()) not in preparing
    assert outcome.counts["created"] == 8 and Lead.objects.count() == 8


def test_a_small_import_is_prepared_in_this_process(run_import, write_csv, pids):
    run_import(
        write_csv("Email\na@acme.example\nb@acme.example\nc@acme.example\n"),
        chunking=SMALL,  # three rows: one chunk, no child
    )
    assert set(pids.read_text().split()) == {str(os.getpid())}


def test_a_failure_preparing_a_later_chunk_fails_the_batch_after_the_earlier_chunks(
    run_import, write_csv, monkeypatch
):
    normalise = RowNormaliser.__call__

    def failing_on_row_8(self, number, row):
        if number == 8:
            raise RuntimeError("row 8 broke the normaliser")
        return normalise(self, number, row)

    monkeypatch.setattr(RowNormaliser, "__call__", failing_on_row_8)
    seen = []
    rows = "".join(f"p{i}@acme.example\n" for i in range(9))  # file rows 2..10

    with pytest.raises(RuntimeError, match="row 8 broke the normaliser"):
        run_import(
            write_csv("Email\n" + rows),
            progress=lambda d, t: seen.append((d, t)),
            chunking=SMALL_FORKED,
        )

    batch = ImportBatch.objects.get()
    assert batch.state == BatchState.FAILED
    assert batch.error == "RuntimeError: row 8 broke the normaliser"
    # Rows 2-7 (two chunks) were written and reported; the third chunk wrote nothing.
    assert seen == [(3, 9), (6, 9)]
    assert sorted(Lead.objects.values_list("source_row", flat=True)) == [2, 3, 4, 5, 6, 7]
    assert batch.created == 6 and batch.rows_done == 6


class _Unpicklable(Exception):
    def __init__(self, message, handle):
        super().__init__(message)
        self.handle = handle

    def __reduce__(self):
        raise TypeError("cannot pickle this exception")


def test_an_exception_that_cannot_cross_the_pipe_still_fails_the_batch_with_its_message(
    run_import, write_csv, monkeypatch
):
    def failing(self, number, row):
        raise _Unpicklable("the normaliser lost its handle", handle=object())

    monkeypatch.setattr(RowNormaliser, "__call__", failing)

    with pytest.raises(RuntimeError, match="_Unpicklable: the normaliser lost its handle"):
        run_import(write_csv("Email\na@acme.example\nb@acme.example\n"), chunking=SMALL_FORKED)

    assert ImportBatch.objects.get().state == BatchState.FAILED
    assert Lead.objects.count() == 0


def test_a_preparing_process_that_is_killed_fails_the_batch_with_a_clear_message(
    run_import, write_csv, monkeypatch
):
    normalise = RowNormaliser.__call__

    def killed_on_row_6(self, number, row):
        if number == 6:
            os.kill(os.getpid(), signal.SIGKILL)
        return normalise(self, number, row)

    monkeypatch.setattr(RowNormaliser, "__call__", killed_on_row_6)
    rows = "".join(f"k{i}@acme.example\n" for i in range(9))

    with pytest.raises(ImportProcessDied, match="killed by signal 9"):
        run_import(write_csv("Email\n" + rows), chunking=SMALL_FORKED)

    batch = ImportBatch.objects.get()
    assert batch.state == BatchState.FAILED
    assert "stopped unexpectedly (killed by signal 9)" in batch.error
    assert sorted(Lead.objects.values_list("source_row", flat=True)) == [2, 3, 4]


def test_a_failure_writing_a_chunk_stops_the_import_and_the_preparing_process(
    run_import, write_csv, monkeypatch, pids
):
    write = importing.ChunkProcessor._write
    calls = []

    def failing_second_write(self, prepared):
        calls.append(len(prepared))
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return write(self, prepared)

    monkeypatch.setattr(importing.ChunkProcessor, "_write", failing_second_write)
    rows = "".join(f"q{i}@acme.example\n" for i in range(3000))

    with pytest.raises(RuntimeError, match="the database went away"):
        run_import(write_csv("Email\n" + rows), chunking=SMALL_FORKED)

    assert calls == [3, 3]
    assert sorted(Lead.objects.values_list("source_row", flat=True)) == [2, 3, 4]
    assert ImportBatch.objects.get().state == BatchState.FAILED
    # The child was stopped and reaped before the import returned; the full pipe held it back
    # long before the end of the file.
    (child,) = set(pids.read_text().split())
    with pytest.raises(ChildProcessError):
        os.waitpid(int(child), os.WNOHANG)
    assert len(pids.read_text().split()) < 3000


def test_a_dry_run_with_several_chunks_counts_everything_and_keeps_nothing(run_import, write_csv):
    rows = "".join(f"d{i}@acme.example\n" for i in range(7)) + "d0@acme.example\nnot-an-email\n"

    outcome = run_import(write_csv("Email\n" + rows), dry_run=True, chunking=FORKED)

    assert outcome.counts["created"] == 7
    assert outcome.counts["duplicates_in_file"] == 1 and outcome.counts["invalid"] == 1
    assert Lead.objects.count() == 0 and ImportBatch.objects.count() == 0


MESSY = (
    "Email,First Name,Last Name,Title,Company,Phone,Country,State,# Employees,Consent,"
    "Consent Date,Value,Person Linkedin Url,Icebreaker\n"
    "Ann@Acme.example,Ann,Lee,VP Sales,Acme,+1 415 555 0100,United States,CA,120,yes,"
    '2026-01-02,1200.50,https://www.linkedin.com/in/ann-lee?trk=x,"Saw your talk, \\\\o/"\n'
    'bob@beta.example,Bob,,CTO,Beta\tInc,(030) 1234567,Germany,,11-50,,,,,"tab\there"\n'
    "ann@acme.example,Annie,,,,,,,,,,,,dup of row 2\n"
    'carl@gamma.example,Carl,"Back\\slash",Founder,"Line\nBreak",,France,,5000,no,,abc,,\n'
    "bad-email,X,,,,,,,,,,,,\n"
    'dora@delta.example,Dora,Ng,,Delta,,Japan,,,,,,,"quote ""here"""\n'
    "eve@eps.example,Eve,Ox,Head of Growth,Eps,,,,2-10,DNC,,,,\n"
)


def _stored(campaign):
    rows = []
    for lead in Lead.objects.filter(campaign=campaign).order_by("email_key"):
        values = model_to_dict(lead, exclude=["id", "campaign", "venture", "source_batch"])
        for moment in ("created_at", "updated_at", "first_touch_at", "last_touch_at"):
            assert values.pop(moment) is not None
        rows.append(values)
    return rows


def test_a_preparing_process_imports_exactly_what_one_process_imports(
    run_import, write_csv, campaign
):
    from tests.factories import CampaignFactory

    other = CampaignFactory()  # another venture: no cross-campaign policy in play
    path = write_csv(MESSY)

    inline = run_import(path, force=True, chunking=INLINE)
    forked = run_import(path, into=other, force=True, chunking=FORKED)
    # ... and a second import of the same file (existing leads, blanks to fill) both ways.
    inline_again = run_import(path, force=True, chunking=INLINE)
    forked_again = run_import(path, into=other, force=True, chunking=FORKED)

    assert inline.counts == forked.counts and inline_again.counts == forked_again.counts
    assert inline.counts["created"] == 5 and inline.counts["invalid"] == 1
    assert inline_again.counts["duplicates_in_campaign"] == 5
    assert _stored(campaign) == _stored(other)
    carl = Lead.objects.get(campaign=other, email_key="carl@gamma.example")
    assert carl.last_name == "Back\\slash" and carl.company == "Line\nBreak"
    bob = Lead.objects.get(campaign=other, email_key="bob@beta.example")
    assert bob.company == "Beta\tInc" and bob.custom_fields["Icebreaker"] == "tab\there"

    def issues(outcome):
        return sorted(
            ImportIssue.objects.filter(batch_id=outcome.batch_id).values_list(
                "row_number", "column", "kind", "reason"
            )
        )

    assert issues(inline) == issues(forked) and issues(inline_again) == issues(forked_again)


def test_chunked_makes_the_first_runs_as_short_as_the_ramp_says():
    runs = [list(run) for run in importing.chunked(range(20), 8, ramp=(1, 2, 4))]
    assert [len(r) for r in runs] == [1, 2, 4, 8, 5]
    assert [x for r in runs for x in r] == list(range(20))
    assert [len(list(r)) for r in importing.chunked(range(3), 8, ramp=(1, 2, 4))] == [1, 2]


def test_with_a_preparing_process_the_first_chunks_are_short_so_writing_starts_early(
    run_import, write_csv, monkeypatch
):
    written = []
    write = importing.ChunkProcessor._write

    def recording(self, prepared):
        written.append(len(prepared))
        return write(self, prepared)

    monkeypatch.setattr(importing.ChunkProcessor, "_write", recording)
    rows = "".join(f"r{i}@acme.example\n" for i in range(20))
    path = write_csv("Email\n" + rows)

    forked = run_import(path, chunking=Chunking(rows=8, ramp_min_rows=8, process_min_rows=1))
    assert written == [1, 2, 4, 8, 5]  # 8 // 8, 8 // 4, 8 // 2, then full chunks
    written.clear()
    run_import(path, force=True, chunking=Chunking(rows=8, ramp_min_rows=8, process_min_rows=10**9))
    assert written == [8, 8, 4]  # in one process nothing overlaps: full chunks
    assert forked.counts["created"] == 20 and Lead.objects.count() == 20


# --- the whole-file check beside the first chunks --------------------------------------------


@pytest.fixture
def checked_beside(monkeypatch):
    """Every file is checked by a second process while its first chunks are written."""
    monkeypatch.setattr("leads.services.imports.CHECK_BESIDE_BYTES", 0)


def test_a_big_file_checked_beside_the_import_is_imported_with_its_row_count(
    run_import, write_csv, checked_beside
):
    rows = "".join(f"c{i}@acme.example\n" for i in range(10)) + "bad\n"

    outcome = run_import(write_csv("Email\n" + rows), chunking=SMALL)

    batch = ImportBatch.objects.get(pk=outcome.batch_id)
    assert batch.state == BatchState.DONE
    assert (batch.rows_total, batch.rows_done, batch.created, batch.invalid) == (11, 11, 10, 1)


def test_a_file_problem_found_after_chunks_were_written_leaves_the_database_as_it_was(
    run_import, write_csv, checked_beside, monkeypatch
):
    # The verdict comes last: every chunk before it was written in the pending transaction.
    monkeypatch.setattr(import_fork.FileCheck, "done", lambda self: False)
    written = []
    write = importing.ChunkProcessor._write
    monkeypatch.setattr(
        importing.ChunkProcessor, "_write", lambda self, p: written.append(1) or write(self, p)
    )
    rows = "".join(f"r{i}@acme.example,Ann\n" for i in range(8)) + "r9@acme.example,Bob,extra\n"

    with pytest.raises(FileProblem, match="do not have the 2 columns of the header"):
        run_import(write_csv("Email,First Name\n" + rows), chunking=SMALL)

    assert len(written) == 3
    assert Lead.objects.count() == 0 and ImportBatch.objects.count() == 0


def test_a_check_process_that_dies_fails_the_import_and_writes_nothing(
    run_import, write_csv, checked_beside, monkeypatch
):
    monkeypatch.setattr(import_fork, "scan_file", lambda info: os.kill(os.getpid(), 9))
    rows = "".join(f"k{i}@acme.example\n" for i in range(7))

    with pytest.raises(ImportProcessDied, match="checking the file stopped unexpectedly"):
        run_import(write_csv("Email\n" + rows), chunking=SMALL)

    assert Lead.objects.count() == 0 and ImportBatch.objects.count() == 0


def test_a_header_problem_of_a_big_file_is_refused_before_anything_starts(
    run_import, write_csv, checked_beside
):
    with pytest.raises(FileProblem, match=r"[Ee]mail"):
        run_import(write_csv("Name,Company\nAnn,Acme\n"), chunking=SMALL)
    assert ImportBatch.objects.count() == 0


def test_a_chunk_that_meets_a_deadlock_is_retried_and_other_errors_are_not(
    run_import, write_csv, monkeypatch
):
    import psycopg

    write = importing.ChunkProcessor._write
    attempts = []

    def deadlocked_once(self, prepared):
        attempts.append(1)
        if len(attempts) == 1:
            # What a COPY raises: psycopg's own error, which Django does not wrap.
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return write(self, prepared)

    monkeypatch.setattr(importing.ChunkProcessor, "_write", deadlocked_once)
    outcome = run_import(write_csv("Email\na@acme.example\nb@acme.example\n"))
    assert len(attempts) == 2 and outcome.counts["created"] == 2

    def broken(self, prepared):
        attempts.append(1)
        raise psycopg.errors.UndefinedColumn("no such column")

    attempts.clear()
    monkeypatch.setattr(importing.ChunkProcessor, "_write", broken)
    with pytest.raises(psycopg.errors.UndefinedColumn):
        run_import(write_csv("Email\nc@acme.example\n"))
    assert len(attempts) == 1


def test_a_big_file_of_one_chunk_is_checked_beside_but_prepared_in_this_process(
    run_import, write_csv, pids
):
    # 9,000 rows of about 300 bytes: over the 2 MB of a check beside the import, but one
    # chunk, so a preparing process would have nothing to overlap with.
    padding = "x" * 270
    rows = "".join(f"p{i}@acme.example,{padding}\n" for i in range(9000))
    path = write_csv("Email,Notes\n" + rows)
    assert path.stat().st_size > 2 * 1024 * 1024

    outcome = run_import(path)

    assert outcome.counts["created"] == 9000
    assert set(pids.read_text().split()) == {str(os.getpid())}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # the chunk's transaction is the outermost, as in use
def test_chunk_transactions_relax_commit_and_memory_settings_for_themselves_only(
    run_import, write_csv, monkeypatch
):
    from django.db import connection

    seen = []
    copy = import_sql.copy_leads

    def observing(data):
        with connection.cursor() as cur:
            cur.execute("SELECT current_setting('work_mem'), current_setting('synchronous_commit')")
            seen.append(cur.fetchone())
        return copy(data)

    monkeypatch.setattr(importing, "copy_leads", observing)  # as the chunk loop calls it
    with connection.cursor() as cur:
        cur.execute("SELECT current_setting('work_mem'), current_setting('synchronous_commit')")
        before = cur.fetchone()

    run_import(write_csv("Email\na@acme.example\nb@acme.example\n"))

    assert seen == [(import_sql.CHUNK_WORK_MEM, "off")]
    with connection.cursor() as cur:
        cur.execute("SELECT current_setting('work_mem'), current_setting('synchronous_commit')")
        assert cur.fetchone() == before != seen[0]  # SET LOCAL: gone with the chunk's commit
