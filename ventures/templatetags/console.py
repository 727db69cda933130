"""Template tags of the console's layout: the global kill switch banner on every admin page,
the kill switch control and the no-venture hint on the index."""

from __future__ import annotations

from django import template
from django.conf import settings
from django.urls import reverse

from ventures.admin_toolkit import request_global_kill_reason, visible_venture_ids
from ventures.models import AuditEvent, SystemControl
from ventures.selectors import ADMINISTRATOR_GROUP

register = template.Library()


def _global_switch(request) -> dict:
    """Whether the global switch is on, by which way, and (when recorded) who and why."""
    reason = request_global_kill_reason(request)
    state = {"on": bool(reason), "setting": bool(settings.AICMO_KILL_SWITCH)}
    if reason and not state["setting"]:
        control = SystemControl.load()
        # The switch's own trail (audit_entity_idx), not a scan of the whole audit log.
        trail = AuditEvent.objects.for_entity(control).filter(action="global.kill")
        event = trail.order_by("-created_at", "-id").first()
        state.update(reason=control.kill_reason, who=event.actor if event else "", at=event)
    return state


@register.inclusion_tag("admin/ventures/kill_banner.html", takes_context=True)
def global_kill_banner(context) -> dict:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_staff:
        return {"switch": {"on": False}}
    return {"switch": _global_switch(request)}


def administrators_to_ask(limit: int = 3) -> list[str]:
    """Who an Operator without a venture should ask: a few Administrators' names or emails."""
    from django.contrib.auth import get_user_model
    from django.db.models import Q

    users = get_user_model().objects.filter(
        Q(is_superuser=True) | Q(groups__name=ADMINISTRATOR_GROUP), is_active=True
    )
    found = users.distinct().order_by("username")[:limit]
    return [u.email or u.get_username() for u in found]


@register.inclusion_tag("admin/ventures/no_venture_hint.html", takes_context=True)
def no_venture_hint(context) -> dict:
    request = context.get("request")
    if request is None or visible_venture_ids(request) != []:
        return {"show": False}
    return {"show": True, "ask": administrators_to_ask(), "request": request}


@register.inclusion_tag("admin/ventures/kill_control.html", takes_context=True)
def global_kill_control(context) -> dict:
    request = context.get("request")
    if request is None or not request.user.has_perm("ventures.change_systemcontrol"):
        return {"show": False}
    name = "unkill" if SystemControl.load().kill_switch else "kill"
    url = reverse("admin:ventures_systemcontrol_operation", args=[1, name])
    return {"show": True, "switch": _global_switch(request), "url": url, "name": name}
