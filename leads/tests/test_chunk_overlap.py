"""Chunks are prepared in a worker thread while the previous one is written: the outcome,
the order of effects and the failure behaviour must be those of doing both in turn."""

from __future__ import annotations

import sys
import threading

import pytest

from leads import importing
from leads.importing import RowNormaliser
from leads.models import BatchState, ImportBatch, Lead


def test_a_failure_preparing_a_later_chunk_fails_the_batch_after_the_earlier_chunks(
    run_import, write_csv, campaign, monkeypatch
):
    monkeypatch.setattr("leads.importing.CHUNK_ROWS", 3)
    normalise = RowNormaliser.__call__
    preparing_threads = set()

    def failing_on_row_8(self, number, row):
        preparing_threads.add(threading.get_ident())
        if number == 8:
            raise RuntimeError("row 8 broke the normaliser")
        return normalise(self, number, row)

    monkeypatch.setattr(RowNormaliser, "__call__", failing_on_row_8)
    seen = []
    rows = "".join(f"p{i}@acme.example\n" for i in range(9))  # file rows 2..10

    with pytest.raises(RuntimeError, match="row 8 broke the normaliser"):
        run_import(write_csv("Email\n" + rows), progress=lambda d, t: seen.append((d, t)))

    batch = ImportBatch.objects.get()
    assert batch.state == BatchState.FAILED
    assert batch.error == "RuntimeError: row 8 broke the normaliser"
    # Rows 2-7 (two chunks) were written and reported; the third chunk wrote nothing.
    assert seen == [(3, 9), (6, 9)]
    assert sorted(Lead.objects.values_list("source_row", flat=True)) == [2, 3, 4, 5, 6, 7]
    assert batch.created == 6 and batch.rows_done == 6
    assert preparing_threads and threading.get_ident() not in preparing_threads


def test_a_failure_writing_a_chunk_stops_the_import_and_writes_nothing_after_it(
    run_import, write_csv, monkeypatch
):
    monkeypatch.setattr("leads.importing.CHUNK_ROWS", 3)
    write = importing.ChunkProcessor._write
    calls = []

    def failing_second_write(self, prepared):
        calls.append(len(prepared.leads))
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return write(self, prepared)

    monkeypatch.setattr(importing.ChunkProcessor, "_write", failing_second_write)
    rows = "".join(f"q{i}@acme.example\n" for i in range(9))

    with pytest.raises(RuntimeError, match="the database went away"):
        run_import(write_csv("Email\n" + rows))

    assert calls == [3, 3]
    assert sorted(Lead.objects.values_list("source_row", flat=True)) == [2, 3, 4]
    assert ImportBatch.objects.get().state == BatchState.FAILED


def test_the_thread_switch_interval_is_restored_after_an_import(run_import, write_csv):
    before = sys.getswitchinterval()
    outcome = run_import(write_csv("Email\na@acme.example\nb@acme.example\n"))
    assert outcome.counts["created"] == 2
    assert sys.getswitchinterval() == before


def test_a_dry_run_with_several_chunks_counts_everything_and_keeps_nothing(
    run_import, write_csv, monkeypatch
):
    monkeypatch.setattr("leads.importing.CHUNK_ROWS", 2)
    rows = "".join(f"d{i}@acme.example\n" for i in range(7)) + "d0@acme.example\nnot-an-email\n"

    outcome = run_import(write_csv("Email\n" + rows), dry_run=True)

    assert outcome.counts["created"] == 7
    assert outcome.counts["duplicates_in_file"] == 1 and outcome.counts["invalid"] == 1
    assert Lead.objects.count() == 0 and ImportBatch.objects.count() == 0
