"""What the lead table itself costs PostgreSQL per imported lead, and what each design choice
of its schema saves: the import's COPY of prepared leads, without the rest of the import.

    .venv/bin/python bench/lead_table.py                          # 1M leads, 2 runs a variant
    .venv/bin/python bench/lead_table.py --rows 200000 --runs 3 --variants migrated,row-fks

The leads are the Apollo bench file of bench/import_leads.py, prepared once by the importer's
own `ChunkProcessor.prepare` (database-free, as the preparing process does) into the COPY lines
an import sends, kept in bench/out/. Each run empties the lead table of its own database
(`aicmo_bench_lead_table`, migrated by the script), changes the schema as the variant says,
takes a CHECKPOINT, then copies the leads in production-size chunks, each in its own transaction
as the importer writes them (ROW EXCLUSIVE lock, SET LOCAL synchronous_commit and work_mem,
COPY, commit), and undoes the variant. Variants alternate run by run.

Printed per variant: the median PostgreSQL backend CPU seconds (the serving process's
utime + stime from /proc: far less disturbed by other processes than wall-clock time), that
median against the schema as migrated in the same run, the median wall-clock seconds, the WAL
written and the size of the lead table's indexes afterwards. A first, uncounted run warms up.
Variants:

- migrated:        the schema as the migrations leave it.
- row-fks:         the three per-row foreign keys of before leads/0009 instead of the
                   statement-level reference check.
- no-check:        no reference check at all (what the check itself costs).
- text-identity:   the identity index on (venture, identity_hash) as before leads/0008.
- descending-ids:  the consent and segment indexes ending in a descending id, as before
                   leads/0007 (the segment index not partial).
- work-mem-4mb:    the chunk transaction without its work_mem (the transition table of the
                   reference check spills to a temporary file).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from import_leads import setup_django  # bench/ is the script's directory

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/aicmo_bench_lead_table"
TICK = os.sysconf("SC_CLK_TCK")
LEAD = "leads_lead"

# name: (SQL that makes the variant, SQL that undoes it, the chunk's work_mem)
VARIANTS: dict[str, tuple[list[str], list[str], str | None]] = {
    "migrated": ([], [], None),
    "row-fks": (
        [
            f"ALTER TABLE {LEAD} DISABLE TRIGGER lead_references_inserted",
            f"ALTER TABLE {LEAD} ADD CONSTRAINT bench_campaign_fk FOREIGN KEY (campaign_id, "
            "venture_id) REFERENCES ventures_campaign (id, venture_id) DEFERRABLE INITIALLY DEFERRED",
            f"ALTER TABLE {LEAD} ADD CONSTRAINT bench_batch_fk FOREIGN KEY (source_batch_id) "
            "REFERENCES leads_importbatch (id) DEFERRABLE INITIALLY DEFERRED",
            f"ALTER TABLE {LEAD} ADD CONSTRAINT bench_segment_fk FOREIGN KEY (segment_id) "
            "REFERENCES ventures_icpsegment (id) DEFERRABLE INITIALLY DEFERRED",
        ],
        [
            *(
                f"ALTER TABLE {LEAD} DROP CONSTRAINT {name}"
                for name in ("bench_campaign_fk", "bench_batch_fk", "bench_segment_fk")
            ),
            f"ALTER TABLE {LEAD} ENABLE TRIGGER lead_references_inserted",
        ],
        None,
    ),
    "no-check": (
        [f"ALTER TABLE {LEAD} DISABLE TRIGGER lead_references_inserted"],
        [f"ALTER TABLE {LEAD} ENABLE TRIGGER lead_references_inserted"],
        None,
    ),
    "text-identity": (
        [
            "DROP INDEX lead_identity_key_idx",
            f"CREATE INDEX bench_venture_identity_idx ON {LEAD} (venture_id, identity_hash)",
        ],
        [
            "DROP INDEX bench_venture_identity_idx",
            f"CREATE INDEX lead_identity_key_idx ON {LEAD} ((hashtextextended(identity_hash, 0)))",
        ],
        None,
    ),
    "descending-ids": (
        [
            "DROP INDEX lead_campaign_consent_idx",
            "DROP INDEX lead_segment_idx",
            f"CREATE INDEX lead_campaign_consent_idx ON {LEAD} (campaign_id, consent_status, id DESC)",
            f"CREATE INDEX lead_segment_idx ON {LEAD} (segment_id, id DESC)",
        ],
        [
            "DROP INDEX lead_campaign_consent_idx",
            "DROP INDEX lead_segment_idx",
            f"CREATE INDEX lead_campaign_consent_idx ON {LEAD} (campaign_id, consent_status, id)",
            f"CREATE INDEX lead_segment_idx ON {LEAD} (segment_id, id) WHERE segment_id IS NOT NULL",
        ],
        None,
    ),
    "work-mem-4mb": ([], [], "4MB"),
}


def prepare_database(database_url: str) -> None:
    import subprocess

    import psycopg

    base, _, name = database_url.rpartition("/")
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "1"}
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"], env=env, check=True, cwd=ROOT
    )


def chunks_file(rows: int) -> Path:
    """A file of the COPY lines of `rows` Apollo leads as the importer prepares them, naming a
    campaign and an import batch made here (their ids are in the file's name); written once."""
    from leads.import_rows import RowNormaliser
    from leads.importing import DEFAULT_CHUNKING, ChunkProcessor, ImportContext, chunked
    from leads.models import ImportBatch
    from leads.parsing import inspect_file, scan_file
    from leads.samples import write_apollo_file
    from leads.scoring import DEFAULT_RULES, LeadScorer
    from leads.services import runs
    from ventures.models import Campaign, Venture

    venture, _ = Venture.objects.get_or_create(slug="bench-lead-table", defaults={"name": "B"})
    campaign, _ = Campaign.objects.get_or_create(
        slug="bench-lead-table", defaults={"venture": venture, "name": "Bench lead table"}
    )
    batch = ImportBatch.objects.filter(campaign=campaign).first() or ImportBatch.objects.create(
        campaign=campaign, file_name="bench"
    )
    path = OUT / f"lead_table_{rows}_{campaign.pk}_{batch.pk}.copy"
    if path.exists():
        return path
    source = OUT / f"apollo_{rows}.csv"
    if not source.exists():
        write_apollo_file(source, rows)
    info = inspect_file(source)
    ctx = ImportContext(
        batch=batch,
        normaliser=RowNormaliser(
            mapping=scan_file(info).mapping,
            scorer=LeadScorer(segments=[], rules=DEFAULT_RULES),
        ),
        policy="allow",
        source_list=source.name,
    )
    processor = ChunkProcessor(ctx)
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        for records in chunked(runs.file_rows(info), DEFAULT_CHUNKING.rows):
            out.write(b"".join(processor.prepare(records).rows))
    partial.rename(path)
    return path


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def run(database_url: str, path: Path, variant: str) -> dict:
    import psycopg

    from leads.import_sql import CHUNK_WORK_MEM, COPY_COLUMNS
    from leads.importing import DEFAULT_CHUNKING

    make, undo, work_mem = VARIANTS[variant]
    chunk = DEFAULT_CHUNKING.rows
    dsn = database_url.replace("postgres://", "postgresql://", 1)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"TRUNCATE {LEAD}")
        for sql in make:
            admin.execute(sql)
        admin.execute("CHECKPOINT")
    try:
        with psycopg.connect(dsn) as conn:
            pid = conn.info.backend_pid
            start_lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
            conn.commit()
            cpu, started = _cpu(pid), time.perf_counter()
            with path.open("rb") as fh:
                while lines := [line for _, line in zip(range(chunk), fh, strict=False)]:
                    with conn.cursor() as cur:
                        cur.execute(f"LOCK TABLE {LEAD} IN ROW EXCLUSIVE MODE")
                        cur.execute("SET LOCAL synchronous_commit = off")
                        cur.execute(f"SET LOCAL work_mem = '{work_mem or CHUNK_WORK_MEM}'")
                        columns = ", ".join(COPY_COLUMNS)
                        with cur.copy(f"COPY {LEAD} ({columns}) FROM STDIN") as copy:
                            copy.write(b"".join(lines))
                    conn.commit()
            seconds, cpu = time.perf_counter() - started, _cpu(pid) - cpu
            wal, indexes, leads = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s), "
                "(SELECT sum(pg_relation_size(indexrelid)) FROM pg_index "
                f" WHERE indrelid = '{LEAD}'::regclass), "
                f"(SELECT count(*) FROM {LEAD})",
                [start_lsn],
            ).fetchone()
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            for sql in undo:
                admin.execute(sql)
    return {
        "variant": variant,
        "leads": leads,
        "seconds": seconds,
        "cpu_db": cpu,
        "wal_mb": float(wal) / 1e6,
        "index_mb": float(indexes) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--database-url", default=DEFAULT_DB)
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants: {', '.join(sorted(unknown))}")
    if "migrated" not in variants:
        variants.insert(0, "migrated")
    OUT.mkdir(parents=True, exist_ok=True)
    prepare_database(args.database_url)
    setup_django(args.database_url)
    path = chunks_file(args.rows)
    results: dict[str, list[dict]] = {v: [] for v in variants}
    # A first run fills the caches and settles the new table's files; its figures are dropped.
    run(args.database_url, path, "migrated")
    for _ in range(args.runs):
        for variant in variants:
            result = run(args.database_url, path, variant)
            if result["leads"] != args.rows:
                raise SystemExit(f"{variant}: {result['leads']} leads copied, not {args.rows}")
            results[variant].append(result)
            print(
                f"  {variant}: {result['cpu_db']:.2f} s PostgreSQL CPU, {result['seconds']:.2f} s",
                file=sys.stderr,
            )
    base = statistics.median(r["cpu_db"] for r in results["migrated"])
    print(f"{args.rows:,} leads, {args.runs} runs a variant, alternating")
    print(
        "| variant | PostgreSQL CPU s (median) | x migrated | wall s (median) | WAL MB | indexes MB |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for variant, runs in results.items():
        cpu = statistics.median(r["cpu_db"] for r in runs)
        print(
            f"| {variant} | {cpu:.2f} | {cpu / base:.2f} "
            f"| {statistics.median(r['seconds'] for r in runs):.2f} "
            f"| {statistics.median(r['wal_mb'] for r in runs):,.0f} "
            f"| {statistics.median(r['index_mb'] for r in runs):,.0f} |"
        )


if __name__ == "__main__":
    main()
