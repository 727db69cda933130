"""`manage.py demo` runs the whole product end to end, and a second run changes nothing."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from leads.models import Lead
from ventures.models import AuditEvent, Campaign


def demo() -> dict:
    out = StringIO()
    call_command("demo", "--json", stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.django_db
def test_demo_runs_the_campaign_end_to_end_and_is_idempotent(settings):
    first = demo()

    campaign = Campaign.objects.get(slug=first["campaign"]["slug"])
    assert campaign.status == "running"
    assert campaign.mode == "proof"
    assert first["import"]["counts"]["created"] == 51  # the Apollo sample's unique valid emails
    assert first["leads"]["active"] == 51
    assert first["templates"]["blocked"] == []
    for path in first["previews"]:
        text = Path(path).read_text(encoding="utf-8")
        assert text.startswith("Subject: ")
        assert "{{" not in text
        assert "Unsubscribe" in text or "linkedin" in path  # the LinkedIn note is no email

    audit_rows = AuditEvent.objects.count()
    second = demo()

    assert second["loaded"]["changed"] is False
    assert second["import"]["counts"]["created"] == 0
    assert Lead.objects.filter(campaign=campaign).count() == 51
    # A re-run records the (forced) import batch, but changes no configuration.
    assert not AuditEvent.objects.filter(pk__gt=audit_rows, action__endswith=".update").exists()
