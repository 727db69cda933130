"""Where the importing process's time goes: one import, its phases timed from inside.

    .venv/bin/python bench/import_phases.py bench/out/apollo_1000000.csv
    .venv/bin/python bench/import_phases.py FILE --db postgres://postgres@127.0.0.1:5432/NAME

Imports FILE (made by bench/import_leads.py) into a fresh campaign of the bench database, as
`leads import` does, with the writer's steps wrapped in timers: the wall-clock seconds the
importing process spends in each (waiting for PostgreSQL included) and how often it is called.
`receive` is waiting for the preparing process's next chunk (and unpickling it); `run` is a
whole chunk, commit included, so `run` minus `_write` is mostly the commit. Also printed: the
import's wall time and the CPU seconds of the importing process, of its children and of the
PostgreSQL backend. One run, no median: a profile, not a benchmark (bench/import_leads.py).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from functools import wraps
from pathlib import Path

from import_leads import DEFAULT_PG, _cpu_seconds, fresh_campaign, setup_django

# leads.import_sql's, timed where the chunk loop (leads.importing) calls them.
TIMED_FUNCTIONS = ("fetch_suppressed", "fetch_people", "fetch_existing", "copy_leads")
TIMED_METHODS = ("run", "_write", "_not_suppressed", "_merge_existing", "_save_issues")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--db", default=DEFAULT_PG)
    args = parser.parse_args()
    setup_django(args.db)
    from django.db import connection

    from leads import import_fork, importing
    from leads.services.imports import lead_import

    seconds: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()

    def timed(owner, name: str, label: str = "") -> None:
        function = getattr(owner, name)

        @wraps(function)
        def wrapper(*a, **k):
            started = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                seconds[label or name] += time.perf_counter() - started
                calls[label or name] += 1

        setattr(owner, name, wrapper)

    for name in TIMED_FUNCTIONS:
        timed(importing, name)
    for name in TIMED_METHODS:
        timed(importing.ChunkProcessor, name)
    timed(import_fork._Child, "receive", "receive")

    campaign = fresh_campaign()
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    db_cpu, before, started = _cpu_seconds(backend), os.times(), time.perf_counter()
    outcome = lead_import(campaign=campaign, path=args.file, actor="bench", force=True)
    wall, after = time.perf_counter() - started, os.times()
    own = after.user + after.system - before.user - before.system
    children = after.children_user + after.children_system
    print(
        f"{outcome.counts['created']:,} leads in {wall:.2f} s; CPU s: importing process "
        f"{own:.2f}, children {children:.2f}, PostgreSQL backend "
        f"{_cpu_seconds(backend) - db_cpu:.2f}"
    )
    print("| phase | seconds | calls |\n|---|---:|---:|")
    for name, total in seconds.most_common():
        print(f"| {name} | {total:.2f} | {calls[name]} |")


if __name__ == "__main__":
    sys.exit(main())
