"""Lead import benchmark: our import path vs django-import-export vs a raw COPY floor.

    .venv/bin/python bench/import_leads.py                      # 10k, 100k, 1M on PG + SQLite
    .venv/bin/python bench/import_leads.py --sizes 10000 --runs 1 --die-sizes 10000

Generates Apollo-layout files (bench/out/apollo_<n>.csv, git-ignored), then measures each
path in a fresh subprocess (so peak RSS is that path's own) against an emptied lead table:

- ours:  `leads.services.imports.lead_import` end to end (hash, scan, parse, map, normalise,
         validate, dedup, suppression check, scoring, write, audit).
- die:   django-import-export's default ModelResource for Lead (per-row instance + save, in
         one transaction), on the same file with its headers renamed to Lead field names and
         the campaign/venture/email_key columns a ModelResource needs added.
- floor: raw COPY of the file into a staging table, then one INSERT ... SELECT ... ON CONFLICT
         DO NOTHING into the lead table (lower-cased key and SHA-256 computed in SQL), in one
         transaction: the physical floor of landing the same rows.

Peak memory is the peak proportional set size (PSS) of the worker and its child (the process a
big import forks to prepare rows), sampled every 250 ms: Python, Django and the data, shared
pages counted once. The worker's own `ru_maxrss` is reported beside it. CPU seconds are given
per process: the worker, its child, and the PostgreSQL backend. Prints a Markdown table and writes bench/out/import_leads.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/aicmo_bench_leads"

# Apollo header -> Lead field, for django-import-export and the floor.
APOLLO_TO_FIELD = {
    "First Name": "first_name",
    "Last Name": "last_name",
    "Title": "title",
    "Company Name for Emails": "company",
    "Email": "email",
    "First Phone": "phone",
    "# Employees": "company_size",
    "Industry": "industry",
    "Person Linkedin Url": "linkedin_url",
    "Website": "website",
    "City": "city",
    "State": "state",
    "Country": "country",
}


def setup_django(db_url: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = db_url
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aicmo_site.settings")
    import django

    django.setup()
    from django.conf import settings

    # DEBUG=1 only gets the dev settings past their secret-key check; measure as production
    # runs, without Django's debug query log (it would hold every query of the DIE path).
    settings.DEBUG = False


def fresh_campaign():
    from django.db import connection

    from ventures.models import Campaign, Venture

    tag = uuid.uuid4().hex[:10]
    with connection.cursor() as cur:
        # Every measurement starts from the same, empty lead table.
        if connection.vendor == "postgresql":
            cur.execute("TRUNCATE leads_lead, leads_importissue, leads_importbatch CASCADE")
        else:
            for table in ("leads_importissue", "leads_lead", "leads_importbatch"):
                cur.execute(f"DELETE FROM {table}")
    venture = Venture.objects.create(name=f"Bench {tag}", slug=f"bench-{tag}")
    return Campaign.objects.create(venture=venture, name=f"Bench {tag}", slug=f"bench-{tag}")


class MemorySampler(threading.Thread):
    """Peak proportional set size (PSS) of this process and its children, sampled every 250 ms.
    PSS splits the pages a forked child still shares with its parent between the two, so the
    sum is what both really hold; adding the two RSS figures would count shared pages twice.
    Reading smaps_rollup costs the kernel a few ms per process: sampling every 20 ms took a
    quarter of a core and slowed the import it measured."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kb = 0
        self.stopped = threading.Event()

    @staticmethod
    def _pss_kb(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _children(self) -> list[int]:
        pid = os.getpid()
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as fh:
                return [int(p) for p in fh.read().split()]
        except OSError:
            return []

    def run(self) -> None:
        while not self.stopped.wait(0.25):
            total = self._pss_kb(os.getpid()) + sum(self._pss_kb(c) for c in self._children())
            self.peak_kb = max(self.peak_kb, total)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process on this machine (a PostgreSQL backend)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker(kind: str, path: Path, db_url: str) -> dict:
    setup_django(db_url)
    campaign = fresh_campaign()
    from django.db import connection

    backend = None
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            backend = cur.fetchone()[0]
    sampler = MemorySampler()
    sampler.start()
    db_cpu = _cpu_seconds(backend) if backend else 0.0
    own = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if kind == "ours":
        from leads.services.imports import lead_import

        outcome = lead_import(campaign=campaign, path=path, actor="bench", force=True)
        created = outcome.counts["created"]
    elif kind == "die":
        created = _die_import(campaign, path)
    elif kind == "floor":
        created = _floor_import(campaign, path)
    else:
        raise SystemExit(f"unknown worker {kind}")
    seconds = time.perf_counter() - started
    sampler.stopped.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "kind": kind,
        "seconds": seconds,
        "created": created,
        "peak_rss_mb": after.ru_maxrss / 1024,
        "child_peak_rss_mb": children.ru_maxrss / 1024,
        "peak_pss_mb": sampler.peak_kb / 1024,
        # CPU seconds spent on the import: this process, the process it forked to prepare rows
        # (the only child), and the PostgreSQL backend serving the connection.
        "cpu_python": (after.ru_utime + after.ru_stime) - (own.ru_utime + own.ru_stime),
        "cpu_child": children.ru_utime + children.ru_stime,
        "cpu_db": (_cpu_seconds(backend) - db_cpu) if backend else None,
    }


def _die_import(campaign, path: Path) -> int:
    import tablib
    from import_export import resources

    from leads.models import Lead

    class LeadResource(resources.ModelResource):
        class Meta:
            model = Lead

    dataset = tablib.Dataset().load(path.read_text(encoding="utf-8-sig"), format="csv")
    headers = [APOLLO_TO_FIELD.get(h, h) for h in dataset.headers]
    dataset.headers = headers
    dataset.append_col([c.lower() for c in dataset["email"]], header="email_key")
    dataset.append_col([campaign.pk] * len(dataset), header="campaign")
    dataset.append_col([campaign.venture_id] * len(dataset), header="venture")
    result = LeadResource().import_data(dataset, dry_run=False, raise_errors=True)
    return result.totals["new"]


def _floor_import(campaign, path: Path) -> int:
    from django.db import connection, transaction

    from leads.samples import APOLLO_HEADERS

    columns = ", ".join(f"c{i} text" for i in range(len(APOLLO_HEADERS)))
    col = {h: f"c{i}" for i, h in enumerate(APOLLO_HEADERS)}
    custom = [h for h in APOLLO_HEADERS if h not in APOLLO_TO_FIELD]
    custom_json = "jsonb_build_object(" + ", ".join(f"'{h}', {col[h]}" for h in custom) + ")"
    email = col["Email"]
    fields = {f: col[h] for h, f in APOLLO_TO_FIELD.items()}
    fields["company_size"] = f"NULLIF({col['# Employees']}, '')::int"
    names = list(fields)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE raw_leads ({columns}) ON COMMIT DROP")
        # FORCE_NOT_NULL: an empty cell is '' (as in our import), not NULL.
        copy_sql = (
            "COPY raw_leads FROM STDIN WITH (FORMAT csv, HEADER true, "
            f"FORCE_NOT_NULL ({', '.join(col.values())}))"
        )
        with path.open("rb") as fh, cur.cursor.copy(copy_sql) as copy:
            first = fh.read(3)
            copy.write(first[3:] if first == b"\xef\xbb\xbf" else first)
            while block := fh.read(1 << 20):
                copy.write(block)
        cur.execute(
            f"INSERT INTO leads_lead (campaign_id, venture_id, status, email_key, identity_hash, "
            f"{', '.join(names)}, company_domain, timezone, consent_status, consent_source, "
            "custom_fields, source_channel, source_list, utm_source, utm_medium, utm_campaign, "
            "utm_content, fit_score, grade, score_explanation, created_at, updated_at) "
            f"SELECT %s, %s, 'active', lower({email}), "
            f"encode(sha256(convert_to('email:' || lower({email}), 'UTF8')), 'hex'), "
            f"{', '.join(fields[n] for n in names)}, '', '', 'unknown', '', {custom_json}, "
            "'import', 'floor', '', '', '', '', 0, 'D', '', now(), now() FROM raw_leads "
            "ON CONFLICT (campaign_id, email_key) WHERE NOT (email_key = '') DO NOTHING",
            [campaign.pk, campaign.venture_id],
        )
        return cur.rowcount


# --- orchestration -----------------------------------------------------------------------------


def run_worker(kind: str, path: Path, db_url: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--file", str(path), "--db", db_url],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{kind} on {path.name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prepare_db(db_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": db_url, "DEBUG": "1"}
    if db_url.startswith("postgres"):
        import psycopg

        base, _, name = db_url.rpartition("/")
        with psycopg.connect(base + "/postgres", autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"], env=env, check=True, cwd=ROOT
    )


def ensure_file(rows: int) -> Path:
    from leads.samples import write_apollo_file

    path = OUT / f"apollo_{rows}.csv"
    if not path.exists():
        print(f"generating {path.name}", file=sys.stderr)
        write_apollo_file(path, rows)
    return path


def measure(kind: str, path: Path, rows: int, db_url: str, runs: int) -> dict:
    results = [run_worker(kind, path, db_url) for _ in range(runs)]
    for r in results:
        if r["created"] != rows:
            raise SystemExit(f"{kind} created {r['created']} of {rows} rows")
    seconds = statistics.median(r["seconds"] for r in results)
    return {
        "kind": kind,
        "rows": rows,
        "runs": runs,
        "seconds_median": round(seconds, 3),
        "seconds_all": [round(r["seconds"], 3) for r in results],
        "rows_per_s": round(rows / seconds),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in results), 1),
        "peak_pss_mb": round(max(r["peak_pss_mb"] for r in results), 1),
        # Median CPU seconds per process (see `worker`).
        **{
            name: round(statistics.median(r[name] for r in results), 2)
            for name in ("cpu_python", "cpu_child", "cpu_db")
            if all(r[name] is not None for r in results)
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--die-sizes", default="10000,100000")
    parser.add_argument("--runs", type=int, default=3, help="Runs per measurement (median).")
    parser.add_argument("--die-runs", type=int, default=1)
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.file), args.db)))
        return
    sys.path.insert(0, str(ROOT))
    sizes = [int(s) for s in args.sizes.split(",") if s]
    die_sizes = [int(s) for s in args.die_sizes.split(",") if s]
    sqlite_url = f"sqlite:///{OUT / 'bench_leads.sqlite3'}"
    prepare_db(args.pg_url)
    if not args.no_sqlite:
        prepare_db(sqlite_url)
    results = []
    for rows in sizes:
        path = ensure_file(rows)
        for kind in ("floor", "ours"):
            results.append(
                {"db": "postgresql", **measure(kind, path, rows, args.pg_url, args.runs)}
            )
            print(json.dumps(results[-1]), file=sys.stderr)
        if rows in die_sizes:
            results.append(
                {"db": "postgresql", **measure("die", path, rows, args.pg_url, args.die_runs)}
            )
            print(json.dumps(results[-1]), file=sys.stderr)
        if not args.no_sqlite:
            results.append({"db": "sqlite", **measure("ours", path, rows, sqlite_url, args.runs)})
            print(json.dumps(results[-1]), file=sys.stderr)
    report(results)


def report(results: list[dict]) -> None:
    def rate(db, kind, rows):
        return next(
            (
                r["rows_per_s"]
                for r in results
                if (r["db"], r["kind"], r["rows"]) == (db, kind, rows)
            ),
            None,
        )

    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(
        "| db | path | rows | median s (runs) | rows/s | vs floor | ours vs it | peak PSS MB "
        "| CPU s: python + child + db |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        floor = rate("postgresql", "floor", r["rows"])
        ours = rate(r["db"], "ours", r["rows"])
        vs_floor = f"{r['rows_per_s'] / floor:.0%}" if floor and r["db"] == "postgresql" else ""
        ours_vs = f"{ours / r['rows_per_s']:.1f}x" if ours and r["kind"] != "ours" else ""
        print(
            f"| {r['db']} | {r['kind']} | {r['rows']:,} | {r['seconds_median']} ({r['runs']}) | "
            f"{r['rows_per_s']:,} | {vs_floor} | {ours_vs} | {r['peak_pss_mb']} | "
            f"{r['cpu_python']} + {r['cpu_child']} + {r.get('cpu_db', '-')} |"
        )
    (OUT / "import_leads.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
