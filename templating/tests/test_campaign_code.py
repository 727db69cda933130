"""`[[templates]]` in campaign TOML files: load (validated, versioned, audited, idempotent),
line-accurate errors that write nothing, and dump round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from templating.models import MessageTemplate
from templating.services import campaign_templates_check
from templating.tests.campaign_files import BASE, OPENER
from tests.factories import LeadFactory
from ventures.campaign_code import CampaignCodeError, campaign_dump, campaign_load
from ventures.models import AuditEvent, Campaign, Venture

pytestmark = pytest.mark.django_db

DEMO_FILE = Path(settings.BASE_DIR) / "docs" / "examples" / "demo-campaign.toml"


@pytest.fixture
def write(tmp_path):
    def write(text: str) -> Path:
        path = tmp_path / "campaign.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def test_demo_file_creates_its_templates_versioned_and_audited():
    result = campaign_load(path=DEMO_FILE, actor="cli:ann")
    assert result.sections["templates"] == {"created": 4, "updated": 0, "unchanged": 0}
    campaign = Campaign.objects.get(slug="northwind-pipeline-q3")
    templates = {t.slug: t for t in MessageTemplate.objects.all()}
    assert set(templates) == {
        "opener-manual-reporting",
        "opener-social-proof",
        "follow-up",
        "linkedin-connect-note",
    }
    assert templates["opener-manual-reporting"].campaign == campaign
    assert templates["follow-up"].campaign is None
    assert templates["follow-up"].venture == campaign.venture
    assert all(t.versions.count() == 1 for t in templates.values())
    creates = AuditEvent.objects.filter(action="template.create")
    assert creates.count() == 4
    assert set(creates.values_list("actor", "reason")) == {("cli:ann", "campaign load")}


def test_demo_templates_render_for_the_demo_leads_without_a_block():
    campaign_load(path=DEMO_FILE, actor="cli:ann")
    campaign = Campaign.objects.get(slug="northwind-pipeline-q3")
    LeadFactory(campaign=campaign, first_name="Lena", company="Prospect GmbH")
    LeadFactory(campaign=campaign, first_name="", company="", custom_fields={"Icebreaker": "Hi!"})
    campaign.mode = "live"  # the demo's email templates are compliant even for live email
    campaign.save(update_fields=["mode"])
    check = campaign_templates_check(campaign=campaign)
    assert check.renders == 8
    # The LinkedIn note is the text of a manual task, not an email: it has no unsubscribe link
    # or postal address, which the live e-mail rules require of every template.
    blocked = {(row.template.slug, r.code) for row in check.blocked for r in row.reasons}
    assert blocked == {
        ("linkedin-connect-note", "missing_unsubscribe"),
        ("linkedin-connect-note", "missing_postal_address"),
    }
    example = check.examples["opener-manual-reporting"]
    assert example.subject == "Prospect GmbH's Monday pipeline report"
    assert "Torstrasse 109" in example.text and "/u/" in example.text
    assert "Unsubscribe (http" in check.examples["opener-social-proof"].text


def test_loading_the_same_templates_again_changes_nothing(write):
    path = write(BASE + OPENER)
    campaign_load(path=path, actor="cli:t")
    audit_rows = AuditEvent.objects.count()
    result = campaign_load(path=path, actor="cli:t")
    assert result.sections["templates"] == {"created": 0, "updated": 0, "unchanged": 1}
    assert not result.changed
    assert AuditEvent.objects.count() == audit_rows
    assert MessageTemplate.objects.get().versions.count() == 1


def test_a_changed_template_is_updated_with_a_new_version(write):
    campaign_load(path=write(BASE + OPENER), actor="cli:t")
    result = campaign_load(
        path=write(BASE + OPENER.replace("Hello", "Good morning")), actor="cli:t"
    )
    assert result.sections["templates"] == {"created": 0, "updated": 1, "unchanged": 0}
    template = MessageTemplate.objects.get()
    assert template.body_text.startswith("Good morning")
    assert list(template.versions.values_list("number", flat=True)) == [2, 1]


def test_a_template_syntax_error_names_the_file_line_and_writes_nothing(write):
    text = BASE + OPENER.replace(
        "Hello {{ first_name | default('there') }},", "Hello {{ first_name }"
    )
    path = write(text)
    with pytest.raises(CampaignCodeError) as exc:
        campaign_load(path=path, actor="cli:t")
    line = next(n for n, row in enumerate(text.splitlines(), 1) if row.startswith("body_text"))
    assert str(exc.value).startswith(
        f"{path}:{line}: templates[0].body_text: Line 1: unexpected '}}'"
    )
    assert not Venture.objects.exists()
    assert not MessageTemplate.objects.exists()


@pytest.mark.parametrize(
    ("extra", "key", "expected"),
    [
        (
            'subjct = "x"\n',
            "subjct",
            "unknown key 'subjct' in [[templates]]; did you mean 'subject'?",
        ),
        ('scope = "global"\n', "scope", 'must be "campaign" or "venture"'),
        ('active = "yes"\n', "active", "must be true or false"),
        ('channel = "fax"\n', "channel", "is not a valid choice"),
    ],
)
def test_bad_template_keys_are_refused_with_their_line(write, extra, key, expected):
    text = BASE + OPENER.replace('variant_label = "A"\n', f'variant_label = "A"\n{extra}')
    with pytest.raises(CampaignCodeError) as exc:
        campaign_load(path=write(text), actor="cli:t")
    line = next(n for n, row in enumerate(text.splitlines(), 1) if row.startswith(key))
    assert f":{line}: templates[0].{key}: " in str(exc.value)
    assert expected in str(exc.value)
    assert not MessageTemplate.objects.exists()


def test_unknown_attribute_and_duplicate_slug_are_refused(write):
    bad = OPENER.replace("{{ unsubscribe_url }}", "{{ venture.secret }}")
    with pytest.raises(CampaignCodeError, match=r"unknown attribute venture\.secret"):
        campaign_load(path=write(BASE + bad), actor="cli:t")
    with pytest.raises(CampaignCodeError, match="'opener' is listed twice in the campaign scope"):
        campaign_load(path=write(BASE + OPENER + OPENER), actor="cli:t")


def test_missing_required_key_is_refused(write):
    with pytest.raises(CampaignCodeError, match=r"templates\[0\]\.name: name is required"):
        campaign_load(path=write(BASE + OPENER.replace('name = "Opener"\n', "")), actor="cli:t")


def test_templates_not_in_the_file_are_left_alone(write):
    campaign_load(path=write(BASE + OPENER), actor="cli:t")
    campaign_load(path=write(BASE), actor="cli:t")
    assert MessageTemplate.objects.filter(slug="opener").exists()


def test_dump_of_the_demo_loads_back_without_changes(write):
    campaign_load(path=DEMO_FILE, actor="cli:t")
    campaign = Campaign.objects.get(slug="northwind-pipeline-q3")
    dumped = campaign_dump(campaign=campaign)
    assert dumped.count("[[templates]]") == 4
    result = campaign_load(path=write(dumped), actor="cli:t")
    assert result.sections["templates"] == {"created": 0, "updated": 0, "unchanged": 4}
    assert not result.changed
