"""Site-level views: the health probe."""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from ventures.preflight import check_database, heartbeat_age_seconds


@never_cache
@require_GET
def healthz(request):
    """200 when the database answers; the worker's state is reported but does not fail it.

    A load balancer should keep serving the admin and the unsubscribe page while the worker
    is down, so only the database decides the status code.
    """
    db_errors = check_database()
    body: dict = {"database": "ok" if not db_errors else "unreachable"}
    if db_errors:
        body["worker"] = "unknown"
        return JsonResponse({"status": "error", **body}, status=503)
    age = heartbeat_age_seconds()
    if age is None:
        body["worker"] = "missing"
    else:
        fresh = age <= settings.AICMO_HEARTBEAT_MAX_AGE
        body["worker"] = "ok" if fresh else "stale"
        body["worker_heartbeat_age_seconds"] = int(age)
    body["kill_switch"] = _kill_switch_state()
    return JsonResponse({"status": "ok", **body})


def _kill_switch_state() -> bool:
    from ventures.selectors import global_kill_switch_on

    return global_kill_switch_on()
