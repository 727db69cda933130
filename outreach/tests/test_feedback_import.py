"""`feedback import FILE`: event exports as CSV, checked whole, each row stored once."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from leads.models import LeadStatus, SuppressionEntry
from outreach.models import Enrollment, FeedbackEvent
from outreach.tests.outbox import first_emails_sent

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent():
    return first_emails_sent(3, esp_id="esp-{n}")


def test_an_export_is_stored_row_by_row_and_its_effects_applied(tmp_path, sent, capsys):
    text = (
        "Type,Email,MessageID,BouncedAt,Description\n"
        f"HardBounce,{sent[0].recipient},esp-0,2026-12-02T12:00:00Z,550 5.1.1 user unknown\n"
        f"Delivery,{sent[1].recipient},esp-1,2026-12-02 12:01:00,250 OK\n"
        f"spam complaint,{sent[2].recipient},esp-2,2026-12-02T12:02:00+01:00,\n"
        "bounce,stranger@elsewhere.example,,2026-12-02T12:03:00Z,not ours\n"
    )
    call_command("feedback", "import", str(_write(tmp_path, text)), "--json")
    result = json.loads(capsys.readouterr().out)
    assert result == {"rows": 4, "stored": 4, "repeated": 0, "unmatched": 1,
                      "by_kind": {"bounced": 2, "delivered": 1, "complained": 1}}  # fmt: skip
    assert sent[0].lead.__class__.objects.get(pk=sent[0].lead_id).status == LeadStatus.BOUNCED
    assert SuppressionEntry.objects.filter(source="complaint").count() == 1
    assert Enrollment.objects.get(lead_id=sent[2].lead_id).state == "stopped"
    event = FeedbackEvent.objects.get(kind="complained")
    assert event.occurred_at.isoformat() == "2026-12-02T11:02:00+00:00"


def test_importing_the_same_file_again_stores_nothing_new(tmp_path, sent, capsys):
    text = f"event,recipient,message_id\nopened,{sent[0].recipient},esp-0\n"
    path = _write(tmp_path, text)
    call_command("feedback", "import", str(path))
    call_command("feedback", "import", str(path))
    assert "0 new events (none new), 1 imported before" in capsys.readouterr().out
    assert FeedbackEvent.objects.count() == 1


def test_a_bad_row_stops_the_import_and_names_its_line(tmp_path, sent):
    text = f"event,email\nbounced,{sent[0].recipient}\nexploded,{sent[1].recipient}\n"
    with pytest.raises(CommandError) as raised:
        call_command("feedback", "import", str(_write(tmp_path, text)))
    assert "nothing imported" in str(raised.value) and "line 3: unknown event 'exploded'" in str(
        raised.value
    )
    assert not FeedbackEvent.objects.exists()  # not even the good first row
    assert not SuppressionEntry.objects.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"name,company\nAda,Acme\n", "needs an event column"),
        (b"\xff\xfeevent,email\n", "not UTF-8"),
        (b"event,email,date\nbounced,a@b.example,yesterday\n", "'yesterday' is not a date"),
    ],
)
def test_a_file_that_is_not_an_event_export_is_refused_in_one_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(CommandError, match=message):
        call_command("feedback", "import", str(path))
    assert not FeedbackEvent.objects.exists()


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        call_command("feedback", "import", str(tmp_path / "nope.csv"))


def _write(tmp_path, text: str):
    path = tmp_path / "events.csv"
    path.write_text(text, encoding="utf-8")
    return path
