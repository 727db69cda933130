"""A per-client rate limit that holds across processes and machines.

It lives in Django's cache alias "ratelimit", configured in settings as a DatabaseCache (the
table is made by `migrate`: aicmo_site/migrations/0001_cache_tables.py). Each window
of WINDOW seconds has LIMIT numbered slots per client; a request takes the first free slot
with `cache.add()`, which on the database cache is an INSERT on the cache table's primary
key: two processes can never take the same slot, so the limit is exact under concurrency
(an increment would be a read-then-write and could lose counts). Slots outlive their window,
so an expired row is never re-used inside the window it counts for.
"""

from __future__ import annotations

import hashlib
import logging
import time

from django.core.cache import caches
from django.db import DatabaseError

CACHE_ALIAS = "ratelimit"
logger = logging.getLogger(__name__)


class RateLimitUnavailableError(Exception):
    """The limiter's storage is missing (e.g. `migrate` was never run)."""


def rate_limit_take(*, scope: str, client: str, limit: int, window: int) -> bool:
    """Count one request of `client`; False when it already made `limit` in this window."""
    cache = caches[CACHE_ALIAS]
    bucket = int(time.time() // window)
    who = hashlib.sha256(f"{scope}:{client}".encode()).hexdigest()[:40]
    keys = [f"rl:{who}:{bucket}:{slot}" for slot in range(limit)]
    try:
        taken = cache.get_many(keys)
        return any(key not in taken and cache.add(key, 1, timeout=2 * window) for key in keys)
    except DatabaseError as exc:
        logger.error("Rate limit storage unavailable (run `manage.py migrate`): %s", exc)
        raise RateLimitUnavailableError(str(exc)) from exc
