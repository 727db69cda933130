"""The dashboard's one tag: the front page's figures (`aicmo_site.dashboard`) for the request."""

from __future__ import annotations

from django import template

from aicmo_site.dashboard import Dashboard, dashboard_for

register = template.Library()


@register.simple_tag(takes_context=True)
def dashboard_figures(context) -> Dashboard | None:
    request = context.get("request")
    return None if request is None else dashboard_for(request)
