"""Settings for AICMO Campaign Engine: one file, driven by the environment (or `.env`).

Every variable of the external contract is read here and only here. A bad value raises
`ImproperlyConfigured` naming the variable, so a misconfiguration fails at start-up rather
than at send time. `.env.example` documents each variable.
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import secrets
import tempfile
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
_env_file = Path(os.environ.get("AICMO_ENV_FILE", BASE_DIR / ".env"))
if _env_file.is_file():
    try:
        environ.Env.read_env(_env_file, overwrite=False)
    except (OSError, UnicodeDecodeError) as exc:
        # Name the file: the operator may not know AICMO_ENV_FILE (or ./.env) is read at all.
        raise ImproperlyConfigured(
            f"AICMO_ENV_FILE={str(_env_file)!r} cannot be read as UTF-8 text: {exc}"
        ) from None
# `NAME=` (as in .env.example) means "use the default", never "the empty value".
_CORE_VARS = {
    "DATABASE_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "LOG_LEVEL",
}
for _name, _value in list(os.environ.items()):
    if _value.strip() == "" and (
        _name in _CORE_VARS or _name.startswith(("AICMO_", "EMAIL_", "SECURE_"))
    ):
        del os.environ[_name]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no).")


def _int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}.")
    return value


def _fraction(name: str, default: float, *, zero: bool = False) -> float:
    """A share: above 0 and at most 1, or with `zero` at least 0 (off) and below 1."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    example = "0.1 for 10%" if zero else "0.02 for 2%"
    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number (e.g. {example}).") from None
    if zero and not 0 <= value < 1:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least 0 and below 1 (0.1 is 10%).")
    if not zero and not 0 < value <= 1:
        raise ImproperlyConfigured(f"{name}={raw!r} must be above 0 and at most 1 (0.02 is 2%).")
    return value


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} must be one of: {', '.join(choices)}.")
    return value


def _url(name: str, default: str) -> str:
    value = os.environ.get(name, default).strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ImproperlyConfigured(f"{name}={value!r} must be an absolute http(s) URL.")
    return value


DEBUG = _bool("DEBUG", False)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "import_export",
    "django_q",
    "aicmo_site",
    "ventures",
    "leads",
    "templating",
    "outreach",
    "reporting",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "ventures.text.QueryTextMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "aicmo_site.urls"
WSGI_APPLICATION = "aicmo_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "aicmo_site" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# Local state: the default SQLite database, the local secret key, artifacts, static files.
VAR_DIR = Path(os.environ.get("AICMO_VAR_DIR", BASE_DIR / "var"))
_default_db = f"sqlite:///{VAR_DIR / 'aicmo.sqlite3'}"
# The embedded local database (no DATABASE_URL): project commands migrate it on first use.
AICMO_EMBEDDED_DATABASE = "DATABASE_URL" not in os.environ
if "://" not in os.environ.get("DATABASE_URL", _default_db):
    # Not echoed: a database URL may carry a password.
    raise ImproperlyConfigured(
        "DATABASE_URL is not a database URL (expected sqlite:///PATH or postgres://...)."
    )
try:
    with warnings.catch_warnings():
        # django-environ warns on stderr about an unknown scheme; the error below says it.
        warnings.simplefilter("ignore")
        DATABASES = {"default": env.db_url("DATABASE_URL", default=_default_db)}
except (ImproperlyConfigured, ValueError, KeyError) as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None

_db = DATABASES["default"]
if _db.get("ENGINE") == "django.db.backends.sqlite3":
    # WAL lets the admin read while the tick writes; IMMEDIATE transactions take the write
    # lock up front, so two writers queue instead of failing half-way ("one writer at a time").
    _db["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    if _db["NAME"] not in ("", ":memory:"):
        _db_dir = Path(_db["NAME"]).parent
        try:
            _db_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ImproperlyConfigured(
                f"DATABASE_URL: cannot create the SQLite directory {str(_db_dir)!r}: "
                f"{exc.strerror or exc}."
            ) from None
elif _db.get("ENGINE") == "django.db.backends.postgresql":
    _db.setdefault("CONN_MAX_AGE", 60)
    _db["CONN_HEALTH_CHECKS"] = True
else:
    raise ImproperlyConfigured(
        f"DATABASE_URL uses {_db.get('ENGINE') or 'an unknown engine'}; "
        "only sqlite:// and postgres:// are supported."
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# --- Email ----------------------------------------------------------------------------------
# EMAIL_URL is parsed by django-environ (smtp://, smtp+tls://, smtp+ssl://, consolemail://,
# filemail://, memorymail://, dummymail://). `anymail://<esp>` selects a django-anymail ESP
# backend, configured with the usual ANYMAIL_* variables.
EMAIL_URL_CONFIGURED = "EMAIL_URL" in os.environ and os.environ["EMAIL_URL"].strip() != ""
_email_url = os.environ.get("EMAIL_URL", "").strip() or "consolemail://"
if _email_url.startswith("anymail://"):
    _esp = _email_url.removeprefix("anymail://").strip("/")
    if not _esp.isidentifier():
        raise ImproperlyConfigured(f"EMAIL_URL={_email_url!r}: expected anymail://<esp name>.")
    EMAIL_BACKEND = f"anymail.backends.{_esp}.EmailBackend"
else:
    try:
        _email = env.email_url_config(_email_url)
        globals().update({k: v for k, v in _email.items() if v not in (None, "")})
    except (ImproperlyConfigured, KeyError, ValueError) as exc:
        raise ImproperlyConfigured(f"EMAIL_URL is not a valid email URL: {exc}") from None
EMAIL_TIMEOUT = _int("EMAIL_TIMEOUT", 30, minimum=1)
# The sender of the engine's own emails to operators (reply SLA escalations).
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "").strip() or "aicmo@localhost"
if "@" not in email.utils.parseaddr(DEFAULT_FROM_EMAIL)[1]:
    raise ImproperlyConfigured(
        f"DEFAULT_FROM_EMAIL={DEFAULT_FROM_EMAIL!r}: expected an address such as "
        "aicmo@example.com or 'AICMO <aicmo@example.com>'."
    )
ANYMAIL = {
    key.removeprefix("ANYMAIL_"): value
    for key, value in os.environ.items()
    if key.startswith("ANYMAIL_") and value
}

# --- AICMO ----------------------------------------------------------------------------------
AICMO_SEND_MODE = _choice("AICMO_SEND_MODE", "proof", ("proof", "live"))
AICMO_SITE_URL = _url("AICMO_SITE_URL", "http://localhost:8000")
AICMO_ARTIFACT_DIR = Path(os.environ.get("AICMO_ARTIFACT_DIR", VAR_DIR / "artifacts"))
AICMO_GLOBAL_DAILY_LIMIT = _int("AICMO_GLOBAL_DAILY_LIMIT", 1000)
# Emails a venture sends to one recipient domain per day (a company's mail server notices
# a burst from one sender); the outbox defers the rest to the next day.
AICMO_RECIPIENT_DOMAIN_DAILY_LIMIT = _int("AICMO_RECIPIENT_DOMAIN_DAILY_LIMIT", 100, minimum=1)
# Messages one tick claims at a time, and how long its claim holds them.
AICMO_TICK_BATCH = _int("AICMO_TICK_BATCH", 200, minimum=1)
AICMO_TICK_LEASE_SECONDS = _int("AICMO_TICK_LEASE_SECONDS", 300, minimum=30)
# Transient send failures are retried this many times, backing off from five minutes.
AICMO_SEND_MAX_ATTEMPTS = _int("AICMO_SEND_MAX_ATTEMPTS", 6, minimum=1)
AICMO_KILL_SWITCH = _bool("AICMO_KILL_SWITCH", False)
# Auto-pause: a campaign or mailbox whose bounce or complaint rate passes these, over the
# window and once it has sent at least the minimum, is paused; so is one whose sends fail
# (deferred, given up, unknown) at the error rate over the last hour.
AICMO_AUTOPAUSE_BOUNCE_RATE = _fraction("AICMO_AUTOPAUSE_BOUNCE_RATE", 0.02)
AICMO_AUTOPAUSE_COMPLAINT_RATE = _fraction("AICMO_AUTOPAUSE_COMPLAINT_RATE", 0.001)
AICMO_AUTOPAUSE_ERROR_RATE = _fraction("AICMO_AUTOPAUSE_ERROR_RATE", 0.5)
AICMO_AUTOPAUSE_MIN_SENDS = _int("AICMO_AUTOPAUSE_MIN_SENDS", 100, minimum=1)
AICMO_AUTOPAUSE_WINDOW_HOURS = _int("AICMO_AUTOPAUSE_WINDOW_HOURS", 168, minimum=1)
# Feedback reads a campaign's health at most this often (the tick catches up before it sends).
AICMO_AUTOPAUSE_CHECK_SECONDS = _int("AICMO_AUTOPAUSE_CHECK_SECONDS", 30, minimum=0)
# IMAP polling of mailboxes (`feedback poll`): every this many minutes (0 = no schedule; the
# command still works), and how long a server may take to answer before the poll gives up.
AICMO_IMAP_POLL_MINUTES = _int("AICMO_IMAP_POLL_MINUTES", 5)
AICMO_IMAP_TIMEOUT = _int("AICMO_IMAP_TIMEOUT", 20, minimum=1)
# Narrative memory (outreach.narrative): the share of emails whose variant is drawn at random
# (so every variant keeps some traffic), and the seed of every variant draw (with the message's
# idempotency key: the same seed and figures give the same choice again).
AICMO_NARRATIVE_EXPLORATION = _fraction("AICMO_NARRATIVE_EXPLORATION", 0.1, zero=True)
AICMO_NARRATIVE_SEED = os.environ.get("AICMO_NARRATIVE_SEED", "").strip() or "aicmo"
# A worker heartbeat older than this is reported stale by preflight and /healthz.
AICMO_HEARTBEAT_MAX_AGE = _int("AICMO_HEARTBEAT_MAX_AGE", 300, minimum=10)
# Render logs (template version, recipient ref, outcome) are purged after this many days.
AICMO_RENDER_LOG_RETENTION_DAYS = _int("AICMO_RENDER_LOG_RETENTION_DAYS", 90, minimum=1)
# Lead imports: the largest upload accepted, and the size above which the admin runs an
# import on the django-q2 cluster instead of inside the request.
AICMO_IMPORT_MAX_BYTES = _int("AICMO_IMPORT_MAX_BYTES", 512 * 1024 * 1024, minimum=1024)
AICMO_IMPORT_BACKGROUND_BYTES = _int("AICMO_IMPORT_BACKGROUND_BYTES", 5 * 1024 * 1024, minimum=0)
# A background import works in time slices: once a slice has run this long it commits its
# chunk, queues a task for the rest and returns, so no task nears the cluster's `timeout` (the
# hard kill). At most half of it, so that one slow chunk after the budget still fits.
_Q_TIMEOUT = 240
AICMO_IMPORT_SLICE_SECONDS = _int("AICMO_IMPORT_SLICE_SECONDS", 60, minimum=1)
if AICMO_IMPORT_SLICE_SECONDS > _Q_TIMEOUT // 2:
    raise ImproperlyConfigured(
        f"AICMO_IMPORT_SLICE_SECONDS={AICMO_IMPORT_SLICE_SECONDS} must be at most "
        f"{_Q_TIMEOUT // 2} (half the task queue's timeout of {_Q_TIMEOUT} s)."
    )
# A running import's lease: it is extended after every chunk; once it lapses the import counts
# as interrupted and is resumed. Longer than the cluster's timeout, so a task that stopped
# reporting progress has certainly been killed before anyone else resumes its import.
AICMO_IMPORT_LEASE_SECONDS = _Q_TIMEOUT + 60
# Public capture form: submissions allowed per client IP and window (seconds).
AICMO_CAPTURE_RATE_LIMIT = _int("AICMO_CAPTURE_RATE_LIMIT", 5, minimum=1)
AICMO_CAPTURE_RATE_WINDOW = _int("AICMO_CAPTURE_RATE_WINDOW", 600, minimum=1)
# Reverse proxies in front of the site that append the address they received a request from to
# X-Forwarded-For (nginx's $proxy_add_x_forwarded_for, a load balancer, a CDN). 0: the client is
# REMOTE_ADDR and X-Forwarded-For is ignored (anyone can send one); N: the client is the N-th
# address from the right, the one the outermost trusted proxy saw (leads.views._client_ip).
AICMO_PROXY_HOPS = _int("AICMO_PROXY_HOPS", 0)
# JSON bulk lead API: most leads accepted in one request.
AICMO_API_MAX_ROWS = _int("AICMO_API_MAX_ROWS", 1000, minimum=1)

# --- Secret key -----------------------------------------------------------------------------
# The rule: SECRET_KEY when it is set. Otherwise a local installation, one with the default
# database (no DATABASE_URL: SQLite under var/) in proof mode, makes a random key once and keeps
# it in var/secret_key, so `manage.py` works as printed without DEBUG. Anything else (its own
# DATABASE_URL, or live mode) is production: it gets the development key, which `preflight` and
# the `aicmo.E001` check refuse unless DEBUG is on.
DEV_SECRET_KEY = "django-insecure-aicmo-development-key-do-not-use-in-production"  # noqa: S105
LOCAL_SECRET_KEY_FILE = VAR_DIR / "secret_key"


def _local_secret_key(path: Path) -> str:
    """The key kept in `path`, made there first if there is none. It is written to a temporary
    file (mode 0600) and linked into place, which fails if the file exists: two processes
    starting together agree on the first one's key, and nobody reads a half-written file."""
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret_key-")
            try:
                with os.fdopen(fd, "w", encoding="ascii") as fh:
                    fh.write(secrets.token_urlsafe(50) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                with contextlib.suppress(FileExistsError):  # another process was first
                    os.link(temporary, path)
            finally:
                os.unlink(temporary)
        key = path.read_text(encoding="ascii").strip()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ImproperlyConfigured(
            f"SECRET_KEY is not set and the local key file {str(path)!r} cannot be made or "
            f"read ({reason}): set SECRET_KEY."
        ) from None
    if len(key) < 40:
        raise ImproperlyConfigured(
            f"SECRET_KEY is not set and the local key file {str(path)!r} holds no key: "
            "delete it (a new one is made) or set SECRET_KEY."
        )
    return key


LOCAL_USE = "DATABASE_URL" not in os.environ and AICMO_SEND_MODE == "proof"
if os.environ.get("SECRET_KEY"):
    SECRET_KEY = os.environ["SECRET_KEY"]
elif LOCAL_USE:
    SECRET_KEY = _local_secret_key(LOCAL_SECRET_KEY_FILE)
else:
    SECRET_KEY = DEV_SECRET_KEY

# --- Caches ---------------------------------------------------------------------------------
# "ratelimit" backs the per-IP limit of the public lead-capture form (leads.ratelimit). It is a
# database cache so that every process and machine shares one count; its table is made by
# `manage.py createcachetable` (run by `make demo`/`make serve`; the test runner makes it too).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "ratelimit": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "aicmo_ratelimit_cache",
        # Expired counters are culled once the table passes MAX_ENTRIES rows.
        "OPTIONS": {"MAX_ENTRIES": 50_000},
    },
}

# --- django-q2 ------------------------------------------------------------------------------
# At-least-once delivery: the ORM broker re-delivers a task whose worker died after `retry`
# seconds, so `timeout` (the hard kill) stays well below `retry`; `max_attempts` bounds retries;
# `catch_up=False` runs a missed schedule once after downtime instead of once per missed slot.
Q_CLUSTER = {
    "name": "aicmo",
    "orm": "default",
    "workers": _int("AICMO_Q_WORKERS", 2, minimum=1),
    "timeout": _Q_TIMEOUT,
    "retry": 360,
    "max_attempts": 3,
    "catch_up": False,
    "ack_failures": True,
    "save_limit": 5000,
    "poll": 2,
    "sync": _bool("AICMO_Q_SYNC", False),
    "label": "Task queue",
}

# --- Security (production defaults; `manage.py check --deploy` is clean with DEBUG off) ------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = _bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = _int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = _bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Django would only say so in a multi-line system check; here it is one line naming the variable.
for _origin in CSRF_TRUSTED_ORIGINS:
    if "://" not in _origin:
        raise ImproperlyConfigured(
            f"CSRF_TRUSTED_ORIGINS: {_origin!r} must start with a scheme (https://...)."
        )
# /healthz is probed by load balancers over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

# --- Logging --------------------------------------------------------------------------------
# Every handler carries the redaction filter; aicmo_site.logging.configure attaches it to any
# handler this dict (or Django's defaults) leaves without one.
LOG_LEVEL = _choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
LOGGING_CONFIG = "aicmo_site.logging.configure"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "aicmo_site.logging.RedactingFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django.server": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django-q": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "aicmo": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        # It logs every detector it tries on every bounce at INFO.
        "flufl.bounce": {"level": "WARNING"},
        # WeasyPrint logs each step of every PDF at INFO; fontTools each font it subsets.
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
    },
}
