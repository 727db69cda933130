"""Fixtures shared by every test package."""

from __future__ import annotations

import pytest
from django.core.cache import caches
from django.db import connection

from tests.factories import CampaignFactory, MembershipFactory, UserFactory, VentureFactory
from tests.imap import DOVECOT, DovecotServer
from tests.proc import migrate_sqlite, running_database_url
from tests.smtp import SmtpSink
from ventures.roles import ADMINISTRATOR, OPERATOR, VIEWER


def pytest_collection_modifyitems(config, items):
    """`@pytest.mark.postgres` tests prove concurrency guarantees; SQLite cannot run them."""
    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (make test runs the suite on both)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def plain_http(settings):
    """The test client speaks plain HTTP; the production settings would redirect it to HTTPS.

    Modules of HTTP tests take it with `pytestmark = [..., pytest.mark.usefixtures("plain_http")]`.
    """
    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture
def fresh_rate_limit(db):
    """The capture form's per-address counters start at zero (they live in a database cache)."""
    caches["ratelimit"].clear()
    yield
    caches["ratelimit"].clear()


@pytest.fixture(scope="module")
def migrated_sqlite(tmp_path_factory) -> str:
    """The URL of a real, migrated SQLite database file, shared by a module's tests."""
    return migrate_sqlite(tmp_path_factory.mktemp("db") / "aicmo.sqlite3")


@pytest.fixture
def cli_database_url(request, tmp_path) -> str:
    """An empty database a real `manage.py` process can use and the test can read: on
    PostgreSQL the test database (committed to, flushed after the test), on SQLite a newly
    migrated file of the test's own."""
    if connection.vendor == "postgresql":
        request.getfixturevalue("transactional_db")
        return running_database_url()
    return migrate_sqlite(tmp_path / "cli.sqlite3")


@pytest.fixture
def smtp_sink():
    """A real SMTP server on 127.0.0.1 (a free port) that records what it accepts and answers
    failures on request (`tests/smtp.py`)."""
    with SmtpSink() as sink:
        yield sink


@pytest.fixture(scope="session")
def imap_server():
    """Debian's Dovecot on 127.0.0.1 (a free port) in a directory of its own, for the whole
    run (`tests/imap.py`); each test takes a new user with `imap_server.user()`."""
    if DOVECOT is None:
        pytest.skip("needs Debian's dovecot-imapd: make system-deps")
    with DovecotServer() as server:
        yield server


@pytest.fixture
def venture(db):
    return VentureFactory()


@pytest.fixture
def campaign(venture):
    return CampaignFactory(venture=venture)


@pytest.fixture
def administrator(db):
    return UserFactory(username="admin-ann", role=ADMINISTRATOR)


@pytest.fixture
def operator(venture):
    user = UserFactory(username="op-otto", role=OPERATOR)
    MembershipFactory(venture=venture, user=user)
    return user


@pytest.fixture
def op_client(client, operator):
    """The test client, logged in as the venture's operator."""
    client.force_login(operator)
    return client


@pytest.fixture
def viewer(venture):
    user = UserFactory(username="viewer-vera", role=VIEWER)
    MembershipFactory(venture=venture, user=user)
    return user


@pytest.fixture
def other_venture_campaign(db):
    """A campaign of a venture that the operator and viewer fixtures are not members of."""
    return CampaignFactory(venture=VentureFactory(name="Other Co", slug="other-co"))
