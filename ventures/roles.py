"""The three operator roles and the permissions each one holds.

Roles are Django groups. A migration creates them, and every later `migrate` re-syncs their
permissions (so a model added by a later app is covered without a hand-written migration).
Patterns are `app_label.codename` globs; `EXCLUDED` wins over any grant.

Scoping is separate: Operators and Viewers see only the ventures they are members of
(`VentureMembership`); Administrators see every venture.
"""

from __future__ import annotations

from fnmatch import fnmatch

ADMINISTRATOR = "Administrator"
OPERATOR = "Operator"
VIEWER = "Viewer"

PROJECT_APPS = ("ventures", "leads", "templating", "outreach", "reporting")

ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    ADMINISTRATOR: (
        *(f"{app}.*" for app in PROJECT_APPS),
        "auth.*_user",
        "auth.*_group",
        "django_q.*",
    ),
    OPERATOR: (
        *(f"{app}.view_*" for app in PROJECT_APPS),
        "ventures.add_icpsegment",
        "ventures.change_icpsegment",
        "ventures.add_campaign",
        "ventures.change_campaign",
        "ventures.operate_campaign",
        "leads.*",
        "templating.*",
        "outreach.*",
        "reporting.*",
    ),
    VIEWER: (
        *(f"{app}.view_*" for app in PROJECT_APPS),
        "reporting.download_*",
    ),
}

# Only Administrators flip kill switches, go live, manage memberships and delete ventures and
# campaigns. Nobody may add, change or delete audit events (see `role_grants`).
EXCLUDED: dict[str, tuple[str, ...]] = {
    OPERATOR: (
        "ventures.kill_campaign",
        "ventures.go_live",
        "ventures.*_systemcontrol",
        "ventures.*_workerheartbeat",
        "ventures.*_venturemembership",
        "ventures.delete_*",
    ),
    VIEWER: ("ventures.*_workerheartbeat", "ventures.*_venturemembership"),
}


def role_grants(role: str, perm: str) -> bool:
    if perm.endswith("_auditevent"):
        return perm == "ventures.view_auditevent"
    if any(fnmatch(perm, pattern) for pattern in EXCLUDED.get(role, ())):
        return False
    return any(fnmatch(perm, pattern) for pattern in ROLE_PERMISSIONS[role])


def sync_roles(group_model, permission_model) -> None:
    """Create the role groups and set their permissions to exactly what the table grants."""
    perms = list(permission_model.objects.select_related("content_type"))
    for role in ROLE_PERMISSIONS:
        group, _ = group_model.objects.get_or_create(name=role)
        wanted = [p for p in perms if role_grants(role, f"{p.content_type.app_label}.{p.codename}")]
        group.permissions.set(wanted)


def sync_roles_after_migrate(sender=None, apps=None, using="default", **kwargs) -> None:
    """post_migrate receiver: acts once, for the last app, when every app's permissions exist."""
    from django.apps import apps as global_apps
    from django.contrib.auth.models import Group, Permission

    last = list(global_apps.get_app_configs())[-1]
    if sender is not None and sender.label != last.label:
        return
    sync_roles(Group, Permission)
