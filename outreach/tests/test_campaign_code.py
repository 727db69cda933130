"""`[[mailboxes]]`, `[[sequences]]` and `[[routing]]` in campaign TOML files: idempotent audited
upserts, a connection URL that nothing ever shows, refusals that name the line and write
nothing, and dumps that load back without a change."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from outreach.campaign_code import (
    CONNECTION_KEYS,
    MAILBOX_KEYS,
    ROUTING_KEYS,
    SEQUENCE_KEYS,
    STEP_KEYS,
)
from outreach.enrollment import campaign_enrol, plan_step
from outreach.models import Enrollment, Mailbox, RoutingRule, Sequence, SequenceStep
from tests.factories import LeadFactory
from ventures.campaign_code import (
    CampaignCodeError,
    LimitRaiseNotConfirmedError,
    campaign_dump,
    campaign_load,
)
from ventures.models import AuditEvent, Campaign, Venture
from ventures.services import campaign_transition

pytestmark = pytest.mark.django_db

DEMO_FILE = Path(settings.BASE_DIR) / "docs" / "examples" / "demo-campaign.toml"
DOC = Path(settings.BASE_DIR) / "docs" / "CAMPAIGN_TOML.md"
SECRET = "s3cr3t-Pa55word"
SMTP_URL = f"smtp://sam:{SECRET}@smtp.acme.example:587/?tls=True"

BASE = """\
[venture]
slug = "acme"
name = "Acme Pipelines"
postal_address = "Acme GmbH, Hauptstrasse 1, 10115 Berlin"

[[segments]]
slug = "dach"
name = "DACH RevOps"

[campaign]
slug = "acme-q3"
name = "Acme Q3"

[[templates]]
slug = "opener-a"
name = "Opener A"
subject = "Hi {{ first_name | default('there') }}"
body_text = "A. {{ venture.postal_address }} {{ unsubscribe_url }}"

[[templates]]
slug = "opener-b"
name = "Opener B"
subject = "Hello {{ first_name | default('there') }}"
body_text = "B. {{ venture.postal_address }} {{ unsubscribe_url }}"

[[templates]]
slug = "follow-up"
name = "Follow-up"
scope = "venture"
subject = "Re: hi"
body_text = "Bump. {{ venture.postal_address }} {{ unsubscribe_url }}"
"""
MAILBOX = """
[[mailboxes]]
email = "sam@mail.acme.example"
name = "Sam - outbound"
daily_limit = 80
connection_url_env = "ACME_SMTP_URL"
"""
SEQUENCE = """
[[sequences]]
slug = "main"
name = "Main"
default = true

[[sequences.steps]]
templates = ["opener-a", "opener-b"]

[[sequences.steps]]
kind = "linkedin_connect"
delay_days = 1
templates = ["follow-up"]

[[sequences.steps]]
delay_days = 3
business_days = true
templates = ["follow-up"]
"""
PRIORITY = """
[[sequences]]
slug = "priority"
name = "Priority"

[[sequences.steps]]
kind = "call"
templates = ["opener-a"]
"""
ROUTING = """
[[routing]]
sequence = "priority"
priority = 10
grades = ["A"]
segment = "dach"
"""
FULL = BASE + MAILBOX + SEQUENCE + PRIORITY + ROUTING


@pytest.fixture(autouse=True)
def smtp_url(monkeypatch):
    monkeypatch.setenv("ACME_SMTP_URL", SMTP_URL)


@pytest.fixture
def load(tmp_path):
    def load(text: str):
        path = tmp_path / "acme.toml"
        path.write_text(text, encoding="utf-8")
        return campaign_load(path=path, actor="cli:t")

    return load


def no_writes(queries: CaptureQueriesContext) -> bool:
    return not any(
        q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
        for q in queries.captured_queries
    )


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    lines = [n for n, row in enumerate(text.splitlines(), 1) if row.startswith(needle)]
    return lines[occurrence - 1]


def audit_text() -> str:
    return json.dumps(list(AuditEvent.objects.values("before", "after", "entity_repr")))


# --------------------------------------------------------------------------------------------
# The IMAP URL: the same way as the connection URL.

IMAP_SECRET = "imap-Pa55word-9"
IMAP_URL = f"imaps://sam%40mail.acme.example:{IMAP_SECRET}@imap.acme.example/INBOX"
WITH_IMAP = BASE + MAILBOX + 'imap_url_env = "ACME_IMAP_URL"\n'


def test_the_imap_url_comes_from_the_environment_and_is_never_shown(load, monkeypatch):
    monkeypatch.setenv("ACME_IMAP_URL", IMAP_URL)
    result = load(WITH_IMAP)
    box = Mailbox.objects.get()
    assert (box.imap_url, box.imap_url_env) == (IMAP_URL, "ACME_IMAP_URL")
    assert AuditEvent.objects.get(action="mailbox.create").after["imap_url"] == "changed"

    dumped = campaign_dump(campaign=box.campaigns.get())
    assert 'imap_url_env = "ACME_IMAP_URL"' in dumped
    assert not load(dumped).changed
    for text in (dumped, audit_text(), result.summary(), json.dumps(result.as_dict())):
        assert IMAP_SECRET not in text

    box.imap_url_env = ""  # as if typed in the admin
    box.save()
    dumped = campaign_dump(campaign=box.campaigns.get())
    assert 'imap = "custom (not shown)"' in dumped and IMAP_SECRET not in dumped
    assert not load(dumped).changed
    box.refresh_from_db()
    assert box.imap_url == IMAP_URL
    load(BASE + MAILBOX)  # the keys left out: not polled
    box.refresh_from_db()
    assert (box.imap_url, box.imap_url_env) == ("", "")
    assert 'imap = "none"' in campaign_dump(campaign=box.campaigns.get())


@pytest.mark.parametrize(
    ("line", "key", "expected"),
    [
        (f'imap_url = "{IMAP_URL}"', "imap_url", "an IMAP URL holds a password and never goes"),
        ('imap_url_env = "ACME_SMTP_URL"', "imap_url_env", "does not hold an IMAP URL"),
        ('imap_url_env = "ACME_UNSET"', "imap_url_env", "ACME_UNSET is not set"),
        ('imap = "custom (not shown)"', "imap", "but this mailbox has none"),
        ('imap = "yes"', "imap", 'must be "none" (the mailbox\'s inbox is not polled)'),
    ],
)
def test_a_bad_imap_url_is_refused_without_showing_a_secret(load, line, key, expected):
    text = BASE + MAILBOX + line + "\n"
    with pytest.raises(CampaignCodeError) as refused:
        load(text)
    message = str(refused.value)
    assert f":{line_of(text, line)}: mailboxes[0].{key}: " in message
    assert expected in message
    assert IMAP_SECRET not in message and SECRET not in message
    assert not Venture.objects.exists()


# --------------------------------------------------------------------------------------------
# Loading: created, idempotent, audited.


def test_the_demo_file_creates_its_mailbox_sequences_and_routing_rule():
    result = campaign_load(path=DEMO_FILE, actor="cli:ann")

    assert result.sections["mailboxes"] == {
        "created": 1,
        "updated": 0,
        "unchanged": 0,
        "added": 0,
        "removed": 0,
    }
    assert result.sections["sequences"] == {"created": 2, "updated": 0, "unchanged": 0}
    assert result.sections["routing"] == {"created": 1, "updated": 0, "unchanged": 0, "removed": 0}
    campaign = Campaign.objects.get(slug="northwind-pipeline-q3")
    box = campaign.mailboxes.get()
    assert (box.from_email, box.venture, box.connection_url) == (
        "lena@mail.northwind-analytics.example",
        campaign.venture,
        "",
    )
    default = Sequence.objects.get(campaign=campaign, is_default=True)
    steps = list(default.steps.order_by("position"))
    assert [(s.position, s.kind, s.delay_days) for s in steps] == [
        (1, "email", 0),
        (2, "linkedin_connect", 0),
        (3, "email", 3),
    ]
    assert sorted(t.slug for t in steps[0].templates.all()) == [
        "opener-manual-reporting",
        "opener-social-proof",
    ]
    rule = RoutingRule.objects.get(campaign=campaign)
    assert (rule.sequence.slug, rule.grades, rule.segment.slug) == (
        "dach-priority",
        ["A"],
        "dach-revops",
    )
    outreach_rows = AuditEvent.objects.filter(entity_type__startswith="outreach.")
    assert sorted(set(outreach_rows.values_list("action", flat=True))) == [
        "mailbox.create",
        "routing.create",
        "sequence.create",
        "step.create",
    ]
    assert outreach_rows.filter(action="step.create").count() == 6
    # Scoped audit lists find them under the venture, and the reason names the file.
    assert set(outreach_rows.values_list("venture_id", "reason")) == {
        (campaign.venture_id, "campaign load demo-campaign.toml")
    }
    pool = AuditEvent.objects.get(action="campaign.mailboxes")
    assert pool.after == {"mailboxes": ["lena@mail.northwind-analytics.example"]}


def test_loading_the_same_file_again_writes_nothing(load):
    load(FULL)
    audit_rows = AuditEvent.objects.count()

    with CaptureQueriesContext(connection) as queries:
        result = load(FULL)

    assert no_writes(queries)
    assert AuditEvent.objects.count() == audit_rows
    assert not result.changed
    assert result.sections["sequences"] == {"created": 0, "updated": 0, "unchanged": 2}


def test_a_changed_step_is_updated_with_its_templates_in_the_audit_row(load):
    load(FULL)
    audit_rows = AuditEvent.objects.count()
    edited = FULL.replace(
        'templates = ["opener-a", "opener-b"]', 'delay_hours = 2\ntemplates = ["opener-a"]'
    )

    result = load(edited)

    assert result.sections["sequences"] == {"created": 0, "updated": 1, "unchanged": 1}
    step = SequenceStep.objects.get(sequence__slug="main", position=1)
    assert step.delay_hours == 2
    assert [t.slug for t in step.templates.all()] == ["opener-a"]
    new = list(AuditEvent.objects.order_by("id")[audit_rows:])
    assert [(e.action, e.before, e.after) for e in new] == [
        (
            "step.update",
            {"delay_hours": 0, "templates": ["opener-a", "opener-b"]},
            {"delay_hours": 2, "templates": ["opener-a"]},
        )
    ]


def test_a_key_left_out_returns_to_its_default(load):
    load(FULL)
    load(FULL.replace("daily_limit = 80\n", ""))
    assert Mailbox.objects.get().daily_limit == 50


def test_steps_left_out_are_removed_and_audited(load):
    load(FULL)
    main = Sequence.objects.get(slug="main")
    third = main.steps.get(position=3)

    result = load(FULL.replace(SEQUENCE, SEQUENCE.rsplit("[[sequences.steps]]", 1)[0]))

    assert result.sections["sequences"]["updated"] == 1
    assert list(main.steps.values_list("position", flat=True)) == [1, 2]
    removed = AuditEvent.objects.get(action="step.delete")
    assert (removed.entity_id, removed.after) == (str(third.pk), None)
    assert removed.before["templates"] == ["follow-up"]


def test_a_step_with_messages_cannot_be_removed_and_nothing_is_written(load):
    load(FULL)
    campaign = Campaign.objects.get(slug="acme-q3")
    LeadFactory(campaign=campaign)
    assert campaign_enrol(campaign=campaign) == 1
    enrollment = Enrollment.objects.get()
    last = Sequence.objects.get(slug="main").steps.get(position=3)
    assert plan_step(enrollment=enrollment, step=last, after=enrollment.created_at)
    audit_rows = AuditEvent.objects.count()
    text = FULL.replace(SEQUENCE, SEQUENCE.rsplit("[[sequences.steps]]", 1)[0]).replace(
        'name = "Main"', 'name = "Main, renamed"'
    )

    with pytest.raises(CampaignCodeError) as refused:
        load(text)

    assert str(refused.value).endswith(
        f":{line_of(text, '[[sequences.steps]]')}: sequences[0].steps: step 3 (Automatic email)"
        " of sequence 'main' cannot be removed: it has 1 outbound message(s), kept as the"
        " record of what was sent. Keep the step in the file; to send leads another way, add a"
        " new sequence and route them to it"
    )
    assert Sequence.objects.get(slug="main").name == "Main"
    assert last.messages.count() == 1
    assert SequenceStep.objects.filter(pk=last.pk).exists()
    assert AuditEvent.objects.count() == audit_rows


def test_the_default_moves_even_from_a_sequence_the_file_does_not_name(load):
    load(FULL)

    result = load(BASE + PRIORITY.replace('name = "Priority"', 'name = "Priority"\ndefault = true'))

    assert Sequence.objects.get(slug="priority").is_default
    assert not Sequence.objects.get(slug="main").is_default  # not in the file, still moved
    assert result.sections["sequences"] == {"created": 0, "updated": 2, "unchanged": 0}
    demoted = AuditEvent.objects.get(action="sequence.update", entity_repr="Main")
    assert (demoted.before, demoted.after) == ({"is_default": True}, {"is_default": False})


def test_routing_rules_left_out_are_deleted_and_equal_ones_are_kept(load):
    second = ROUTING.replace("priority = 10", "priority = 20").replace('grades = ["A"]', "")
    load(FULL + second)
    kept = RoutingRule.objects.get(priority=10)

    result = load(FULL)

    assert result.sections["routing"] == {"created": 0, "updated": 0, "unchanged": 1, "removed": 1}
    assert list(RoutingRule.objects.all()) == [kept]
    deleted = AuditEvent.objects.get(action="routing.delete")
    assert deleted.before["priority"] == 20


def test_a_changed_rule_is_updated_in_place(load):
    load(FULL)
    rule = RoutingRule.objects.get()
    load(FULL.replace('grades = ["A"]', 'grades = ["a", "b"]\nsource_channels = ["form"]'))
    rule.refresh_from_db()
    assert (rule.grades, rule.source_channels) == (["A", "B"], ["form"])
    updated = AuditEvent.objects.get(action="routing.update")
    assert updated.after == {"grades": ["A", "B"], "source_channels": ["form"]}


def test_leads_are_routed_as_the_file_says():
    campaign_load(path=DEMO_FILE, actor="cli:t")
    campaign = Campaign.objects.get(slug="northwind-pipeline-q3")
    dach = campaign.venture.segments.get(slug="dach-revops")
    fit = LeadFactory(campaign=campaign, grade="A", segment=dach)
    other = LeadFactory(campaign=campaign, grade="C")

    assert campaign_enrol(campaign=campaign) == 2

    assert Enrollment.objects.get(lead=fit).sequence.slug == "dach-priority"
    assert Enrollment.objects.get(lead=other).sequence.slug == "pipeline-review"
    assert {e.mailbox.from_email for e in Enrollment.objects.all()} == {
        "lena@mail.northwind-analytics.example"
    }


def test_a_mailbox_left_out_leaves_the_pool_and_stays_in_the_venture(load):
    load(FULL)
    campaign = Campaign.objects.get(slug="acme-q3")

    # An empty pool is written as a top-level key, before the file's first table.
    result = load("mailboxes = []\n" + FULL.replace(MAILBOX, ""))

    assert result.sections["mailboxes"]["removed"] == 1
    assert not campaign.mailboxes.exists()
    assert Mailbox.objects.filter(venture=campaign.venture).count() == 1
    pool = AuditEvent.objects.filter(action="campaign.mailboxes").latest("id")
    assert (pool.before, pool.after) == (
        {"mailboxes": ["sam@mail.acme.example"]},
        {"mailboxes": []},
    )


# --------------------------------------------------------------------------------------------
# The connection URL: read from the environment, never shown.


def test_the_connection_url_comes_from_the_environment_and_is_never_shown(load, monkeypatch):
    result = load(FULL)
    box = Mailbox.objects.get()
    assert (box.connection_url, box.connection_url_env) == (SMTP_URL, "ACME_SMTP_URL")
    created = AuditEvent.objects.get(action="mailbox.create")
    assert created.after["connection_url"] == "changed"

    monkeypatch.setenv("ACME_SMTP_URL", SMTP_URL.replace(SECRET, "rotated-Pa55word"))
    rotated = load(FULL)

    assert rotated.sections["mailboxes"]["updated"] == 1
    update = AuditEvent.objects.get(action="mailbox.update")
    assert (update.before, update.after) == (
        {"connection_url": "(not shown)"},
        {"connection_url": "changed"},
    )
    dumped = campaign_dump(campaign=box.campaigns.get())
    assert 'connection_url_env = "ACME_SMTP_URL"' in dumped
    for text in (dumped, audit_text(), result.summary(), json.dumps(result.as_dict())):
        assert SECRET not in text and "rotated-Pa55word" not in text


def test_a_connection_set_in_the_admin_dumps_as_a_placeholder_that_keeps_it(load):
    load(FULL)
    box = Mailbox.objects.get()
    box.connection_url, box.connection_url_env = SMTP_URL, ""
    box.save()

    dumped = campaign_dump(campaign=box.campaigns.get())
    assert 'connection = "custom (not shown)"' in dumped
    assert SECRET not in dumped
    result = load(dumped)

    assert not result.changed, result.as_dict()
    box.refresh_from_db()
    assert box.connection_url == SMTP_URL


@pytest.mark.parametrize(
    ("mailbox_line", "key", "expected"),
    [
        (f'connection_url = "{SMTP_URL}"', "connection_url", "never goes into a file"),
        (f'connection_url_env = "{SMTP_URL}"', "connection_url_env", "the name of an environment"),
        (f'connection = "{SMTP_URL}"', "connection", 'must be "default"'),
        ('connection_url_env = "ACME_UNSET"', "connection_url_env", "ACME_UNSET is not set"),
        ('connection_url_env = "ACME_NOT_MAIL"', "connection_url_env", "does not hold an e-mail"),
        ('connection = "custom (not shown)"', "connection", "but this mailbox has none"),
        ('connection = "default"', "connection", "connection_url_env or connection, not both"),
    ],
)
def test_a_bad_connection_is_refused_without_showing_a_secret(
    load, monkeypatch, mailbox_line, key, expected
):
    monkeypatch.setenv("ACME_NOT_MAIL", f"https://sam:{SECRET}@web.example/")
    mailbox = MAILBOX.replace('connection_url_env = "ACME_SMTP_URL"', mailbox_line)
    if key == "connection" and "not both" in expected:
        mailbox = MAILBOX + mailbox_line + "\n"
    text = BASE + mailbox
    with pytest.raises(CampaignCodeError) as refused:
        load(text)
    message = str(refused.value)
    assert f":{line_of(text, mailbox_line)}: mailboxes[0].{key}: " in message
    assert expected in message
    assert SECRET not in message
    assert not Venture.objects.exists()
    assert SECRET not in audit_text()


# --------------------------------------------------------------------------------------------
# Refusals: the file, the line and the key; nothing written.

BAD = {
    "unknown template": (
        SEQUENCE.replace('templates = ["follow-up"]', 'templates = ["folow-up"]', 1),
        'templates = ["folow-up"]',
        "sequences[0].steps[1].templates[0]: no template 'folow-up' in this campaign;"
        " did you mean 'follow-up'?",
    ),
    "a template of another scope or campaign": (
        SEQUENCE.replace('["opener-a", "opener-b"]', '["opener-a", "elsewhere"]'),
        "templates = [",
        "sequences[0].steps[0].templates[1]: no template 'elsewhere' in this campaign",
    ),
    "no templates": (
        SEQUENCE.replace('templates = ["opener-a", "opener-b"]', "templates = []"),
        "templates = []",
        "sequences[0].steps[0].templates: name the step's templates by slug",
    ),
    "unknown kind": (
        SEQUENCE.replace('kind = "linkedin_connect"', 'kind = "linkedin"'),
        'kind = "linkedin"',
        "sequences[0].steps[1].kind: 'linkedin' is not a step kind; did you mean",
    ),
    "unknown step key": (
        SEQUENCE.replace("delay_days = 1", "delay_day = 1"),
        "delay_day = 1",
        "sequences[0].steps[1].delay_day: unknown key 'delay_day' in [[sequences.steps]];"
        " did you mean 'delay_days'?",
    ),
    "hours over a day": (
        SEQUENCE.replace("delay_days = 1", "delay_hours = 24"),
        "delay_hours = 24",
        "sequences[0].steps[1].delay_hours: Ensure this value is less than or equal to 23.",
    ),
    "no steps": (
        PRIORITY.replace(
            '[[sequences.steps]]\nkind = "call"\ntemplates = ["opener-a"]\n', ""
        ).replace('name = "Priority"', 'name = "Priority"\ndefault = true'),
        "[[sequences]]",
        "sequences[0].steps: a sequence needs at least one step",
    ),
    "two defaults": (
        SEQUENCE + PRIORITY.replace('name = "Priority"', 'name = "Priority"\ndefault = true'),
        "default = true",
        "sequences[1].default: sequence 'main' is the default already",
    ),
    "no default": (
        SEQUENCE.replace("default = true", "default = false"),
        "[[sequences]]",
        "sequences: mark one sequence default = true",
    ),
    "a sequence listed twice": (
        SEQUENCE + SEQUENCE.replace("default = true\n", ""),
        'slug = "main"',
        "sequences[1].slug: sequence 'main' is listed twice",
    ),
    "routing to no sequence": (
        SEQUENCE + ROUTING,
        'sequence = "priority"',
        "routing[0].sequence: no sequence 'priority' in this campaign",
    ),
    "routing to no segment": (
        SEQUENCE + PRIORITY + ROUTING.replace('"dach"', '"dachh"'),
        'segment = "dachh"',
        "routing[0].segment: no segment 'dachh' in this venture; did you mean 'dach'?",
    ),
    "a bad grade": (
        SEQUENCE + PRIORITY + ROUTING.replace('["A"]', '["A", "E"]'),
        "grades = ",
        "routing[0].grades[1]: 'E' is not a grade (use A, B, C, D)",
    ),
    "a bad channel": (
        SEQUENCE + PRIORITY + ROUTING + 'source_channels = ["csv"]\n',
        "source_channels",
        "routing[0].source_channels[0]: 'csv' is not a channel",
    ),
    "a bad mailbox address": (
        MAILBOX.replace("sam@mail.acme.example", "sam-at-acme"),
        'email = "sam-at-acme"',
        "mailboxes[0].email: Enter a valid email address.",
    ),
    "a bounce that would not stop the sequence": (
        SEQUENCE.replace("default = true", "default = true\nstop_on_bounce = false"),
        "stop_on_bounce",
        "sequences[0].stop_on_bounce: a hard bounce always stops the sequence (the address is "
        "suppressed in the venture); remove stop_on_bounce",
    ),
    "a bad date": (
        MAILBOX + 'warmup_started_on = "next monday"\n',
        "warmup_started_on",
        "mailboxes[0].warmup_started_on: 'next monday' is not a date such as 2026-09-01",
    ),
}


def test_older_files_that_say_a_bounce_unsubscribe_or_complaint_stops_still_load(load):
    always = "stop_on_bounce = true\nstop_on_unsubscribe = true\nstop_on_complaint = true"
    load(BASE + SEQUENCE.replace("default = true", f"default = true\n{always}"))
    assert Sequence.objects.get(slug="main").stop_on_reply
    dumped = campaign_dump(campaign=Campaign.objects.get())
    assert "stop_on_reply" in dumped and "stop_on_bounce" not in dumped


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_bad_section_names_the_line_and_writes_nothing(load, case):
    section, marker, expected = BAD[case]
    text = BASE + section
    occurrence = 2 if case in ("two defaults", "a sequence listed twice") else 1
    with pytest.raises(CampaignCodeError) as refused:
        load(text)
    assert re.match(rf".*acme\.toml:{line_of(text, marker, occurrence)}: ", str(refused.value))
    assert f": {expected}" in str(refused.value)
    assert not Venture.objects.exists()
    assert not Sequence.objects.exists()


# --------------------------------------------------------------------------------------------
# Dumps and the documentation.


def test_the_dump_of_the_demo_loads_back_without_changes(load):
    campaign_load(path=DEMO_FILE, actor="cli:t")
    campaign = Campaign.objects.get(slug="northwind-pipeline-q3")
    dumped = campaign_dump(campaign=campaign)
    assert dumped.count("[[sequences.steps]]") == 6
    audit_rows = AuditEvent.objects.count()

    with CaptureQueriesContext(connection) as queries:
        result = load(dumped)

    assert not result.changed, result.as_dict()
    assert no_writes(queries)
    assert AuditEvent.objects.count() == audit_rows


def test_the_dump_of_every_key_loads_back_without_changes(load):
    load(FULL + ROUTING.replace("priority = 10", "priority = 20") + 'source_channels = ["api"]\n')
    Mailbox.objects.update(warmup_start_limit=5, warmup_started_on="2026-09-01")
    campaign = Campaign.objects.get(slug="acme-q3")
    dumped = campaign_dump(campaign=campaign)
    assert "warmup_started_on = 2026-09-01" in dumped

    result = load(dumped)

    assert not result.changed, result.as_dict()


def _documented(heading: str) -> str:
    doc = DOC.read_text(encoding="utf-8")
    return doc.split(f"\n### {heading}", 1)[1].split("\n### ", 1)[0]


@pytest.mark.parametrize(
    ("heading", "keys"),
    [
        ("[[mailboxes]]", [*MAILBOX_KEYS, *CONNECTION_KEYS]),
        ("[[sequences]]", list(SEQUENCE_KEYS)),
        ("[[sequences.steps]]", [*STEP_KEYS, "templates"]),
        ("[[routing]]", list(ROUTING_KEYS)),
    ],
)
def test_every_key_is_documented(heading, keys):
    section = _documented(f"`{heading}`")
    for key in keys:
        assert f"| `{key}` |" in section, f"{key} is not documented under {heading}"


def test_the_documented_outreach_example_loads(load, monkeypatch):
    monkeypatch.setenv("NORTHWIND_SMTP_URL", SMTP_URL)
    example = _documented("Outreach: a complete example").split("```toml\n", 1)[1]
    example = example.split("```", 1)[0]
    templates = "".join(
        f'\n[[templates]]\nslug = "{slug}"\nname = "{slug}"\nsubject = "Hi"\n'
        'body_text = "{{ venture.postal_address }} {{ unsubscribe_url }}"\n'
        for slug in ("opener-a", "opener-b", "linkedin-note", "call-script", "follow-up")
    )
    head = BASE.split("[[templates]]")[0].replace('slug = "dach"', 'slug = "dach-revops"')
    tomllib.loads(example)  # valid TOML on its own

    result = load(head + templates + example)

    assert result.sections["sequences"]["created"] == 2
    assert result.sections["routing"]["created"] == 2
    assert Mailbox.objects.get(from_email__startswith="lena").connection_url == SMTP_URL


# --------------------------------------------------------------------------------------------
# Raising a mailbox's limits while a running or paused campaign sends from it.

WARM_MAILBOX = MAILBOX + (
    "warmup_start_limit = 10\nwarmup_daily_increase = 5\nwarmup_started_on = 2026-12-01\n"
)


def running(load, status: str = "start") -> Campaign:
    load(BASE + WARM_MAILBOX + SEQUENCE)
    campaign = Campaign.objects.get(slug="acme-q3")
    campaign_transition(campaign=campaign, action="start", actor="t")
    if status == "pause":
        campaign_transition(campaign=campaign, action="pause", actor="t")
    return campaign


def write_file(tmp_path, text: str) -> Path:
    path = tmp_path / "acme.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("status", ["start", "pause"])
def test_raising_a_mailbox_cap_of_a_running_or_paused_campaign_is_refused_in_one_line(
    load, tmp_path, status
):
    running(load, status)
    events = AuditEvent.objects.count()
    raised = (BASE + WARM_MAILBOX + SEQUENCE).replace("daily_limit = 80", "daily_limit = 800")
    raised = raised.replace('subject = "Re: hi"', 'subject = "Re: hello"')  # and another change
    path = write_file(tmp_path, raised)

    with pytest.raises(CommandError) as err:
        call_command("campaign", "load", str(path))

    shown = "running" if status == "start" else "paused"
    assert str(err.value) == (
        f"{path}:{line_of(raised, 'daily_limit')}: mailboxes: the file raises the limits of"
        f" mailbox 'sam@mail.acme.example', which sends for {shown} campaign 'acme-q3':"
        " mailboxes[0].daily_limit 80 -> 800. Nothing was written: raising the limits of a"
        " mailbox a running or paused campaign sends from needs a confirmation and a reason:"
        ' load again with --confirm-raise --reason "why" to raise the limits of mailbox'
        " 'sam@mail.acme.example'."
    )
    assert "\n" not in str(err.value)
    assert Mailbox.objects.get().daily_limit == 80
    assert AuditEvent.objects.count() == events  # the template's change was not written either


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("warmup_started_on = 2026-12-01", "warmup_started_on = 2026-11-01",
         "mailboxes[0].warmup_started_on 2026-12-01 -> 2026-11-01"),
        ("warmup_start_limit = 10\n", "",
         "mailboxes[0].warmup_start_limit 10 -> none"),
        ("warmup_daily_increase = 5", "warmup_daily_increase = 50",
         "mailboxes[0].warmup_daily_increase 5 -> 50"),
        ("warmup_started_on = 2026-12-01\n", "",
         "mailboxes[0].warmup_started_on 2026-12-01 -> none"),
    ],
)  # fmt: skip
def test_loosening_a_mailbox_warm_up_of_a_running_campaign_is_a_raise(load, old, new, expected):
    running(load)
    with pytest.raises(LimitRaiseNotConfirmedError) as err:
        load((BASE + WARM_MAILBOX + SEQUENCE).replace(old, new))
    assert f": {expected}. Nothing was written" in str(err.value)
    box = Mailbox.objects.get()
    assert (box.warmup_start_limit, box.warmup_daily_increase) == (10, 5)


def test_lowering_a_mailbox_cap_or_raising_it_for_a_draft_needs_no_confirmation(load):
    load(BASE + WARM_MAILBOX + SEQUENCE)  # the campaign is a draft: it sends nothing
    load((BASE + WARM_MAILBOX + SEQUENCE).replace("daily_limit = 80", "daily_limit = 800"))
    assert Mailbox.objects.get().daily_limit == 800
    campaign = Campaign.objects.get(slug="acme-q3")
    campaign_transition(campaign=campaign, action="start", actor="t")
    load((BASE + WARM_MAILBOX + SEQUENCE).replace("daily_limit = 80", "daily_limit = 20"))
    assert Mailbox.objects.get().daily_limit == 20


def test_a_mailbox_another_running_campaign_sends_from_is_confirmed_for_it_too(load):
    """The mailbox is the venture's: a draft campaign's file raising it raises what another
    venture campaign that runs may send."""
    running(load)
    other = (BASE + WARM_MAILBOX + SEQUENCE).replace('slug = "acme-q3"', 'slug = "acme-q4"')
    with pytest.raises(LimitRaiseNotConfirmedError) as err:
        load(other.replace("daily_limit = 80", "daily_limit = 500"))
    assert "which sends for running campaign 'acme-q3'" in str(err.value)


def test_a_confirmed_mailbox_raise_loads_and_audits_the_reason(load, tmp_path, capsys):
    running(load)
    path = write_file(
        tmp_path, (BASE + WARM_MAILBOX + SEQUENCE).replace("daily_limit = 80", "daily_limit = 800")
    )
    call_command(
        "campaign", "--actor", "ann", "load", str(path), "--confirm-raise",
        "--reason", "New domain warmed up",
    )  # fmt: skip
    box = Mailbox.objects.get()
    assert box.daily_limit == 800
    event = AuditEvent.objects.for_entity(box).get(action="mailbox.update")
    assert (event.actor, event.reason) == ("cli:ann", "New domain warmed up")
    assert (event.before, event.after) == ({"daily_limit": 80}, {"daily_limit": 800})


def engine_pauses(box: Mailbox, campaign: Campaign, reason: str) -> None:
    """What `outreach.health.health_check` writes when a mailbox's figures trip."""
    from outreach.health import ACTOR, MAILBOX_AUTO_PAUSE
    from outreach.models import AutoPause
    from ventures.services import audit_record

    Mailbox.objects.filter(pk=box.pk).update(is_active=False)
    audit_record(actor=ACTOR, action=MAILBOX_AUTO_PAUSE, entity=box, before={"is_active": True},
                 after={"is_active": False}, reason=f"Auto-paused in {campaign.slug}: {reason}")  # fmt: skip
    AutoPause.objects.create(campaign=campaign, mailbox=box, reason=reason)


BOUNCING = "bounce rate 9.0% (9 of 100 sent since 2026-12-07 09:00 UTC) is above 5.0%"


@pytest.mark.parametrize("status", ["start", "pause"])
def test_a_file_switching_on_a_mailbox_the_engine_paused_is_refused_naming_the_capacity_it_adds(
    load, tmp_path, status
):
    campaign = running(load, status)
    box = Mailbox.objects.get()
    engine_pauses(box, campaign, BOUNCING)
    events = AuditEvent.objects.count()
    text = (BASE + WARM_MAILBOX + SEQUENCE).replace(
        "daily_limit = 80", "daily_limit = 80\nactive = true"
    )
    path = write_file(tmp_path, text)

    with pytest.raises(CommandError) as err:
        call_command("campaign", "load", str(path))

    shown = "running" if status == "start" else "paused"
    assert str(err.value) == (
        f"{path}:{line_of(text, 'active')}: mailboxes: the file re-activates mailbox"
        f" 'sam@mail.acme.example', paused by the engine ({BOUNCING}), which sends for {shown}"
        " campaign 'acme-q3': mailboxes[0].active paused -> active. Nothing was written:"
        " re-activating a paused mailbox a running or paused campaign sends from needs a"
        ' confirmation and a reason: load again with --confirm-raise --reason "why" to'
        " re-activate mailbox 'sam@mail.acme.example', which raises the sending capacity of"
        f" {shown} campaign 'acme-q3'."
    )
    box.refresh_from_db()
    assert box.is_active is False
    assert AuditEvent.objects.count() == events


def test_a_file_that_leaves_out_active_would_switch_the_mailbox_on_so_is_refused_too(load):
    """`active` defaults to true: a file written before the pause must not undo it."""
    campaign = running(load)
    engine_pauses(Mailbox.objects.get(), campaign, BOUNCING)
    with pytest.raises(LimitRaiseNotConfirmedError) as err:
        load(BASE + WARM_MAILBOX + SEQUENCE)
    assert "mailboxes[0].active paused -> active" in str(err.value)
    assert Mailbox.objects.get().is_active is False


def test_a_confirmed_re_activation_resumes_the_mailbox_as_the_admin_does(load, tmp_path):
    from outreach.selectors import mailboxes_auto_paused

    campaign = running(load)
    box = Mailbox.objects.get()
    engine_pauses(box, campaign, BOUNCING)
    assert [p.mailbox for p in mailboxes_auto_paused([campaign.pk])] == [box]
    path = write_file(tmp_path, BASE + WARM_MAILBOX + SEQUENCE)

    call_command("campaign", "--actor", "ann", "load", str(path), "--confirm-raise",
                 "--reason", "List cleaned, bounces removed")  # fmt: skip

    box.refresh_from_db()
    assert box.is_active is True
    event = AuditEvent.objects.for_entity(box).get(action="mailbox.resume")
    assert (event.actor, event.reason) == ("cli:ann", "List cleaned, bounces removed")
    assert event.before == {"is_active": False}
    assert event.after == {"is_active": True,
                           "auto_pause": {"campaign": "acme-q3", "reason": BOUNCING}}  # fmt: skip
    assert mailboxes_auto_paused([campaign.pk]) == []  # the engine's pause is closed
    assert not AuditEvent.objects.for_entity(box).filter(action="mailbox.update").exists()


def test_a_paused_mailbox_the_file_keeps_paused_or_that_sends_for_no_campaign_loads(load):
    campaign = running(load)
    engine_pauses(Mailbox.objects.get(), campaign, BOUNCING)
    paused = (BASE + WARM_MAILBOX + SEQUENCE).replace(
        "daily_limit = 80", "daily_limit = 80\nactive = false"
    )
    load(paused.replace("daily_limit = 80", "daily_limit = 20"))
    assert (Mailbox.objects.get().is_active, Mailbox.objects.get().daily_limit) == (False, 20)

    campaign_transition(campaign=campaign, action="stop", actor="t")
    result = load(BASE + WARM_MAILBOX + SEQUENCE)  # it sends for nothing: no confirmation
    box = Mailbox.objects.get()
    assert box.is_active is True
    assert result.sections["mailboxes"]["updated"] == 1
    assert AuditEvent.objects.for_entity(box).get(action="mailbox.resume").reason == (
        "campaign load acme.toml"
    )


@pytest.mark.parametrize(
    ("old", "new", "raised"),
    [
        ("daily_limit = 80", "daily_limit = 80\nmin_gap_seconds = 10", True),
        ("daily_limit = 80", "daily_limit = 80\nmin_gap_seconds = 600", False),
        ("daily_limit = 80", "daily_limit = 80\ngap_jitter_seconds = 0", False),
    ],
)
def test_a_shorter_minimum_gap_is_a_raise_the_jitter_only_adds_to_it(load, old, new, raised):
    running(load)
    text = (BASE + WARM_MAILBOX + SEQUENCE).replace(old, new)
    if not raised:
        load(text)
        return
    with pytest.raises(LimitRaiseNotConfirmedError) as err:
        load(text)
    assert f"{line_of(text, 'min_gap_seconds')}: mailboxes: the file raises the limits of" in str(
        err.value
    )
    assert ": mailboxes[0].min_gap_seconds 60 -> 10. Nothing was written" in str(err.value)
    assert Mailbox.objects.get().min_gap_seconds == 60


LENA = """
[[mailboxes]]
email = "lena@mail.acme.example"
name = "Lena - outbound"
daily_limit = 50
connection_url_env = "ACME_SMTP_URL"
"""


def test_a_mailbox_joining_a_running_campaigns_pool_is_a_raise_of_its_mailboxes_cap(load, tmp_path):
    load(BASE + MAILBOX + SEQUENCE)
    campaign = Campaign.objects.get(slug="acme-q3")
    campaign_transition(campaign=campaign, action="start", actor="t")
    text = BASE + MAILBOX + LENA + SEQUENCE
    path = write_file(tmp_path, text)

    with pytest.raises(CommandError) as err:
        call_command("campaign", "load", str(path))
    assert str(err.value) == (
        f"{path}:{line_of(text, '[[mailboxes]]', 2)}: mailboxes: the file adds mailbox"
        " 'lena@mail.acme.example' to the pool of running campaign 'acme-q3': mailboxes[1] in"
        " the pool: sends allowed today from its mailboxes 80 -> 130. Nothing was written:"
        " adding a mailbox to the pool of a running or paused campaign needs a confirmation"
        ' and a reason: load again with --confirm-raise --reason "why" to add mailbox'
        " 'lena@mail.acme.example' to the pool, which raises the sending capacity of running"
        " campaign 'acme-q3'."
    )
    assert Mailbox.objects.count() == 1

    call_command("campaign", "load", str(path), "--confirm-raise", "--reason", "More volume")
    assert sorted(campaign.mailboxes.values_list("from_email", flat=True)) == [
        "lena@mail.acme.example", "sam@mail.acme.example"]  # fmt: skip
    pool = AuditEvent.objects.for_entity(campaign).filter(action="campaign.mailboxes")
    assert pool.latest("id").reason == "More volume"


def test_swapping_a_pool_mailbox_for_one_that_allows_as_much_needs_no_confirmation(load):
    """Sam (80 a day) leaves the running campaign's pool as Lena (80 a day) joins: the pool
    allows 80 sends today before and after, so nothing is raised."""
    load(BASE + MAILBOX + SEQUENCE)
    campaign = Campaign.objects.get(slug="acme-q3")
    campaign_transition(campaign=campaign, action="start", actor="t")
    lena_as_much = LENA.replace("daily_limit = 50", "daily_limit = 80")

    result = load(BASE + lena_as_much + SEQUENCE)

    assert list(campaign.mailboxes.values_list("from_email", flat=True)) == [
        "lena@mail.acme.example"
    ]
    assert (result.sections["mailboxes"]["created"], result.sections["mailboxes"]["removed"]) == (
        1,
        1,
    )
    pool = AuditEvent.objects.for_entity(campaign).filter(action="campaign.mailboxes").latest("id")
    assert (pool.before, pool.after, pool.reason) == (
        {"mailboxes": ["sam@mail.acme.example"]},
        {"mailboxes": ["lena@mail.acme.example"]},
        "campaign load acme.toml",  # a plain load's change, no confirmed raise
    )


def test_swapping_a_pool_mailbox_for_one_that_allows_more_is_a_raise_of_the_pool(load):
    """Sam (80) out, Lena (100) in, with Sam listed after her: the pool goes 80 -> 100."""
    load(BASE + MAILBOX + SEQUENCE)
    campaign = Campaign.objects.get(slug="acme-q3")
    campaign_transition(campaign=campaign, action="start", actor="t")
    lena_more = LENA.replace("daily_limit = 50", "daily_limit = 100")

    with pytest.raises(LimitRaiseNotConfirmedError) as err:
        load(BASE + lena_more + SEQUENCE)

    assert (
        ": mailboxes[0] in the pool: sends allowed today from its mailboxes 80 -> 100. Nothing"
        " was written" in str(err.value)
    )
    assert list(campaign.mailboxes.values_list("from_email", flat=True)) == [
        "sam@mail.acme.example"
    ]
    assert not Mailbox.objects.filter(from_email="lena@mail.acme.example").exists()


def test_joining_an_empty_pool_or_a_draft_campaign_or_while_paused_needs_no_confirmation(load):
    load(BASE + SEQUENCE)  # no pool: the campaign sends from its own sender
    campaign = Campaign.objects.get(slug="acme-q3")
    campaign_transition(campaign=campaign, action="start", actor="t")
    load(BASE + MAILBOX + SEQUENCE)  # a first mailbox only adds a cap
    paused_lena = LENA.replace("daily_limit = 50", "daily_limit = 50\nactive = false")
    load(BASE + MAILBOX + paused_lena + SEQUENCE)  # a paused mailbox adds nothing today
    assert campaign.mailboxes.count() == 2
