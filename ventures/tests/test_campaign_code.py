"""Campaigns as code: `campaign load FILE.toml` / `campaign dump C` (ventures.campaign_code)."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import tomllib
from decimal import Decimal
from pathlib import Path
from subprocess import PIPE

import pytest
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from tests.factories import CampaignFactory, IcpSegmentFactory, VentureFactory
from tests.proc import REPO, clean_env, manage, running_database_url
from ventures import campaign_code
from ventures.campaign_code import (
    CAMPAIGN_KEYS,
    SEGMENT_KEYS,
    VENTURE_KEYS,
    CampaignCodeError,
    LimitRaiseNotConfirmedError,
    Locator,
    campaign_dump,
    campaign_load,
    register_section,
    unregister_section,
)
from ventures.models import AuditEvent, Campaign, CampaignStatus, IcpSegment, Venture
from ventures.services import campaign_set_kill_switch, campaign_transition

DEMO_FILE = Path(settings.BASE_DIR) / "docs" / "examples" / "demo-campaign.toml"

BASE = """\
[venture]
slug = "acme"
name = "Acme Pipelines"
timezone = "Europe/Berlin"
owner_email = "owner@acme.example"

[[segments]]
slug = "dach"
name = "DACH RevOps"
countries = ["DE", "AT", "CH"]

[campaign]
slug = "acme-q3"
name = "Acme Q3"
daily_send_limit = 40

[campaign.send_window]
days = ["mon", "tue", "wed", "thu", "fri"]
start = "09:00"
end = "17:00"

[campaign.sender]
name = "Sam"
email = "sam@acme.example"
"""


@pytest.fixture
def write(tmp_path):
    def write(text: str | bytes, name: str = "campaign.toml") -> Path:
        path = tmp_path / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    return write


def load(path: Path, actor: str = "cli:tester"):
    return campaign_load(path=path, actor=actor)


def ventures_rows() -> dict[str, int]:
    """Row counts of every ventures table: proof that nothing was written."""
    return {m.__name__: m.objects.count() for m in apps.get_app_config("ventures").get_models()}


def writes_in(queries: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    ]


def marked_line(text: str, marker: str = "# <-") -> int:
    """The 1-based line of the marker comment in a test file."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if marker in line)


# --------------------------------------------------------------------------------------------
# Creating, updating, idempotence.


@pytest.mark.django_db
def test_loading_the_demo_file_creates_venture_segments_and_campaign():
    result = load(DEMO_FILE, actor="cli:ann")

    venture = Venture.objects.get(slug="northwind-analytics")
    campaign = Campaign.objects.get(slug="northwind-pipeline-q3")
    assert venture.name == "Northwind Analytics"
    assert venture.postal_address.endswith("Germany")
    assert sorted(venture.segments.values_list("slug", flat=True)) == [
        "dach-revops",
        "us-saas-revenue",
    ]
    assert campaign.venture == venture
    assert (campaign.status, campaign.mode) == (CampaignStatus.DRAFT, "proof")
    # The demo runs at any hour: the whole day, every day, and no warm-up.
    assert campaign.send_days == "1234567"
    assert (campaign.send_window_start, campaign.send_window_end) == (
        dt.time(0),
        dt.time(23, 59, 59),
    )
    assert (campaign.warmup_start_limit, campaign.warmup_daily_increase) == (None, 0)
    assert campaign.sender_email == "lena@mail.northwind-analytics.example"
    assert campaign.value_per_positive_reply == Decimal("1500.00")
    assert result.changed
    assert result.campaign == campaign
    # Sections add more, on their own records and (the mailbox pool) on the campaign.
    core = AuditEvent.objects.filter(entity_type__startswith="ventures.").exclude(
        action="campaign.mailboxes"
    )
    actions = sorted(core.values_list("action", flat=True))
    assert actions == ["campaign.create", "segment.create", "segment.create", "venture.create"]
    assert set(AuditEvent.objects.values_list("actor", flat=True)) == {"cli:ann"}
    created = AuditEvent.objects.for_entity(campaign).get(action="campaign.create")
    assert created.before is None
    assert created.after["daily_send_limit"] == 1440
    assert created.reason == "campaign load demo-campaign.toml"


@pytest.mark.django_db
def test_second_load_of_the_same_file_writes_nothing(write):
    path = write(BASE)
    load(path)
    campaign = Campaign.objects.get(slug="acme-q3")
    audit_rows, updated_at = AuditEvent.objects.count(), campaign.updated_at

    with CaptureQueriesContext(connection) as queries:
        result = load(path)

    assert writes_in(queries) == []
    assert AuditEvent.objects.count() == audit_rows
    campaign.refresh_from_db()
    assert campaign.updated_at == updated_at
    assert not result.changed
    assert "no changes" in result.summary()
    assert {c["action"] for c in result.as_dict()["segments"]} == {"unchanged"}


@pytest.mark.django_db
def test_changed_file_updates_only_the_changed_fields_and_audits_before_and_after(write):
    load(write(BASE))
    venture_updated_at = Venture.objects.get(slug="acme").updated_at
    audit_rows = AuditEvent.objects.count()
    edited = BASE.replace("daily_send_limit = 40", "daily_send_limit = 75").replace(
        'end = "17:00"', 'end = "16:30"'
    )

    result = load(write(edited), actor="cli:otto")

    campaign = Campaign.objects.get(slug="acme-q3")
    assert campaign.daily_send_limit == 75
    assert campaign.send_window_end == dt.time(16, 30)
    assert Venture.objects.get(slug="acme").updated_at == venture_updated_at
    new = AuditEvent.objects.order_by("id")[audit_rows:]
    assert [(e.action, e.actor) for e in new] == [("campaign.update", "cli:otto")]
    assert new[0].before == {"daily_send_limit": 40, "send_window_end": "17:00:00"}
    assert new[0].after == {"daily_send_limit": 75, "send_window_end": "16:30:00"}
    assert result.as_dict()["campaign"]["fields"] == ["daily_send_limit", "send_window.end"]
    assert "campaign acme-q3 updated (daily_send_limit, send_window.end)" in result.summary()


@pytest.mark.django_db
def test_a_key_left_out_of_the_file_returns_to_its_default(write):
    load(write(BASE + "\n[campaign.warmup]\nstart_limit = 5\ndaily_increase = 3\n"))
    assert Campaign.objects.get(slug="acme-q3").warmup_start_limit == 5

    load(write(BASE))

    campaign = Campaign.objects.get(slug="acme-q3")
    assert (campaign.warmup_start_limit, campaign.warmup_daily_increase) == (None, 0)


@pytest.mark.django_db
def test_segments_missing_from_the_file_are_left_alone(write):
    load(write(BASE))
    venture = Venture.objects.get(slug="acme")
    kept = IcpSegmentFactory(venture=venture, slug="us", name="US")

    load(write(BASE.replace('slug = "dach"', 'slug = "dach-2"')))

    assert set(venture.segments.values_list("slug", flat=True)) == {"dach", "dach-2", "us"}
    kept.refresh_from_db()
    assert kept.name == "US"


@pytest.mark.django_db
def test_load_never_touches_status_kill_switches_or_active_flag(write):
    load(write(BASE))
    campaign = Campaign.objects.get(slug="acme-q3")
    campaign_transition(campaign=campaign, action="start", actor="t")
    campaign_set_kill_switch(campaign=campaign, on=True, actor="t", reason="spam complaint")
    Venture.objects.filter(slug="acme").update(is_active=False, kill_switch=True)

    load(write(BASE.replace("daily_send_limit = 40", "daily_send_limit = 39")))

    campaign.refresh_from_db()
    assert (campaign.status, campaign.kill_switch) == (CampaignStatus.RUNNING, True)
    assert campaign.kill_reason == "spam complaint"
    assert campaign.daily_send_limit == 39
    venture = Venture.objects.get(slug="acme")
    assert (venture.is_active, venture.kill_switch) == (False, True)


@pytest.mark.django_db
def test_status_and_kill_switch_keys_are_refused(write):
    text = BASE.replace('name = "Acme Q3"', 'name = "Acme Q3"\nstatus = "running"  # <-')
    with pytest.raises(CampaignCodeError, match=r"unknown key 'status' in \[campaign\]"):
        load(write(text))
    assert not Campaign.objects.exists()


@pytest.mark.django_db
def test_live_mode_from_the_file_is_audited_for_a_draft_campaign(write):
    load(write(BASE))

    result = load(write(BASE.replace('name = "Acme Q3"', 'name = "Acme Q3"\nmode = "live"')))

    campaign = Campaign.objects.get(slug="acme-q3")
    assert campaign.mode == "live"
    event = AuditEvent.objects.for_entity(campaign).get(action="campaign.mode")
    assert (event.before, event.after) == ({"mode": "proof"}, {"mode": "live"})
    assert result.as_dict()["campaign"]["fields"] == ["mode"]


@pytest.mark.django_db
def test_live_mode_from_the_file_is_refused_for_a_running_campaign_while_preflight_fails(write):
    load(write(BASE))
    campaign = Campaign.objects.get(slug="acme-q3")
    campaign_transition(campaign=campaign, action="start", actor="t")
    before = ventures_rows()
    text = BASE.replace("daily_send_limit = 40", 'daily_send_limit = 30\nmode = "live"  # <-')
    path = write(text)

    with pytest.raises(CampaignCodeError) as err:
        load(path)

    message = str(err.value)
    assert message.startswith(f"{path}:{marked_line(text)}: campaign.mode: ")
    assert "preflight fails" in message
    campaign.refresh_from_db()
    assert (campaign.mode, campaign.daily_send_limit) == ("proof", 40)
    assert ventures_rows() == before


# --------------------------------------------------------------------------------------------
# Round trip.


@pytest.mark.django_db
def test_dump_of_the_demo_campaign_loads_back_without_changes(write):
    load(DEMO_FILE)
    campaign = Campaign.objects.get(slug="northwind-pipeline-q3")
    audit_rows = AuditEvent.objects.count()

    with CaptureQueriesContext(connection) as queries:
        result = load(write(campaign_dump(campaign=campaign)))

    assert not result.changed
    assert writes_in(queries) == []
    assert AuditEvent.objects.count() == audit_rows


@pytest.mark.django_db
def test_dump_of_awkward_values_loads_back_without_changes(write):
    venture = VentureFactory(
        slug="quotes",
        offer_summary='He said "hi" \\ then left.\nSecond line with ümlauts and emoji 🚀\n',
        postal_address="Line 1\r\nLine 2 '''\n\"\"\"",
        daily_send_limit=None,
        default_channels=[],
    )
    IcpSegmentFactory(venture=venture, slug="b", priority=5, company_size_min=None)
    IcpSegmentFactory(venture=venture, slug="a", priority=5, industries=[], countries=[])
    campaign = CampaignFactory(
        venture=venture,
        send_days="531",
        send_window_start=dt.time(8, 15, 30),
        send_window_end=dt.time(18, 0, 0, 500000),
        timezone="",
        warmup_start_limit=None,
        value_per_positive_reply=Decimal("1234567890.12"),
        sender_name="",
    )
    campaign.refresh_from_db()
    audit_rows = AuditEvent.objects.count()

    result = load(write(campaign_dump(campaign=campaign)))

    assert not result.changed, result.as_dict()
    assert AuditEvent.objects.count() == audit_rows
    campaign.refresh_from_db()
    assert campaign.send_days == "531"


@pytest.mark.django_db
def test_dump_edit_load_changes_exactly_the_edited_fields(write):
    load(DEMO_FILE)
    campaign = Campaign.objects.get(slug="northwind-pipeline-q3")
    audit_rows = AuditEvent.objects.count()
    dumped = campaign_dump(campaign=campaign)
    edited = dumped.replace('end = "23:59:59"', 'end = "22:00"').replace(
        'name = "DACH revenue operations"', 'name = "DACH RevOps leaders"'
    )
    assert 'end = "22:00"' in edited and 'name = "DACH RevOps leaders"' in edited

    result = load(write(edited))

    new = list(AuditEvent.objects.order_by("id")[audit_rows:])
    assert [(e.action, e.before, e.after) for e in new] == [
        ("segment.update", {"name": "DACH revenue operations"}, {"name": "DACH RevOps leaders"}),
        ("campaign.update", {"send_window_end": "23:59:59"}, {"send_window_end": "22:00:00"}),
    ]
    assert result.as_dict()["campaign"]["fields"] == ["send_window.end"]
    assert result.as_dict()["venture"]["action"] == "unchanged"


# --------------------------------------------------------------------------------------------
# Bad files: a clear error naming the line, and nothing written.

BAD_FILES = {
    "toml syntax": (
        BASE.replace('name = "Acme Q3"', 'name = "Acme Q3  # <-'),
        r"not valid TOML: .* at column \d+",
    ),
    "unknown key with suggestion": (
        BASE.replace("daily_send_limit = 40", "daly_limit = 40  # <-"),
        r"campaign\.daly_limit: unknown key 'daly_limit' in \[campaign\]; "
        r"did you mean 'daily_send_limit'\?",
    ),
    "unknown top-level table": (
        BASE + '\n[campain]  # <-\nslug = "x"\n',
        r"campain: unknown key 'campain'; did you mean 'campaign'\?",
    ),
    "unknown key in a sub-table": (
        BASE.replace('start = "09:00"', 'begin = "09:00"  # <-'),
        r"campaign\.send_window\.begin: unknown key 'begin' in \[campaign\.send_window\]",
    ),
    "wrong type": (
        BASE.replace("daily_send_limit = 40", 'daily_send_limit = "40"  # <-'),
        r'campaign\.daily_send_limit: expected a whole number, got a string \("40"\) '
        r"\(write it without quotes\)",
    ),
    "table expected": (
        BASE.replace("[campaign.sender]", "[[campaign.sender]]  # <-"),
        r"campaign\.sender: expected a table \(\[campaign\.sender\]\), got an array",
    ),
    "segments not an array": (
        BASE.replace("[[segments]]", "[segments]  # <-"),
        r"segments: segments must be an array of tables: write \[\[segments\]\]",
    ),
    "missing venture slug": (
        BASE.replace('[venture]\nslug = "acme"', "[venture]  # <-"),
        r"venture\.slug: required key is missing",
    ),
    "missing venture name": (
        BASE.replace(
            '[venture]\nslug = "acme"\nname = "Acme Pipelines"', '[venture]  # <-\nslug = "acme"'
        ),
        r"venture\.name: required key is missing",
    ),
    "missing campaign slug": (
        BASE.replace('[campaign]\nslug = "acme-q3"', "[campaign]  # <-"),
        r"campaign\.slug: required key is missing",
    ),
    "missing campaign name": (
        BASE.replace(
            '[campaign]\nslug = "acme-q3"\nname = "Acme Q3"', '[campaign]  # <-\nslug = "acme-q3"'
        ),
        r"campaign\.name: required key is missing",
    ),
    "missing campaign table": (
        "# <-\n" + BASE[: BASE.index("[campaign]")],
        r"the \[campaign\] table is missing",
    ),
    "bad slug": (
        BASE.replace('slug = "acme-q3"', 'slug = "Acme Q3!"  # <-'),
        r"campaign\.slug: 'Acme Q3!' is not a slug",
    ),
    "bad segment slug": (
        BASE.replace('slug = "dach"', 'slug = "da ch"  # <-'),
        r"segments\[0\]\.slug: 'da ch' is not a slug",
    ),
    "duplicate segment slug": (
        BASE.replace(
            "[campaign]\n", '[[segments]]\nslug = "dach"  # <-\nname = "Again"\n\n[campaign]\n'
        ),
        r"segments\[1\]\.slug: segment 'dach' is listed twice",
    ),
    "invalid time zone": (
        BASE.replace('timezone = "Europe/Berlin"', 'timezone = "Europe/Berlinn"  # <-'),
        r"venture\.timezone: Europe/Berlinn is not an IANA time zone",
    ),
    "invalid campaign time zone": (
        BASE.replace(
            "daily_send_limit = 40", 'daily_send_limit = 40\ntimezone = "Mars/Base"  # <-'
        ),
        r"campaign\.timezone: Mars/Base is not an IANA time zone",
    ),
    "window ends before it starts": (
        BASE.replace('end = "17:00"', 'end = "08:00"  # <-'),
        r"campaign\.send_window\.end: The window must end after it starts\.",
    ),
    "not a time": (
        BASE.replace('end = "17:00"', 'end = "25:00"  # <-'),
        r"campaign\.send_window\.end: '25:00' is not a valid time of day",
    ),
    "bad weekday": (
        BASE.replace('days = ["mon", "tue", "wed", "thu", "fri"]', 'days = ["mon", "thurs"]  # <-'),
        r"campaign\.send_window\.days\[1\]: 'thurs' is not a weekday; did you mean 'thu'\?",
    ),
    "weekday twice": (
        BASE.replace(
            'days = ["mon", "tue", "wed", "thu", "fri"]', 'days = ["mon", "Monday"]  # <-'
        ),
        r"'Monday' is listed twice",
    ),
    "no weekdays": (
        BASE.replace('days = ["mon", "tue", "wed", "thu", "fri"]', "days = []  # <-"),
        r"campaign\.send_window\.days: name at least one weekday",
    ),
    "negative limit": (
        BASE.replace("daily_send_limit = 40", "daily_send_limit = -5  # <-"),
        r"campaign\.daily_send_limit: must be 0 or more, not -5",
    ),
    "negative venture limit": (
        BASE.replace('owner_email = "owner@acme.example"', "daily_send_limit = -1  # <-"),
        r"venture\.daily_send_limit: must be 0 or more, not -1",
    ),
    "invalid email": (
        BASE.replace('email = "sam@acme.example"', 'email = "sam-at-acme"  # <-'),
        r"campaign\.sender\.email: Enter a valid email address\.",
    ),
    "invalid owner email": (
        BASE.replace('owner_email = "owner@acme.example"', 'owner_email = "owner@"  # <-'),
        r"venture\.owner_email: Enter a valid email address\.",
    ),
    "unknown mode": (
        BASE.replace("daily_send_limit = 40", 'daily_send_limit = 40\nmode = "production"  # <-'),
        r"campaign\.mode: 'production' is not a mode: use proof or live",
    ),
    "unknown channel": (
        BASE.replace('owner_email = "owner@acme.example"', 'default_channels = ["emial"]  # <-'),
        r"venture\.default_channels\[0\]: unknown channel 'emial'; did you mean 'email'\?",
    ),
    "too many decimals": (
        BASE.replace(
            "daily_send_limit = 40",
            "daily_send_limit = 40\nvalue_per_positive_reply = 10.125  # <-",
        ),
        r"campaign\.value_per_positive_reply: Ensure that there are no more than 2 decimal places\.",
    ),
    "segment size range reversed": (
        BASE.replace(
            'countries = ["DE", "AT", "CH"]', "company_size_min = 500\ncompany_size_max = 50  # <-"
        ),
        r"segments\[0\]\.company_size_max: Must not be below the minimum size\.",
    ),
    "empty required name": (
        BASE.replace('name = "Acme Q3"', 'name = ""  # <-'),
        r"campaign\.name: This field cannot be blank\.",
    ),
    "too long name": (
        BASE.replace('name = "Acme Q3"', f'name = "{"x" * 201}"  # <-'),
        r"campaign\.name: Ensure this value has at most 200 characters",
    ),
    "bad value in an inline table": (
        BASE.replace('\n[campaign.sender]\nname = "Sam"\nemail = "sam@acme.example"\n', "").replace(
            "daily_send_limit = 40",
            'daily_send_limit = 40\nsender = { name = "Sam", email = "nope" }  # <-',
        ),
        r"campaign\.sender\.email: Enter a valid email address\.",
    ),
    "bad value in a dotted key": (
        BASE.replace(
            '[campaign.send_window]\ndays = ["mon", "tue", "wed", "thu", "fri"]\nstart = "09:00"\nend = "17:00"\n',
            "",
        ).replace(
            "daily_send_limit = 40",
            'daily_send_limit = 40\nsend_window.days = ["mon"]\nsend_window.start = "09:00"\n'
            'send_window.end = "08:00"  # <-',
        ),
        r"campaign\.send_window\.end: The window must end after it starts\.",
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_names_the_line_and_writes_nothing(case, write):
    text, pattern = BAD_FILES[case]
    path = write(text)
    before = ventures_rows()

    with pytest.raises(CampaignCodeError) as err:
        load(path)

    message = str(err.value)
    assert message.startswith(f"{path}:{marked_line(text)}: "), message
    assert re.search(pattern, message), message
    assert "\n" not in message
    assert ventures_rows() == before


@pytest.mark.django_db
def test_bad_campaign_in_an_update_rolls_back_the_venture_and_segment_changes(write):
    load(write(BASE))
    before = ventures_rows()
    text = (
        BASE.replace('name = "Acme Pipelines"', 'name = "Acme Renamed"')
        .replace('name = "DACH RevOps"', 'name = "DACH renamed"')
        .replace("daily_send_limit = 40", "daily_send_limit = 50")
        .replace('end = "17:00"', 'end = "08:00"  # <-')
    )

    with pytest.raises(CampaignCodeError, match=f":{marked_line(text)}: campaign.send_window.end"):
        load(write(text))

    assert Venture.objects.get(slug="acme").name == "Acme Pipelines"
    assert IcpSegment.objects.get(slug="dach").name == "DACH RevOps"
    assert Campaign.objects.get(slug="acme-q3").daily_send_limit == 40
    assert ventures_rows() == before


@pytest.mark.django_db
def test_campaign_slug_of_another_venture_is_refused(write):
    other = CampaignFactory(slug="acme-q3", venture=VentureFactory(slug="someone-else"))
    before = ventures_rows()
    text = BASE.replace('slug = "acme-q3"', 'slug = "acme-q3"  # <-')

    with pytest.raises(CampaignCodeError) as err:
        load(write(text))

    assert (
        f":{marked_line(text)}: campaign.slug: campaign 'acme-q3' already belongs to venture 'someone-else'"
        in str(err.value)
    )
    assert ventures_rows() == before
    other.refresh_from_db()
    assert other.venture.slug == "someone-else"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, r"^{path}: no such file$"),
        ("", r"^{path}: the file is empty$"),
        ("  \n\n", r"^{path}: the file is empty$"),
        (
            "# only a comment\n",
            r"^{path}: the file has no keys; it needs \[venture\] and \[campaign\]$",
        ),
        (
            b'[venture]\nname = "Caf\xe9"\n',
            r"^{path}:2: the file is not UTF-8 text \(byte 0xe9\); save it as UTF-8$",
        ),
    ],
    ids=["missing", "empty", "blank", "comments only", "latin-1"],
)
def test_unreadable_files_are_refused_with_a_clear_reason(content, expected, write, tmp_path):
    path = tmp_path / "nope.toml" if content is None else write(content)
    before = ventures_rows()

    with pytest.raises(CampaignCodeError) as err:
        load(path)

    assert re.search(expected.format(path=re.escape(str(path))), str(err.value)), str(err.value)
    assert ventures_rows() == before


@pytest.mark.django_db
def test_a_directory_is_not_a_campaign_file(tmp_path):
    with pytest.raises(CampaignCodeError, match="is a directory"):
        load(tmp_path)


def test_a_byte_order_mark_is_accepted(write, db):
    load(write(b"\xef\xbb\xbf" + BASE.encode()))
    assert Campaign.objects.filter(slug="acme-q3").exists()


def test_toml_error_at_the_end_of_the_file_names_the_last_line(write, db):
    path = write('[venture]\nslug = "a"\nname = ')
    with pytest.raises(CampaignCodeError, match=rf"^{re.escape(str(path))}:3: not valid TOML: "):
        load(path)


def test_toml_error_for_a_table_declared_twice_reads_as_a_dotted_key(write, db):
    path = write(BASE + "\n[campaign.sender]\nname = 'again'\n")
    with pytest.raises(CampaignCodeError, match=r"Cannot declare campaign\.sender twice"):
        load(path)


# --------------------------------------------------------------------------------------------
# The section registry.


@pytest.fixture
def extras_section():
    """A section like the ones templating/outreach register: [[extras]] with a subject each."""
    calls = []

    def extras_load(data, *, campaign, venture, actor, locate):
        calls.append((campaign.slug, venture.slug, actor))
        for index, item in enumerate(data):
            if not item.get("subject"):
                raise locate.error(("extras", index, "subject"), "must not be empty")
            if item["subject"] == "plain error":
                raise CampaignCodeError("no file name in this one")
            if item["subject"] == "invalid":
                raise ValidationError({"subject": ["Too spammy."]})
            # A write that must disappear when a later item fails.
            IcpSegmentFactory(venture=venture, slug=f"extra-{index}")
        return {"created": len(data)}

    def extras_dump(campaign):
        return [{"subject": "hello"}]

    register_section("extras", load=extras_load, dump=extras_dump, order=10)
    yield calls
    unregister_section("extras")


EXTRAS = """
[[extras]]
subject = "hello"

[[extras]]
subject = "again"

[[extras]]
subject = ""  # <-
"""


@pytest.mark.django_db
def test_a_failing_section_rolls_back_the_whole_load(extras_section, write):
    text = BASE + EXTRAS
    path = write(text)
    before = ventures_rows()

    with pytest.raises(CampaignCodeError) as err:
        load(path)

    assert str(err.value) == f"{path}:{marked_line(text)}: extras[2].subject: must not be empty"
    assert extras_section == [("acme-q3", "acme", "cli:tester")]
    assert ventures_rows() == before
    assert not Venture.objects.filter(slug="acme").exists()


@pytest.mark.django_db
def test_a_section_error_without_a_line_gets_the_sections_line(extras_section, write):
    text = BASE + '\n[[extras]]  # <-\nsubject = "plain error"\n'
    path = write(text)

    with pytest.raises(CampaignCodeError) as err:
        load(path)

    assert str(err.value) == f"{path}:{marked_line(text)}: extras: no file name in this one"


@pytest.mark.django_db
def test_a_validation_error_from_a_section_is_reported_at_the_section(extras_section, write):
    text = BASE + '\n[[extras]]  # <-\nsubject = "invalid"\n'
    path = write(text)

    with pytest.raises(CampaignCodeError) as err:
        load(path)

    assert str(err.value) == f"{path}:{marked_line(text)}: extras: Too spammy."
    assert not Venture.objects.exists()


@pytest.mark.django_db
def test_a_registered_section_is_loaded_reported_and_dumped(extras_section, write):
    result = load(write(BASE + EXTRAS.replace('subject = ""  # <-', 'subject = "third"')))

    assert result.as_dict()["sections"] == {"extras": {"created": 3}}
    assert "extras: 3 created" in result.summary()
    dumped = tomllib.loads(campaign_dump(campaign=result.campaign))
    assert dumped["extras"] == [{"subject": "hello"}]


@pytest.mark.django_db
def test_a_section_left_out_of_the_file_is_not_loaded(extras_section, write):
    load(write(BASE))
    assert extras_section == []


def test_an_unregistered_section_is_an_unknown_key(write, db):
    text = BASE + '\n[[extras]]  # <-\nsubject = "x"\n'
    with pytest.raises(CampaignCodeError, match=rf":{marked_line(text)}: extras: unknown key"):
        load(write(text))


def test_a_section_cannot_take_a_core_key_or_a_taken_one(extras_section):
    with pytest.raises(ValueError, match="core"):
        register_section("campaign", load=lambda *a, **k: None, dump=lambda c: None)
    with pytest.raises(ValueError, match="already registered"):
        register_section("extras", load=lambda *a, **k: None, dump=lambda c: None)


# --------------------------------------------------------------------------------------------
# The line locator.


def test_locator_finds_headers_keys_dotted_keys_inline_tables_and_array_items():
    text = '''\
# comment [not.a.header]
top = 1
[campaign]
name = """
fake = "not a key"
[not.a.table]
"""
send_window.end = "08:00"
sender = { name = "x", email = 'y' }
"quoted key" = [
  1,
  { deep = true },
]

[[templates]]
subject = "a"

[[templates]]
subject = "b"
[templates.vars]
x = 1

[[templates]]
  subject = 'c # not a comment'
body = """a \\""" b
c"""
after = 2
'''
    locate = Locator(text, "f.toml")
    assert locate(("top",)) == 2
    assert locate(("campaign",)) == 3
    assert locate(("campaign", "name")) == 4
    assert locate(("campaign", "fake")) == 3  # absent: falls back to the table
    assert locate(("not",)) == 1  # inside a string: not a table
    assert locate(("campaign", "send_window")) == 8
    assert locate(("campaign", "send_window", "end")) == 8
    assert locate(("campaign", "sender", "email")) == 9
    assert locate(("campaign", "quoted key")) == 10
    assert locate(("campaign", "quoted key", 1, "deep")) == 12
    assert locate(("templates",)) == 15
    assert locate(("templates", 0, "subject")) == 16
    assert locate(("templates", 1)) == 18
    assert locate(("templates", 1, "vars", "x")) == 21
    assert locate(("templates", 2, "subject")) == 24
    assert locate(("templates", 2, "after")) == 27
    assert locate(("templates", 2, "missing")) == 23
    assert locate(("nothing", "here")) == 1


# --------------------------------------------------------------------------------------------
# Through the command line.


@pytest.mark.django_db
def test_campaign_load_and_dump_commands(write, capsys):
    call_command("campaign", "load", str(DEMO_FILE), "--actor", "ann")
    out = capsys.readouterr().out
    assert "venture northwind-analytics created" in out
    assert "Campaign northwind-pipeline-q3 is Draft, proof mode." in out
    assert AuditEvent.objects.filter(actor="cli:ann", action="campaign.create").exists()

    call_command("campaign", "--json", "load", str(DEMO_FILE))
    data = json.loads(capsys.readouterr().out)
    assert data["changed"] is False
    assert data["campaign"] == {
        "slug": "northwind-pipeline-q3",
        "action": "unchanged",
        "fields": [],
        "status": "draft",
        "mode": "proof",
    }

    call_command("campaign", "dump", "northwind-pipeline-q3")
    dumped = capsys.readouterr().out
    assert load(write(dumped)).changed is False


@pytest.mark.django_db
def test_campaign_load_command_fails_with_a_one_line_reason(write):
    text = BASE.replace("daily_send_limit = 40", "daly_limit = 40  # <-")
    path = write(text)
    before = ventures_rows()

    with pytest.raises(CommandError) as err:
        call_command("campaign", "load", str(path))

    assert str(err.value) == (
        f"{path}:{marked_line(text)}: campaign.daly_limit: unknown key 'daly_limit' in "
        "[campaign]; did you mean 'daily_send_limit'?"
    )
    assert ventures_rows() == before


@pytest.mark.django_db
def test_campaign_load_command_reports_a_missing_file():
    with pytest.raises(CommandError, match=r"^missing\.toml: no such file$"):
        call_command("campaign", "--json", "load", "missing.toml")


# --------------------------------------------------------------------------------------------
# Raising a running campaign's limits from a file: confirmed with a reason, as in the admin.

WARMING = BASE + "\n[campaign.warmup]\nstart_limit = 10\ndaily_increase = 5\n"


def _loaded(write, status: str = "start") -> Campaign:
    load(write(WARMING))
    campaign = Campaign.objects.get(slug="acme-q3")
    campaign_transition(campaign=campaign, action="start", actor="t")
    if status == "pause":
        campaign_transition(campaign=campaign, action="pause", actor="t")
    campaign.refresh_from_db()
    return campaign


RAISED = WARMING.replace("daily_send_limit = 40", "daily_send_limit = 5000  # <-").replace(
    "start_limit = 10\n", ""
)


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["start", "pause"])
def test_loading_a_raise_of_a_running_or_paused_campaign_is_refused_naming_each_limit(
    write, status
):
    campaign = _loaded(write, status)
    before = ventures_rows()
    path = write(RAISED)

    with pytest.raises(CommandError) as err:
        call_command("campaign", "load", str(path))

    shown = "running" if status == "start" else "paused"
    assert str(err.value) == (
        f"{path}:{marked_line(RAISED)}: campaign: the file raises the limits of campaign"
        f" 'acme-q3', which is {shown}: campaign.daily_send_limit 40 -> 5,000;"
        " campaign.warmup.start_limit 10 -> none. Nothing was written: raising a running or"
        " paused campaign's limits needs a confirmation and a reason: load again with"
        " --confirm-raise --reason \"why\" to raise the limits of campaign 'acme-q3'."
    )
    campaign.refresh_from_db()
    assert (campaign.daily_send_limit, campaign.warmup_start_limit) == (40, 10)
    assert ventures_rows() == before


@pytest.mark.django_db
def test_a_faster_warm_up_of_a_running_campaign_is_a_raise(write):
    _loaded(write)
    faster = WARMING.replace("daily_increase = 5", "daily_increase = 50")

    with pytest.raises(LimitRaiseNotConfirmedError) as err:
        load(write(faster))

    assert "campaign.warmup.daily_increase 5 -> 50." in str(err.value)
    assert [r.attr for r in err.value.raises] == ["warmup_daily_increase"]


@pytest.mark.django_db
def test_a_confirmed_raise_loads_and_audits_the_reason_as_the_admin_does(write, capsys):
    campaign = _loaded(write)
    path = write(RAISED)

    call_command(
        "campaign", "--actor", "ann", "load", str(path), "--confirm-raise",
        "--reason", "  Client doubled the list ",
    )  # fmt: skip

    campaign.refresh_from_db()
    assert (campaign.daily_send_limit, campaign.warmup_start_limit) == (5000, None)
    event = AuditEvent.objects.for_entity(campaign).get(action="campaign.update")
    assert (event.actor, event.reason) == ("cli:ann", "Client doubled the list")
    assert event.before == {"daily_send_limit": 40, "warmup_start_limit": 10}
    assert event.after == {"daily_send_limit": 5000, "warmup_start_limit": None}
    assert "campaign acme-q3 updated (daily_send_limit, warmup.start_limit)" in (
        capsys.readouterr().out
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--confirm-raise"], '--confirm-raise needs --reason "why"'),
        (["--confirm-raise", "--reason", "   "], '--confirm-raise needs --reason "why"'),
        (["--reason", "more please"], "--reason is the reason of a confirmed raise of limits"),
    ],
)
def test_a_raise_flag_without_its_partner_is_refused_and_writes_nothing(write, flags, expected):
    campaign = _loaded(write)
    before = ventures_rows()

    with pytest.raises(CommandError, match=re.escape(expected)):
        call_command("campaign", "load", str(write(RAISED)), *flags)

    campaign.refresh_from_db()
    assert campaign.daily_send_limit == 40
    assert ventures_rows() == before


@pytest.mark.django_db
def test_lowering_a_running_campaigns_limits_loads_without_confirmation(write):
    campaign = _loaded(write)
    lower = WARMING.replace("daily_send_limit = 40", "daily_send_limit = 20").replace(
        "start_limit = 10", "start_limit = 5"
    )

    load(write(lower))

    campaign.refresh_from_db()
    assert (campaign.daily_send_limit, campaign.warmup_start_limit) == (20, 5)
    event = AuditEvent.objects.for_entity(campaign).get(action="campaign.update")
    assert event.reason == "campaign load campaign.toml"


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["draft", "stop"])
def test_raising_a_draft_or_stopped_campaigns_limits_loads_without_confirmation(write, status):
    load(write(WARMING))
    campaign = Campaign.objects.get(slug="acme-q3")
    if status == "stop":
        campaign_transition(campaign=campaign, action="start", actor="t")
        campaign_transition(campaign=campaign, action="stop", actor="t")

    load(write(RAISED))

    campaign.refresh_from_db()
    assert (campaign.daily_send_limit, campaign.warmup_start_limit) == (5000, None)


# --------------------------------------------------------------------------------------------
# The documentation stays true.

DOC = Path(settings.BASE_DIR) / "docs" / "CAMPAIGN_TOML.md"


def _documented_tables(schema, heading):
    """(heading of the doc section, keys it must document) for a table and its sub-tables."""
    yield heading, [name for name, spec in schema.items() if not isinstance(spec, dict)]
    for name, spec in schema.items():
        if isinstance(spec, dict):
            yield from _documented_tables(spec, f"{heading[:-1]}.{name}]")


@pytest.mark.parametrize(
    ("schema", "heading"),
    [(VENTURE_KEYS, "[venture]"), (SEGMENT_KEYS, "[[segments]]"), (CAMPAIGN_KEYS, "[campaign]")],
)
def test_every_key_is_documented(schema, heading):
    doc = DOC.read_text(encoding="utf-8")
    for table, keys in _documented_tables(schema, heading):
        section = doc.split(f"### `{table}`", 1)[1].split("\n### ", 1)[0]
        for name in keys:
            assert f"| `{name}` |" in section, f"{name} is not documented under {table}"


def test_the_documented_example_is_the_demo_file():
    doc = DOC.read_text(encoding="utf-8")
    example = doc.split("## A complete example", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    demo = tomllib.loads(DEMO_FILE.read_text(encoding="utf-8"))
    core = {key: demo[key] for key in ("venture", "segments", "campaign")}
    assert tomllib.loads(example) == core


# --------------------------------------------------------------------------------------------
# Concurrent loads (PostgreSQL, real processes).


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_loads_of_one_new_file_create_everything_exactly_once(write):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers are proven on PostgreSQL")
    url = running_database_url()
    path = write(BASE)
    env = clean_env(DATABASE_URL=url)
    commands = [
        [sys.executable, str(REPO / "manage.py"), "campaign", "--actor", f"p{n}", "load", str(path)]
        for n in range(4)
    ]

    runs = [
        subprocess.Popen(c, cwd=REPO, env=env, stdout=PIPE, stderr=PIPE, text=True)
        for c in commands
    ]
    results = [(run.wait(timeout=120), *run.communicate()) for run in runs]

    assert [code for code, _, _ in results] == [0, 0, 0, 0], results
    assert (Venture.objects.count(), IcpSegment.objects.count(), Campaign.objects.count()) == (
        1,
        1,
        1,
    )
    creations = sorted(AuditEvent.objects.values_list("action", flat=True))
    assert creations == ["campaign.create", "segment.create", "venture.create"]
    assert sum("no changes" in out for _, out, _ in results) == 3


@pytest.mark.django_db
def test_a_load_that_reads_the_venture_before_and_the_campaign_after_a_concurrent_load_committed(
    write, monkeypatch
):
    # The race seen in CI: a concurrent load of the same new file committed the venture and
    # the campaign between this load's read of the venture (nothing yet) and of the campaign.
    path = write(BASE)
    campaign_code.campaign_load(path=path, actor="the winner")
    real = Venture.objects.select_for_update
    reads = []

    class ReadBeforeTheWinnerCommitted:
        def filter(self, **lookups):
            reads.append(lookups)
            return Venture.objects.none() if len(reads) == 1 else real().filter(**lookups)

        def get(self, **lookups):
            return real().get(**lookups)

    monkeypatch.setattr(Venture.objects, "select_for_update", ReadBeforeTheWinnerCommitted)

    result = campaign_code.campaign_load(path=path, actor="the loser")

    assert reads and result.campaign.venture == result.venture
    assert Venture.objects.count() == 1 and Campaign.objects.count() == 1
    assert not AuditEvent.objects.filter(actor="the loser").exists()  # nothing to change


@pytest.mark.django_db
def test_a_load_that_loses_a_creation_race_tries_once_more(write, monkeypatch):
    real_apply = campaign_code._apply
    calls = []
    VentureFactory(slug="acme", name="Acme Pipelines", timezone="UTC")  # the race's winner

    def apply_losing_the_first_race(plan, **kwargs):
        calls.append(plan)
        if len(calls) == 1:  # as if the winner's row had appeared just before our insert
            raise IntegrityError('duplicate key value violates unique constraint "slug"')
        return real_apply(plan, **kwargs)

    monkeypatch.setattr(campaign_code, "_apply", apply_losing_the_first_race)

    result = load(write(BASE))

    assert len(calls) == 2
    assert Venture.objects.get().timezone == "Europe/Berlin"
    assert result.as_dict()["venture"]["action"] == "updated"
    assert Campaign.objects.filter(slug="acme-q3").exists()


@pytest.mark.django_db
def test_a_load_that_keeps_failing_on_the_database_says_so_in_one_line(write, monkeypatch):
    def apply_always_refused(plan, **kwargs):
        raise IntegrityError("duplicate key value violates unique constraint\nDETAIL: slug")

    monkeypatch.setattr(campaign_code, "_apply", apply_always_refused)
    path = write(BASE)

    with pytest.raises(CampaignCodeError) as err:
        load(path)

    assert str(err.value) == (
        f"{path}: the database refused the change "
        "(duplicate key value violates unique constraint); nothing was written"
    )


def test_operator_sees_one_line_and_exit_status_1_for_a_bad_file(write, tmp_path):
    text = BASE.replace('end = "17:00"', 'end = "17:00"\nend = "18:00"  # <-')
    path = write(text)
    env = clean_env(DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'never-used.sqlite3'}")

    run = manage("campaign", "load", str(path), env=env)

    assert run.returncode == 1, run
    assert run.stdout == ""
    assert re.fullmatch(
        rf"CommandError: {re.escape(str(path))}:{marked_line(text)}: not valid TOML: "
        r"Cannot overwrite a value at column \d+\n",
        run.stderr,
    ), run.stderr


def _leaf_paths(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaf_paths(item, (*path, key))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for index, item in enumerate(value):
            yield from _leaf_paths(item, (*path, index))
    else:
        yield path


def test_locator_puts_every_key_of_the_demo_file_on_the_line_that_names_it():
    text = DEMO_FILE.read_text(encoding="utf-8")
    lines = text.splitlines()
    locate = Locator(text, "demo.toml")
    for path in _leaf_paths(tomllib.loads(text)):
        line = lines[locate(path) - 1]
        assert str(path[-1]) in line.split("=")[0] or f"{path[-1]} =" in line, (path, line)
