"""CPU cost per row of the database-free half of a lead import, stage by stage.

    .venv/bin/python bench/prepare_leads.py                       # 100k rows, 5 runs
    .venv/bin/python bench/prepare_leads.py --rows 20000 --runs 3
    .venv/bin/python bench/prepare_leads.py --code /path/to/other/checkout   # its leads code
    .venv/bin/python bench/prepare_leads.py --baseline /path/to/main/worktree  # before/after

Stages, each timed over the whole file and printed in microseconds per data row:

- read:      iterating `services.file_rows` (csv parsing and decoding of the file, header
             skipped), streaming; the lower of its two timings, one in each stage's process.
- normalise: `RowNormaliser` on every row (rows already in memory).
- prepare:   `ChunkProcessor.prepare` on production-size chunks (normalise + dedup within the
             chunk + the rows to insert); includes `normalise`.

Variants: the Apollo-layout bench file with the venture of bench/import_leads.py (no ICP
segments, the default scoring rules); the same file with ICP segments and scoring rules like
a real venture's (leads/tests/messy.py: 3 segments, 7 rules); the same rows with a company
domain per 3 leads (the bench file has 997 x 8 domains in all, real lists have many more,
and a new domain costs more than a seen one), with those rules; and a messy list (mixed-case
emails, phones in many formats, LinkedIn URLs with tracking parameters, countries and states
that infer time zones, invalid rows and duplicates) with those segments and rules.

Nothing touches a database: the normaliser's scorer is built in memory (unsaved segments with
fixed primary keys) and ChunkProcessor gets an unsaved batch; Django is set up for the
PostgreSQL backend (never connected) so `prepare` builds the rows PostgreSQL's COPY gets.
Times are the worker process's CPU time (`time.process_time`), which other processes on a
shared machine disturb far less than wall-clock time. Every run is a fresh process, so caches
start cold as in a new import worker; the figure is
the median of the runs; normalise and prepare each get their own process. With --code, the workers import `leads` from that checkout and the files and scoring setup
come from this one; --baseline measures a second checkout (e.g. a worktree of main) in the
same runs, alternating with --code on each variant, and prints both with the change.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
NEVER_CONNECTED = "postgres://postgres@127.0.0.1:5432/aicmo_bench_prepare_never_connected"
VARIANTS = ("apollo", "apollo+icp", "domains+icp", "messy+icp")


def setup_django(code: Path, vendor_url: str) -> None:
    sys.path.insert(0, str(code))
    os.environ["DATABASE_URL"] = vendor_url
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aicmo_site.settings")
    import django

    django.setup()
    from django.conf import settings

    settings.DEBUG = False


def ensure_files(rows: int) -> dict[str, Path]:
    from leads.samples import write_apollo_file
    from leads.tests.messy import write_messy_file

    apollo = OUT / f"apollo_{rows}.csv"
    if not apollo.exists():
        write_apollo_file(apollo, rows)
    wide = OUT / f"apollo_domains_{rows}.csv"
    if not wide.exists():
        write_wide_apollo_file(wide, rows)
    messy = OUT / f"messy_{rows}.csv"
    if not messy.exists():
        write_messy_file(messy, rows)
    return {"apollo": apollo, "apollo+icp": apollo, "domains+icp": wide, "messy+icp": messy}


def write_wide_apollo_file(path: Path, count: int) -> Path:
    """The Apollo bench rows with a company (domain) per 3 leads instead of 997 domains in all:
    real lists have far more companies than the bench file, and each new domain costs more."""
    from leads.samples import APOLLO_HEADERS, apollo_rows

    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(APOLLO_HEADERS)
        for n, row in enumerate(apollo_rows(count)):
            old = row[5].rpartition("@")[2]
            new = f"company{n // 3}.example"
            writer.writerow([value.replace(old, new) for value in row])
    return path


def scoring_spec() -> dict:
    from leads.tests.messy import RULES, SEGMENTS

    return {"segments": SEGMENTS, "rules": [dataclasses.asdict(r) for r in RULES]}


# --- the worker: one run of one variant, in its own process ---------------------------------------


def worker(path: Path, stage: str, spec: dict | None, code: Path, vendor_url: str) -> dict:
    setup_django(code, vendor_url)
    from leads import importing, services
    from leads.importing import ChunkProcessor, ImportContext, chunked

    try:
        from leads.import_rows import RowNormaliser
    except ImportError:  # a checkout from before leads/importing.py was split by job
        from leads.importing import RowNormaliser
    # Production's chunk size; a module constant in older checkouts.
    chunking = getattr(importing, "DEFAULT_CHUNKING", None)
    chunk_rows = chunking.rows if chunking else importing.CHUNK_ROWS
    from leads.models import ImportBatch
    from leads.parsing import inspect_file, scan_file
    from leads.scoring import DEFAULT_RULES, LeadScorer, Rule
    from ventures.models import Campaign, IcpSegment, Venture

    assert Path(importing.__file__).is_relative_to(code), importing.__file__

    def scorer() -> LeadScorer:
        if spec is None:
            return LeadScorer(segments=[], rules=DEFAULT_RULES)
        segments = [IcpSegment(pk=100 + i, **s) for i, s in enumerate(spec["segments"])]
        return LeadScorer(segments=segments, rules=tuple(Rule(**r) for r in spec["rules"]))

    info = inspect_file(path)
    mapping = scan_file(info).mapping
    gc.collect()
    # Read as the import does: streaming, one row held at a time.
    count = 0
    started = time.process_time()
    for _ in services.file_rows(info):
        count += 1
    read = time.process_time() - started
    # The stages below get the rows from memory. An import holds at most two chunks; here all
    # rows are held, so they are frozen out of the garbage collector, which would otherwise
    # walk them on every full collection (the stage pays for its own garbage only).
    rows = list(services.file_rows(info))
    gc.collect()
    gc.freeze()
    result = {"rows": count, "read_us": read / count * 1e6}
    if stage == "normalise":
        normalise = RowNormaliser(mapping=mapping, scorer=scorer())
        started = time.process_time()
        for number, row in rows:
            normalise(number, row)
        result["normalise_us"] = (time.process_time() - started) / count * 1e6
    else:
        venture = Venture(pk=1, name="Bench", slug="bench")
        campaign = Campaign(pk=1, venture=venture, name="Bench", slug="bench")
        batch = ImportBatch(pk=1, campaign=campaign, file_name=path.name)
        ctx = ImportContext(
            batch=batch,
            normaliser=RowNormaliser(mapping=mapping, scorer=scorer()),
            policy="allow",
            source_list=path.name,
        )
        processor = ChunkProcessor(ctx)
        created = 0
        started = time.process_time()
        for records in chunked(rows, chunk_rows):
            prepared = processor.prepare(records)
            # The leads to write: `entries` in the first preparing-process version, else `rows`.
            created += len(getattr(prepared, "entries", None) or getattr(prepared, "rows", {}))
        result["prepare_us"] = (time.process_time() - started) / count * 1e6
        result["created"] = created
    return result


def run_worker(path: Path, stage: str, variant: str, code: Path, vendor_url: str) -> dict:
    spec = None if variant == "apollo" else scoring_spec()
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        str(path),
        "--stage",
        stage,
        "--code",
        str(code),
        "--vendor-url",
        vendor_url,
        "--spec",
        json.dumps(spec),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"worker failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def describe(code: Path) -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(code), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{code} at {git('rev-parse', '--short', 'HEAD')}{' (modified)' if dirty else ''}"


STAGES = ("read_us", "normalise_us", "prepare_us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5, help="Fresh processes per variant.")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--code", default=str(ROOT), help="Checkout whose `leads` is measured.")
    parser.add_argument(
        "--baseline",
        help="Another checkout (e.g. a worktree of main), measured in the same runs, alternating.",
    )
    parser.add_argument(
        "--vendor-url",
        default=NEVER_CONNECTED,
        help="Database URL that picks the backend `prepare` builds rows for (never connected).",
    )
    args = parser.parse_args()
    code = Path(args.code).resolve()
    if args.worker:
        spec = json.loads(args.spec) if args.spec else None
        print(json.dumps(worker(Path(args.worker), args.stage, spec, code, args.vendor_url)))
        return
    setup_django(ROOT, args.vendor_url)
    files = ensure_files(args.rows)
    variants = [v for v in args.variants.split(",") if v]
    codes = {"code": code}
    if args.baseline:
        codes = {"baseline": Path(args.baseline).resolve(), "code": code}
    results = {name: {v: [] for v in variants} for name in codes}
    for run in range(args.runs):
        for variant in variants:
            for name, tree in codes.items():
                result: dict = {}
                for stage in ("normalise", "prepare"):
                    found = run_worker(files[variant], stage, variant, tree, args.vendor_url)
                    read = [found.pop("read_us"), *([result["read_us"]] if result else [])]
                    result.update(found, read_us=min(read))
                results[name][variant].append(result)
                print(f"run {run + 1} {name} {variant}: {json.dumps(result)}", file=sys.stderr)
    print(
        f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.rows:,} rows; median of {args.runs} runs; CPU µs per row"
    )
    summary = {
        name: {
            v: {k: round(statistics.median(r[k] for r in runs), 1) for k in STAGES}
            for v, runs in by_variant.items()
        }
        for name, by_variant in results.items()
    }
    for name, tree in codes.items():
        print(f"{name}: {describe(tree)}")
    if args.baseline:
        print("| variant | stage | baseline | code | change |")
        print("|---|---|---:|---:|---:|")
        for v in variants:
            for k in STAGES:
                before, after = summary["baseline"][v][k], summary["code"][v][k]
                change = f"{(after - before) / before:+.0%}" if before else ""
                print(f"| {v} | {k.removesuffix('_us')} | {before} | {after} | {change} |")
    else:
        print("| variant | read | normalise | prepare (incl. normalise) |")
        print("|---|---:|---:|---:|")
        for v in variants:
            m = summary["code"][v]
            print(f"| {v} | {m['read_us']} | {m['normalise_us']} | {m['prepare_us']} |")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "prepare_leads.json").write_text(
        json.dumps(
            {"codes": {k: str(t) for k, t in codes.items()}, "summary": summary, "runs": results}
        )
    )


if __name__ == "__main__":
    main()
