"""Site-level views: the health probe, the console's 403 page and the page an invited member
chooses a password on."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import PasswordResetCompleteView, PasswordResetConfirmView
from django.http import JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse, reverse_lazy
from django.views import defaults
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


class _ConsolePage:
    """The admin's header and title on a page outside the admin's own views."""

    def get_context_data(self, **kwargs):
        from django.contrib import admin

        context = super().get_context_data(**kwargs)
        context.update(site_header=admin.site.site_header, site_title=admin.site.site_title)
        return context


class PasswordSetView(_ConsolePage, PasswordResetConfirmView):
    """An invited member chooses a password (Django's reset-confirm view and token)."""

    success_url = reverse_lazy("password_set_done")
    title = "Choose your password"


class PasswordSetDoneView(_ConsolePage, PasswordResetCompleteView):
    title = "Password set"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["login_url"] = reverse("admin:login")
        return context


def permission_denied(request, exception=None):
    """403 inside the admin's layout for console pages, with a way back; it says nothing about
    what the address names (another venture's object is a 404 anyway). Elsewhere, Django's."""
    from django.contrib import admin

    if not request.path.startswith(reverse("admin:index")):
        return defaults.permission_denied(request, exception)
    context = {
        **admin.site.each_context(request),
        "title": "You may not do this",
    }
    return TemplateResponse(request, "admin/403.html", context, status=403).render()
