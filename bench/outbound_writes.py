"""Benchmark: what the messages' table costs to write, apart from the tick's Python.

    .venv/bin/python bench/outbound_writes.py [--what indexes|triggers] [--runs 5]
        [--database-url postgres://postgres@127.0.0.1:5432/aicmo_bench_dispatch]

On the dispatch benchmark's database (`bench/dispatch.py` builds it), times the three state
changes every sent message goes through (claimed with a lease, sending, sent with its
Message-ID), each one UPDATE of every message, in a transaction rolled back, after a VACUUM.
Alternates run by run between two versions of the table:
- `--what indexes`: with the five indexes dropped in this stop (the campaign and lead
  foreign keys' own indexes, the LIKE twins of the idempotency key and the Message-ID, and
  the campaign page's old sends-by-day index), created for the run, and without them;
- `--what triggers`: with the tally triggers (`outreach.tally_triggers`) enabled and disabled.
Prints each run's seconds and the medians' ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg

EXTRA = [
    "CREATE INDEX ab_campaign ON outreach_outboundmessage (campaign_id)",
    "CREATE INDEX ab_lead ON outreach_outboundmessage (lead_id)",
    "CREATE INDEX ab_msgid_like ON outreach_outboundmessage (message_id varchar_pattern_ops)",
    "CREATE INDEX ab_key_like ON outreach_outboundmessage (idempotency_key varchar_pattern_ops)",
    "CREATE INDEX ab_campaign_sent ON outreach_outboundmessage (campaign_id, sent_at) "
    "WHERE state = 'sent'",
]
DROP = "DROP INDEX IF EXISTS ab_campaign, ab_lead, ab_msgid_like, ab_key_like, ab_campaign_sent"
WRITES = [
    "UPDATE outreach_outboundmessage SET state = 'claimed', lease_token = 'x'",
    "UPDATE outreach_outboundmessage SET state = 'sending'",
    "UPDATE outreach_outboundmessage SET state = 'sent', sent_at = now(), "
    "message_id = '<' || idempotency_key || '.x@venture.example>'",
]


def triggers(conn, on: bool) -> None:
    for name in ("insert", "update", "delete"):
        conn.execute(
            f"ALTER TABLE outreach_outboundmessage {'ENABLE' if on else 'DISABLE'} "
            f"TRIGGER outreach_tally_{name}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--what", choices=("indexes", "triggers"), default="indexes")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--database-url", default="postgresql://postgres@127.0.0.1:5432/aicmo_bench_dispatch"
    )
    args = parser.parse_args()
    conn = psycopg.connect(
        args.database_url.replace("postgres://", "postgresql://"), autocommit=True
    )
    modes = ("with", "without")
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    try:
        for _ in range(args.runs):
            for mode in modes:
                if args.what == "indexes" and mode == "with":
                    for sql in EXTRA:
                        conn.execute(sql)
                if args.what == "triggers":
                    triggers(conn, mode == "with")
                conn.execute("VACUUM outreach_outboundmessage")
                with conn.transaction(force_rollback=True):
                    started = time.perf_counter()
                    for sql in WRITES:
                        conn.execute(sql)
                    times[mode].append(time.perf_counter() - started)
                conn.execute(DROP)
    finally:
        conn.execute(DROP)
        triggers(conn, True)
    rows = conn.execute("SELECT count(*) FROM outreach_outboundmessage").fetchone()[0]
    with_, without = (statistics.median(times[mode]) for mode in modes)
    print(f"{rows:,} messages, three state changes each, {args.what}:")
    for mode in modes:
        print(f"  {mode}: " + ", ".join(f"{t:.3f}" for t in times[mode]) + " s")
    print(
        f"medians: with {with_:.3f} s, without {without:.3f} s (without / with {without / with_:.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
