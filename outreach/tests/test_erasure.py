"""Erasing a person (`leads.services.privacy.lead_erase`) reaches the outbox: what was written
to them leaves the emails' rows and the proof-mode .eml files, while every count stays."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from django.db import transaction

from leads.services.privacy import lead_erase
from outreach.models import DispatchDecision, OutboundMessage
from outreach.tally import tally, tally_drift
from outreach.tests.outbox import first_emails_sent

pytestmark = pytest.mark.django_db(transaction=True)  # the files go when the erasure commits


def eml_of(message: OutboundMessage) -> Path:
    (path,) = Path(message.run.artifact_dir).glob(f"eml/{message.idempotency_key}.eml")
    return path


def test_erasure_blanks_the_persons_emails_and_deletes_their_eml_files(settings, tmp_path):
    settings.AICMO_ARTIFACT_DIR = tmp_path
    gone, kept = first_emails_sent(2)
    gone_file, kept_file = eml_of(gone), eml_of(kept)
    address = gone.recipient
    assert address in gone_file.read_text()
    DispatchDecision.objects.filter(message=gone).update(reason=f"550 5.1.1 <{address}> unknown")
    decisions = Path(gone.run.artifact_dir) / "decisions.csv"
    with decisions.open("a", newline="") as out:  # as if the run had written that reason
        csv.writer(out).writerow([gone.pk, gone.lead_id, "failed", "bounced", f"<{address}>"])
    kept_rows = [row for row in csv.reader(decisions.open()) if row[1] == str(kept.lead_id)]
    counts = sorted(tally(gone.campaign_id))

    lead_erase(email=address, actor="dpo", reason="ticket 7")

    gone.refresh_from_db()
    assert (gone.recipient, gone.subject, gone.body_text, gone.body_html, gone.reason) == (
        "", "", "", "", ""
    )  # fmt: skip
    assert gone.state == "sent" and gone.message_id  # the record of the send stays
    assert not gone_file.exists()
    assert not DispatchDecision.objects.filter(reason__contains=address).exists()
    rows = list(csv.reader(decisions.open()))
    assert address not in decisions.read_text()
    assert [r[4] for r in rows if r[1] == str(gone.lead_id)] == ["", ""]  # the send, the bounce
    assert [r for r in rows if r[1] == str(kept.lead_id)] == kept_rows
    assert not OutboundMessage.objects.filter(body_text__contains=address).exists()
    kept.refresh_from_db()
    assert kept.recipient and kept.body_text and kept_file.exists()
    assert sorted(tally(gone.campaign_id)) == counts
    assert tally_drift(gone.campaign_id) == []


def test_an_erasure_rolled_back_keeps_the_eml_files(settings, tmp_path):
    settings.AICMO_ARTIFACT_DIR = tmp_path
    (message,) = first_emails_sent(1)
    path = eml_of(message)
    with pytest.raises(RuntimeError), transaction.atomic():
        lead_erase(email=message.recipient, actor="dpo")
        raise RuntimeError("a later step of the caller failed")
    assert path.exists()
    message.refresh_from_db()
    assert message.recipient
