"""The demo's lead import."""

from __future__ import annotations

from pathlib import Path

from leads.models import Lead
from leads.services.imports import leads_demo_import


def test_demo_import_loads_the_apollo_sample_and_is_repeatable(campaign, sample_dir):
    first = leads_demo_import(campaign=campaign)
    second = leads_demo_import(campaign=campaign)

    assert first.counts["created"] == 51 and first.file_name == "apollo_export_sample.csv"
    assert second.counts["created"] == 0 and second.counts["duplicates_in_campaign"] == 51
    assert Lead.objects.filter(campaign=campaign).count() == 51


def test_demo_import_generates_a_list_without_the_shared_samples(campaign, settings, tmp_path):
    settings.BASE_DIR = Path(tmp_path) / "repo"

    outcome = leads_demo_import(campaign=campaign)

    assert outcome.counts["created"] == 60
    assert Lead.objects.filter(campaign=campaign).count() == 60
