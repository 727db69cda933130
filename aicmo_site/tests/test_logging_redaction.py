"""No secret reaches the log output: messages, arguments, exceptions, URLs and headers."""

from __future__ import annotations

import logging
import sys

import pytest

from aicmo_site.logging import REDACTED, RedactingFilter, redact
from tests.proc import GOOD_SECRET, clean_env, python

SMTP_PASSWORD = "Sm7pPassw0rd-9x"
POSTMARK_TOKEN = "pm-5c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f"
DB_PASSWORD = "dbPa55-wordQ"
BEARER = "abcDEF123456ghiJKL789"

LOGGING_SCRIPT = f"""
import logging, os, django
django.setup()
from django.conf import settings
log = logging.getLogger("aicmo.outreach")
log.info("connecting with %s", os.environ["EMAIL_URL"])
log.warning("db is %s", "postgres://aicmo:{DB_PASSWORD}@db.internal:5432/aicmo")
log.info("smtp password is %s", settings.EMAIL_HOST_PASSWORD)
log.info("esp config %s", settings.ANYMAIL)
log.error("request headers: Authorization: Bearer {BEARER}")
log.info("payload api_key={POSTMARK_TOKEN}&to=x")
log.info("secret key is %(key)s", {{"key": settings.SECRET_KEY}})
try:
    raise RuntimeError("ESP refused token {POSTMARK_TOKEN}")
except RuntimeError:
    log.exception("send failed")
logging.getLogger("django.request").error("password=%s", "{SMTP_PASSWORD}")
logging.getLogger("django-q").error("broker url redis://:{DB_PASSWORD}@cache:6379/0")
logging.getLogger("some.library").warning("token: {BEARER}")
"""


def test_no_secret_reaches_any_handler_in_a_real_process():
    env = clean_env(
        DEBUG="1",
        EMAIL_URL=f"smtp+tls://mailer:{SMTP_PASSWORD}@smtp.example.com:587",
        ANYMAIL_POSTMARK_SERVER_TOKEN=POSTMARK_TOKEN,
    )
    result = python(LOGGING_SCRIPT, env=env)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for secret in (SMTP_PASSWORD, POSTMARK_TOKEN, DB_PASSWORD, BEARER, GOOD_SECRET):
        assert secret not in output
    assert output.count(REDACTED) >= 11
    # What is not secret is kept, so the log stays useful.
    assert "smtp.example.com:587" in output
    assert "send failed" in output and "RuntimeError" in output


def test_every_configured_handler_carries_the_redaction_filter():
    # In a fresh process (pytest adds capture handlers of its own to this one): Django's
    # defaults, our config and django-q2's logger are all set up by django.setup().
    script = """
import logging, django
django.setup()
import django_q.conf  # adds its own handler when the logger has none
from aicmo_site.logging import RedactingFilter
loggers = [logging.getLogger()] + [
    lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)
]
handlers = {h for lg in loggers for h in lg.handlers}
bare = [
    repr(h) for h in handlers
    if not isinstance(h, logging.NullHandler)  # emits nothing
    and not any(isinstance(f, RedactingFilter) for f in h.filters)
]
print(len(handlers), bare)
"""
    result = python(script, env=clean_env(DEBUG="1"))
    assert result.returncode == 0, result.stderr
    count, bare = result.stdout.split(" ", 1)
    assert int(count) >= 2
    assert bare.strip() == "[]"


def test_a_handler_added_after_start_up_still_gets_redacted_records():
    script = """
import io, logging, django
django.setup()
stream = io.StringIO()
late = logging.StreamHandler(stream)  # no filter: added by 'a library' after configuration
logging.getLogger("late.library").addHandler(late)
logging.getLogger("late.library").propagate = False
logging.getLogger("late.library").error("token=%s", "tok-123456789")
print(stream.getvalue().strip())
"""
    result = python(script, env=clean_env(DEBUG="1"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"token={REDACTED}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("smtp://user:hunter2@mail:25", f"smtp://user:{REDACTED}@mail:25"),
        ("postgresql://:pw123456@h/db", f"postgresql://:{REDACTED}@h/db"),
        ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: {REDACTED}"),
        ("'authorization': 'Bearer xyz.abc'", f"'authorization': '{REDACTED}'"),
        ('{"api_key": "k-123456"}', f'{{"api_key": "{REDACTED}"}}'),
        ("MAILGUN_API_KEY=key-0123456789abcdef0123456789abcdef", f"MAILGUN_API_KEY={REDACTED}"),
        ("client_secret: s3cr3t!", f"client_secret: {REDACTED}"),
        ("sent with SG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuv", f"sent with {REDACTED}"),
        ("plain message about 42 leads", "plain message about 42 leads"),
    ],
)
def test_redact_recognises_credential_shapes(text, expected):
    assert redact(text) == expected


def test_filter_redacts_exception_text_and_arguments():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "token=%s", ("tok-999999",), None)
    try:
        raise ValueError("password=abcdef123")
    except ValueError:
        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    assert record.getMessage() == f"token={REDACTED}"
    assert "abcdef123" not in record.exc_text
    assert f"password={REDACTED}" in record.exc_text
