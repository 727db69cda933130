"""Templates on the database: validation on save, versions, render logs and their retention."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.utils import timezone

from outreach.context import lead_recipient
from templating.models import (
    MessageTemplate,
    MessageTemplateVersion,
    RenderLog,
    RenderOutcome,
    VersionImmutableError,
)
from templating.services import (
    render_logs_erase_subject,
    render_logs_purge,
    template_current_version,
    template_record_use,
    template_save,
    version_render,
)
from templating.tasks import purge_render_logs
from tests.factories import CampaignFactory, LeadFactory, MessageTemplateFactory
from ventures.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_new_template_has_version_one_with_its_content(campaign):
    template = MessageTemplateFactory(campaign=campaign, subject="Hi {{ first_name }}")
    version = template_current_version(template)
    assert version.number == 1
    assert version.subject == "Hi {{ first_name }}"
    assert version.content_hash == template.content_hash()
    assert template.versions.count() == 1


def test_changing_the_content_creates_a_new_version_and_keeps_the_old(campaign):
    template = MessageTemplateFactory(campaign=campaign, subject="First {{ first_name }}")
    template.subject = "Second {{ first_name }}"
    template_save(template=template, actor="ann")
    versions = list(template.versions.order_by("number"))
    assert [(v.number, v.subject) for v in versions] == [
        (1, "First {{ first_name }}"),
        (2, "Second {{ first_name }}"),
    ]
    assert versions[1].created_by == "ann"
    assert template_current_version(template) == versions[1]


def test_saving_without_a_content_change_adds_no_version(campaign):
    template = MessageTemplateFactory(campaign=campaign)
    template.is_active = False
    template_save(template=template, actor="ann")
    assert template.versions.count() == 1


def test_a_change_saved_outside_the_service_is_versioned_before_use(campaign):
    template = MessageTemplateFactory(campaign=campaign)
    MessageTemplate.objects.filter(pk=template.pk).update(body_text="Changed {{ unsubscribe_url }}")
    version = template_current_version(template)
    assert version.number == 2
    assert version.body_text == "Changed {{ unsubscribe_url }}"


def test_versions_are_immutable(campaign):
    version = template_current_version(MessageTemplateFactory(campaign=campaign))
    version.subject = "tampered"
    with pytest.raises(VersionImmutableError):
        version.save()
    with pytest.raises(VersionImmutableError):
        MessageTemplateVersion.objects.filter(pk=version.pk).update(subject="tampered")
    with pytest.raises(VersionImmutableError):
        version.delete()
    version.refresh_from_db()
    assert version.subject != "tampered"


def test_template_changes_are_audited(campaign):
    template = MessageTemplateFactory(campaign=campaign, name="Opener")
    template.name = "Opener v2"
    template_save(template=template, actor="ann")
    actions = list(AuditEvent.objects.for_entity(template).values_list("action", "actor"))
    assert actions == [("template.update", "ann"), ("template.create", "tests")]


def test_required_variables_are_stored(campaign):
    template = MessageTemplateFactory(
        campaign=campaign,
        subject="Hi {{ first_name }}",
        body_text="{{ icebreaker }} {{ unsubscribe_url }}",
    )
    template.refresh_from_db()
    assert template.required_variables == ["first_name", "icebreaker", "unsubscribe_url"]
    assert template_current_version(template).required_variables == template.required_variables


def test_syntax_error_is_refused_on_save_with_its_line(campaign):
    template = MessageTemplate(
        venture=campaign.venture,
        campaign=campaign,
        name="Broken",
        slug="broken",
        subject="Hi",
        body_text="Hello\n\n{% if first_name %}\nno end",
    )
    with pytest.raises(ValidationError) as exc:
        template_save(template=template, actor="ann")
    assert exc.value.message_dict["body_text"][0].startswith("Line 4:")
    assert not MessageTemplate.objects.filter(slug="broken").exists()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{{ first_name|center(100) }}", "filter 'center' is not allowed"),
        ("{{ campaign.delete }}", "unknown attribute campaign.delete"),
        ("{{ venture.owner_email }}", "unknown attribute venture.owner_email"),
        ("{{ lead.password }}", "unknown attribute lead.password"),
        ("{{ first_name.__class__ }}", "not allowed (private name)"),
    ],
)
def test_unknown_filters_and_attributes_are_refused_on_save(campaign, body, expected):
    template = MessageTemplate(
        venture=campaign.venture,
        campaign=campaign,
        name="T",
        slug="t",
        subject="Hi",
        body_text=body,
    )
    with pytest.raises(ValidationError) as exc:
        template.full_clean()
    assert expected in exc.value.message_dict["body_text"][0]


def test_custom_fields_and_string_methods_are_accepted_on_save(campaign):
    template = MessageTemplate(
        venture=campaign.venture,
        campaign=campaign,
        name="T",
        slug="t",
        subject="{{ first_name.title() }}",
        body_text="{{ icebreaker }} {{ custom.intent_signal }} {{ lead.custom.anything }}",
    )
    template.full_clean()


def test_email_needs_a_subject_and_a_body(campaign):
    template = MessageTemplate(venture=campaign.venture, campaign=campaign, name="T", slug="t")
    with pytest.raises(ValidationError) as exc:
        template.full_clean()
    assert set(exc.value.message_dict) >= {"subject", "body_text"}


def test_campaign_of_another_venture_is_refused(campaign, other_venture_campaign):
    template = MessageTemplate(
        venture=campaign.venture,
        campaign=other_venture_campaign,
        name="T",
        slug="t",
        subject="Hi",
        body_text="Hi",
    )
    with pytest.raises(ValidationError) as exc:
        template.full_clean()
    assert "another venture" in exc.value.message_dict["campaign"][0]


def test_slugs_are_unique_within_a_scope(campaign):
    MessageTemplateFactory(campaign=campaign, slug="opener")
    MessageTemplateFactory(campaign=CampaignFactory(venture=campaign.venture), slug="opener")
    with pytest.raises(ValidationError):
        MessageTemplateFactory(campaign=campaign, slug="opener")


def test_record_use_counts_and_stamps(campaign):
    template = MessageTemplateFactory(campaign=campaign)
    at = timezone.now()
    template_record_use(template=template, at=at)
    template_record_use(template=template, at=at)
    template.refresh_from_db()
    assert template.usage_count == 2
    assert template.last_used_at == at


def _log_one(campaign, lead=None):
    template = MessageTemplateFactory(campaign=campaign)
    lead = lead or LeadFactory(campaign=campaign)
    return version_render(
        version=template_current_version(template),
        recipient=lead_recipient(lead=lead, campaign=campaign),
        venture=campaign.venture,
        live=False,
    )


def test_each_render_is_logged_with_outcome_and_reasons(campaign):
    lead = LeadFactory(campaign=campaign, first_name="[First Name]")
    _log_one(campaign, lead)
    log = RenderLog.objects.get()
    assert log.subject_ref == f"lead:{lead.pk}"
    assert log.outcome == RenderOutcome.BLOCKED
    assert {r["code"] for r in log.reasons} == {"bracket_token"}


def test_render_errors_are_logged_as_errors(campaign):
    template = MessageTemplateFactory(campaign=campaign, body_text="{{ icebreaker }}")
    lead = LeadFactory(campaign=campaign)
    version_render(
        version=template_current_version(template),
        recipient=lead_recipient(lead=lead, campaign=campaign),
        venture=campaign.venture,
        live=False,
    )
    log = RenderLog.objects.get()
    assert log.outcome == RenderOutcome.ERROR
    assert log.reasons[0]["code"] == "undefined_variable"


def test_purge_keeps_logs_younger_than_the_retention(campaign, settings):
    settings.AICMO_RENDER_LOG_RETENTION_DAYS = 30
    with time_machine.travel(timezone.now() - dt.timedelta(days=31)):
        _log_one(campaign)
    _log_one(campaign)
    assert render_logs_purge() == 1
    assert RenderLog.objects.count() == 1


def test_purge_task_uses_the_default_retention(campaign):
    with time_machine.travel(timezone.now() - dt.timedelta(days=91)):
        _log_one(campaign)
    assert purge_render_logs() == 1
    assert not RenderLog.objects.exists()


def test_bad_retention_setting_is_a_clear_configuration_error(settings):
    settings.AICMO_RENDER_LOG_RETENTION_DAYS = "soon"
    with pytest.raises(ImproperlyConfigured, match="AICMO_RENDER_LOG_RETENTION_DAYS"):
        render_logs_purge()


def test_erasing_a_subject_deletes_its_render_logs(campaign):
    lead = LeadFactory(campaign=campaign)
    _log_one(campaign, lead)
    _log_one(campaign)
    assert render_logs_erase_subject(subject_refs=[f"lead:{lead.pk}"]) == 1
    assert not RenderLog.objects.filter(subject_ref=f"lead:{lead.pk}").exists()
    assert RenderLog.objects.count() == 1


def test_gdpr_erasure_of_a_lead_deletes_its_render_logs(campaign):
    from leads.services.privacy import lead_erase

    lead = LeadFactory(campaign=campaign, email="forget.me@prospect.example")
    _log_one(campaign, lead)
    _log_one(campaign)
    lead_erase(email="forget.me@prospect.example", actor="dpo")
    assert not RenderLog.objects.filter(subject_ref=f"lead:{lead.pk}").exists()
    assert RenderLog.objects.count() == 1


def test_the_daily_purge_is_scheduled_after_migrate():
    from django_q.models import Schedule

    from templating.signals import PURGE_SCHEDULE

    schedule = Schedule.objects.get(name=PURGE_SCHEDULE)
    assert (schedule.func, schedule.schedule_type) == ("templating.tasks.purge_render_logs", "D")
