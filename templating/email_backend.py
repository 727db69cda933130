"""Which email backend is in force, and what it did with a message, in an operator's words.

"Send me a test" goes through Django's default backend (EMAIL_URL). Only SMTP and an ESP
deliver anything; the console, file, locmem and dummy backends keep the message on this
machine, so the console says exactly that instead of "sent". Read from settings when called,
never at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils.module_loading import import_string

_LOCAL = {
    "django.core.mail.backends.console.EmailBackend": (
        "console",
        "the console backend (EMAIL_URL is consolemail:// or not set)",
        "printed to the server's console, not delivered",
    ),
    "django.core.mail.backends.locmem.EmailBackend": (
        "locmem",
        "the in-memory backend (locmem)",
        "kept in the server's memory (locmem backend), not delivered",
    ),
    "django.core.mail.backends.dummy.EmailBackend": (
        "dummy",
        "the dummy backend",
        "discarded by the dummy backend, not delivered",
    ),
}
FILE_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


@dataclass(frozen=True)
class BackendInfo:
    """The backend in force: `kind` is smtp, esp, file, console, locmem, dummy or other."""

    kind: str
    label: str  # "SMTP smtp.example.com:587 (STARTTLS)"
    delivers: bool  # False: the message stays on this machine
    not_delivered: str = ""  # what happens to a message when it does not deliver

    def outcome(self, *, connection=None, message=None) -> str:
        """What happened to a message this backend just took (`connection` and `message` as
        sent), e.g. "handed to smtp.example.com:587 (SMTP, STARTTLS)"."""
        if self.kind == "file":
            written = getattr(connection, "_fname", None)  # the file backend's one file
            where = written or str(Path(getattr(settings, "EMAIL_FILE_PATH", "") or ".").resolve())
            return f"written to {where} (file backend), not delivered"
        if self.kind == "smtp":
            return f"handed to {_smtp_address()} (SMTP, {_smtp_security()}) for delivery"
        if self.kind == "esp":
            return f"handed to {self.label}" + _anymail_status(message)
        if not self.delivers:
            return self.not_delivered
        return f"handed to {self.label}"


def email_backend_info() -> BackendInfo:
    backend = settings.EMAIL_BACKEND
    if backend in _LOCAL:
        kind, label, not_delivered = _LOCAL[backend]
        return BackendInfo(kind, label, False, not_delivered)
    if backend == FILE_BACKEND:
        path = getattr(settings, "EMAIL_FILE_PATH", "") or "."
        return BackendInfo(
            "file",
            f"the file backend (into {Path(path).resolve()})",
            False,
            "written to a file, not delivered",
        )
    if backend == SMTP_BACKEND:
        return BackendInfo("smtp", f"SMTP {_smtp_address()} ({_smtp_security()})", True)
    if backend.startswith("anymail.backends."):
        try:
            esp = import_string(backend).esp_name
        except (ImportError, AttributeError):
            esp = backend.split(".")[2]
        return BackendInfo("esp", f"{esp} (an ESP, through django-anymail)", True)
    return BackendInfo("other", f"the email backend {backend}", True)


def _smtp_address() -> str:
    return f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"


def _smtp_security() -> str:
    if getattr(settings, "EMAIL_USE_SSL", False):
        return "TLS"
    if getattr(settings, "EMAIL_USE_TLS", False):
        return "STARTTLS"
    return "no encryption"


def _anymail_status(message) -> str:
    status = getattr(message, "anymail_status", None)
    if status is None or not status.status:
        return ""
    said = ", ".join(sorted(status.status))
    return f", which answered {said}" + (
        f" (message id {status.message_id})" if isinstance(status.message_id, str) else ""
    )
