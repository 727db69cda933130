"""CPU cost per row of the database-free half of a lead import, stage by stage.

    .venv/bin/python bench/prepare_leads.py                       # 100k rows, 5 runs
    .venv/bin/python bench/prepare_leads.py --rows 20000 --runs 3
    .venv/bin/python bench/prepare_leads.py --code /path/to/other/checkout   # its leads code

Stages, each timed over the whole file and printed in microseconds per data row:

- read:      `services._file_rows` (csv parsing and decoding of the file, header skipped;
             the lower of its two timings, one in each stage's process).
- normalise: `RowNormaliser` on every row (rows already in memory).
- prepare:   `ChunkProcessor.prepare` on chunks of CHUNK_ROWS (normalise + dedup within the
             chunk + the rows to insert); includes `normalise`.

Variants: the Apollo-layout bench file with the venture of bench/import_leads.py (no ICP
segments, the default scoring rules); the same file with ICP segments and scoring rules like
a real venture's (leads/tests/messy.py: 3 segments, 7 rules); and a messy list (mixed-case
emails, phones in many formats, LinkedIn URLs with tracking parameters, countries and states
that infer time zones, invalid rows and duplicates) with those segments and rules.

Nothing touches a database: the normaliser's scorer is built in memory (unsaved segments with
fixed primary keys) and ChunkProcessor gets an unsaved batch; Django is set up for the
PostgreSQL backend (never connected) so `prepare` builds the rows PostgreSQL's COPY gets.
Times are the worker process's CPU time (`time.process_time`), which other processes on a
shared machine disturb far less than wall-clock time. Every run is a fresh process, so caches
start cold as in a new import worker; the figure is
the median of the runs; normalise and prepare each get their own process. With --code, the workers import `leads` from that checkout (e.g. a
worktree of main) and the files and scoring setup come from this one: two invocations,
alternated, compare two versions of the code on the same inputs.
"""

from __future__ import annotations

import argparse
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
VARIANTS = ("apollo", "apollo+icp", "messy+icp")


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
    messy = OUT / f"messy_{rows}.csv"
    if not messy.exists():
        write_messy_file(messy, rows)
    return {"apollo": apollo, "apollo+icp": apollo, "messy+icp": messy}


def scoring_spec() -> dict:
    from leads.tests.messy import RULES, SEGMENTS

    return {"segments": SEGMENTS, "rules": [dataclasses.asdict(r) for r in RULES]}


# --- the worker: one run of one variant, in its own process ---------------------------------------


def worker(path: Path, stage: str, spec: dict | None, code: Path, vendor_url: str) -> dict:
    setup_django(code, vendor_url)
    from leads import importing, services
    from leads.importing import ChunkProcessor, ImportContext, RowNormaliser, chunked
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
    started = time.process_time()
    rows = list(services._file_rows(info))
    read = time.process_time() - started
    count = len(rows)
    gc.collect()
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
        for records in chunked(rows, importing.CHUNK_ROWS):
            created += len(processor.prepare(records).rows)
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
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for run in range(args.runs):
        for variant in variants:
            result = {}
            for stage in ("normalise", "prepare"):
                found = run_worker(files[variant], stage, variant, code, args.vendor_url)
                read = [found.pop("read_us"), *([result["read_us"]] if result else [])]
                result.update(found, read_us=min(read))
            results[variant].append(result)
            print(f"run {run + 1} {variant}: {json.dumps(result)}", file=sys.stderr)
    commit = subprocess.run(
        ["git", "-C", str(code), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(code), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(
        f"code: {code} at {commit}{' (modified)' if dirty else ''}; {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.rows:,} rows, median of {args.runs} runs, µs per row"
    )
    print("| variant | read | normalise | prepare (incl. normalise) |")
    print("|---|---:|---:|---:|")
    summary = {}
    for variant, runs in results.items():
        medians = {
            k: round(statistics.median(r[k] for r in runs), 1)
            for k in ("read_us", "normalise_us", "prepare_us")
        }
        summary[variant] = medians
        print(
            f"| {variant} | {medians['read_us']} | {medians['normalise_us']} | "
            f"{medians['prepare_us']} |"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "prepare_leads.json").write_text(
        json.dumps({"code": str(code), "commit": commit, "summary": summary, "runs": results})
    )


if __name__ == "__main__":
    main()
