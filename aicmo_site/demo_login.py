"""The demo's local login, so that `make serve` after `make demo` has someone to log in as.

User `demo` is an Operator and a member of the demo venture: it sees and runs everything of
that venture (campaigns, leads, templates, outbox, feedback, narratives), as an operator
would, but not the Administrator's controls (kill switches, live mode, users); those need
`createsuperuser`. Local use only: the login is made when DEBUG is on, the send mode is proof
and the database is on this machine (the embedded SQLite, or PostgreSQL on a loopback address
or a Unix socket). Otherwise nothing is created and the demo prints the one `createsuperuser`
command to run instead.

The password is random, made once and kept in VAR_DIR/demo_password (readable by its owner
only, like var/secret_key), so every run prints the same one; each run puts the user back to
that password, the Operator role and the membership. Creating the user and its membership is
audited.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from ventures.models import SendMode, Venture, VentureMembership
from ventures.roles import OPERATOR
from ventures.services import audit_record

DEMO_USERNAME = "demo"
CREATE_COMMAND = ".venv/bin/python manage.py createsuperuser"
LOCAL_HOSTS = frozenset({"", "localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class DemoLogin:
    username: str = ""
    password: str = ""
    created: bool = False
    refused: str = ""  # why no login was made ("DEBUG is off")
    command: str = ""  # what to run instead

    def as_dict(self) -> dict:
        return asdict(self)

    def lines(self, venture: Venture) -> list[str]:
        if self.refused:
            return [
                f"  No demo login: {self.refused} (it is made for local use only). "
                f"Create your login with: {self.command}"
            ]
        return [
            f"  Log in as {self.username} with password {self.password} (an Operator of "
            f"venture '{venture.slug}'; a local demo login, the password kept in "
            f"{password_file()})."
        ]


def password_file() -> Path:
    return Path(settings.VAR_DIR) / "demo_password"


def database_is_local(db: dict) -> bool:
    """The embedded SQLite, or a PostgreSQL server on this machine."""
    if db.get("ENGINE") == "django.db.backends.sqlite3":
        return True
    host = (db.get("HOST") or "").strip().lower()
    return host in LOCAL_HOSTS or host.startswith("/")  # a path is a Unix socket


def demo_login_refusal() -> str:
    """Why this installation gets no demo login ("" when it may have one)."""
    if not settings.DEBUG:
        return "DEBUG is off"
    if settings.AICMO_SEND_MODE != SendMode.PROOF:
        return "AICMO_SEND_MODE is live"
    if not database_is_local(settings.DATABASES["default"]):
        return "the database is not on this machine"
    return ""


def demo_login_ensure(*, venture: Venture, actor: str) -> DemoLogin:
    """The demo login, made or put back to its documented state; or why there is none."""
    refused = demo_login_refusal()
    if refused:
        return DemoLogin(refused=refused, command=CREATE_COMMAND)
    password = _password()
    users = get_user_model()
    with transaction.atomic():
        user, created = users.objects.get_or_create(
            username=DEMO_USERNAME, defaults={"email": "demo@localhost"}
        )
        if created or not user.check_password(password) or not user.is_staff or not user.is_active:
            user.set_password(password)
            user.is_staff = user.is_active = True
            user.save()
        user.groups.add(Group.objects.get(name=OPERATOR))
        membership, joined = VentureMembership.objects.get_or_create(venture=venture, user=user)
        if joined:
            audit_record(
                actor=actor,
                action="membership.create",
                entity=membership,
                after={"user": user.username, "role": OPERATOR, "demo_login": True},
            )
    return DemoLogin(username=DEMO_USERNAME, password=password, created=created)


def _password() -> str:
    """The demo password, made once (owner-only file) and read back on later runs."""
    path = password_file()
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    password = secrets.token_urlsafe(12)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(password + "\n")
    return password
