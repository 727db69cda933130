"""The template console: validated edits, live preview, send me a test, campaign check, scoping."""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse

from templating.models import MessageTemplate, RenderLog, RenderPurpose
from templating.services import (
    TEST_EMAIL_LIMIT,
    template_current_version,
    template_running_checks,
)
from templating.tests.template_forms import form_data
from tests.factories import (
    CampaignFactory,
    LeadFactory,
    MembershipFactory,
    MessageTemplateFactory,
    UserFactory,
    VentureFactory,
)
from tests.http import text as page
from ventures.models import AuditEvent, CampaignStatus, SendMode
from ventures.roles import OPERATOR

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]


@pytest.fixture
def template(campaign):
    return MessageTemplateFactory(
        campaign=campaign,
        name="Opener",
        subject="Quick question, {{ first_name | default('there') }}",
        body_text=(
            "Hi {{ first_name }}, {{ icebreaker | default('hello') }}\n\n"
            "{{ venture.postal_address }}\nUnsubscribe: {{ unsubscribe_url }}\n"
        ),
    )


def url(name, *args):
    return reverse(f"admin:templating_messagetemplate_{name}", args=args)


# --- Editing ----------------------------------------------------------------------------------
def test_admin_form_shows_a_syntax_error_with_its_line(op_client, campaign):
    body = "Hello\nthere\n{{ first_name }"
    response = op_client.post(url("add"), form_data(campaign, body_text=body))
    assert response.status_code == 200
    assert "Line 3: unexpected '}'" in page(response)
    assert not MessageTemplate.objects.exists()


def test_admin_form_refuses_an_unknown_filter(op_client, campaign):
    response = op_client.post(url("add"), form_data(campaign, subject="{{ first_name|center(9) }}"))
    assert "filter 'center' is not allowed" in page(response)
    assert not MessageTemplate.objects.exists()


def test_admin_save_creates_a_version_each_change_and_audits(op_client, campaign, operator):
    response = op_client.post(url("add"), form_data(campaign))
    assert response.status_code == 302
    template = MessageTemplate.objects.get()
    op_client.post(url("change", template.pk), form_data(campaign, subject="Hey {{ first_name }}"))
    template.refresh_from_db()
    assert template.subject == "Hey {{ first_name }}"
    assert list(template.versions.values_list("number", "subject")) == [
        (2, "Hey {{ first_name }}"),
        (1, "Hi {{ first_name }}"),
    ]
    assert AuditEvent.objects.for_entity(template).filter(actor=operator.username).count() == 2


def test_operator_cannot_put_a_template_in_another_ventures_campaign(
    op_client, campaign, other_venture_campaign
):
    data = form_data(other_venture_campaign)
    response = op_client.post(url("add"), data)
    assert response.status_code == 200
    assert not MessageTemplate.objects.exists()


# --- Preview ----------------------------------------------------------------------------------
def test_preview_renders_a_lead_of_the_campaign(op_client, template, campaign):
    lead = LeadFactory(
        campaign=campaign, first_name="Lena", custom_fields={"icebreaker": "Nice post"}
    )
    response = op_client.get(
        url("preview", template.pk), {"campaign": campaign.pk, "recipient": f"lead:{lead.pk}"}
    )
    assert response.status_code == 200
    text = page(response)
    assert "Quick question, Lena" in text
    assert "Hi Lena, Nice post" in text
    assert "Ready to send" in text
    log = RenderLog.objects.get()
    assert (log.subject_ref, log.purpose) == (f"lead:{lead.pk}", RenderPurpose.PREVIEW)


def test_preview_defaults_to_the_sample_lead(op_client, template):
    response = op_client.get(url("preview", template.pk))
    assert response.status_code == 200
    assert "Quick question, Alex" in page(response)


def test_preview_highlights_every_blocking_reason(op_client, template, campaign):
    lead = LeadFactory(campaign=campaign, first_name="[First Name]")
    response = op_client.get(
        url("preview", template.pk), {"campaign": campaign.pk, "recipient": f"lead:{lead.pk}"}
    )
    content = response.content.decode()
    assert "Blocked: this message would not be sent." in content
    assert content.count('<mark class="aicmo-reason" title="bracket_token:') == 2  # subject + text
    assert 'data-code="bracket_token"' in content


def test_preview_escapes_lead_data_and_sandboxes_html(op_client, campaign):
    template = MessageTemplateFactory(
        campaign=campaign,
        body_text="",
        body_html="<p>Hi {{ first_name }}</p><p>{{ venture.postal_address }}</p><a href='{{ unsubscribe_url }}'>Unsubscribe</a>",
    )
    lead = LeadFactory(campaign=campaign, first_name="<script>alert(1)</script>")
    response = op_client.get(
        url("preview", template.pk), {"campaign": campaign.pk, "recipient": f"lead:{lead.pk}"}
    )
    content = response.content.decode()
    assert "<script>alert(1)</script>" not in content
    assert 'sandbox=""' in content
    assert "(made from the HTML)" in content


def test_preview_shows_compliance_items_as_live_only_in_proof_mode(op_client, campaign):
    template = MessageTemplateFactory(
        campaign=campaign, body_text="Hi {{ first_name | default('x') }}"
    )
    response = op_client.get(
        url("preview", template.pk), {"campaign": campaign.pk, "recipient": "sample"}
    )
    text = page(response)
    assert "Ready to send" in text
    assert "blocks live email only" in text

    campaign.mode = SendMode.LIVE
    campaign.save(update_fields=["mode"])
    response = op_client.get(
        url("preview", template.pk), {"campaign": campaign.pk, "recipient": "sample"}
    )
    assert "Blocked: this message would not be sent." in page(response)
    assert 'data-code="missing_unsubscribe"' in response.content.decode()


def test_preview_of_another_ventures_template_is_404(op_client, other_venture_campaign):
    template = MessageTemplateFactory(campaign=other_venture_campaign)
    assert op_client.get(url("preview", template.pk)).status_code == 404


def _offered(response) -> list[str]:
    return [value for value, _ in response.context["form"].fields["recipient"].widget.choices]


def test_preview_finds_any_lead_of_a_big_campaign_by_the_start_of_its_address(
    op_client, template, campaign, monkeypatch
):
    monkeypatch.setattr("templating.admin.RECIPIENT_CHOICES_LIMIT", 2)
    first, second = LeadFactory(campaign=campaign), LeadFactory(campaign=campaign)
    late = LeadFactory(
        campaign=campaign,
        email="Zed.Late@example.com",
        email_key="zed.late@example.com",
        first_name="Zed",
    )
    preview = url("preview", template.pk)

    listed = _offered(op_client.get(preview, {"campaign": campaign.pk}))
    assert listed == ["sample", f"lead:{first.pk}", f"lead:{second.pk}"]  # the first two by id

    found = op_client.get(preview, {"campaign": campaign.pk, "find": " ZED.l "})
    assert _offered(found) == ["sample", f"lead:{late.pk}"]
    assert "whose address starts with" in page(found)

    shown = op_client.get(preview, {"campaign": campaign.pk, "recipient": f"lead:{late.pk}"})
    assert "Quick question, Zed" in page(shown)
    assert f"lead:{late.pk}" in _offered(shown)  # the lead shown stays in the list


def test_finding_a_lead_for_the_preview_stays_inside_the_campaign(
    op_client, template, campaign, other_venture_campaign
):
    LeadFactory(
        campaign=other_venture_campaign, email="zed@example.com", email_key="zed@example.com"
    )
    found = op_client.get(url("preview", template.pk), {"campaign": campaign.pk, "find": "zed"})
    assert _offered(found) == ["sample"]


def test_preview_cannot_read_a_lead_of_another_campaign(
    op_client, template, campaign, other_venture_campaign
):
    foreign = LeadFactory(campaign=other_venture_campaign, first_name="Secret")
    response = op_client.get(
        url("preview", template.pk), {"campaign": campaign.pk, "recipient": f"lead:{foreign.pk}"}
    )
    assert response.status_code == 404
    response = op_client.get(
        url("preview", template.pk),
        {"campaign": other_venture_campaign.pk, "recipient": f"lead:{foreign.pk}"},
    )
    assert "Secret" not in page(response)


def test_changelist_lists_only_visible_ventures(op_client, template, other_venture_campaign):
    MessageTemplateFactory(campaign=other_venture_campaign, name="Foreign template")
    text = page(op_client.get(url("changelist")))
    assert "Opener" in text
    assert "Foreign template" not in text


# --- Send me a test ---------------------------------------------------------------------------
def test_send_me_a_test_goes_to_the_operator_only(op_client, template, campaign, operator):
    lead = LeadFactory(campaign=campaign, first_name="Lena", email="lena@prospect.example")
    response = op_client.post(
        url("send_test", template.pk),
        {"campaign": campaign.pk, "recipient": f"lead:{lead.pk}", "post": "yes"},
    )
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [operator.email]
    assert "lena@prospect.example" not in message.recipients()
    assert message.subject == "[TEST] Quick question, Lena"
    assert message.body.startswith(
        "[TEST] Template 'Opener' v1 rendered for Lena Lead <lena@prospect.example>"
    )
    assert message.extra_headers["X-AICMO-Test"] == "1"
    assert (
        AuditEvent.objects.filter(action="template.send_test", actor=operator.username).count() == 1
    )


def test_send_me_a_test_confirms_first_naming_template_lead_address_and_backend(
    op_client, template, campaign, operator
):
    lead = LeadFactory(campaign=campaign, first_name="Lena", email="lena@prospect.example")
    response = op_client.post(
        url("send_test", template.pk), {"campaign": campaign.pk, "recipient": f"lead:{lead.pk}"}
    )
    shown = page(response)
    assert "Send me a test: are you sure?" in shown
    assert f"{template.name}, rendered for Lena Lead" in shown and "lena@prospect.example" in shown
    assert f"To: {operator.email}." in shown and "Email backend in force:" in shown
    assert f'name="recipient" value="lead:{lead.pk}"' in shown
    assert mail.outbox == []
    assert not AuditEvent.objects.filter(action="template.send_test").exists()


def test_send_me_a_test_refuses_get(op_client, template):
    assert op_client.get(url("send_test", template.pk)).status_code == 405
    assert mail.outbox == []


def test_send_me_a_test_is_rate_limited(op_client, template, campaign):
    data = {"campaign": campaign.pk, "recipient": "sample", "post": "yes"}
    for _ in range(TEST_EMAIL_LIMIT):
        op_client.post(url("send_test", template.pk), data)
    response = op_client.post(url("send_test", template.pk), data, follow=True)
    assert len(mail.outbox) == TEST_EMAIL_LIMIT
    assert f"the limit is {TEST_EMAIL_LIMIT}" in page(response)


def test_send_me_a_test_refuses_a_blocked_render(op_client, campaign):
    template = MessageTemplateFactory(campaign=campaign, body_text="Hi {{ icebreaker }}")
    lead = LeadFactory(campaign=campaign)
    response = op_client.post(
        url("send_test", template.pk),
        {"campaign": campaign.pk, "recipient": f"lead:{lead.pk}", "post": "yes"},
        follow=True,
    )
    assert "Not sent: the render is blocked (undefined_variable)" in page(response)
    assert mail.outbox == []


def test_viewer_can_preview_but_not_send_a_test(client, viewer, template):
    client.force_login(viewer)
    assert client.get(url("preview", template.pk)).status_code == 200
    assert client.post(url("send_test", template.pk), {"recipient": "sample"}).status_code == 403
    assert mail.outbox == []


def test_send_me_a_test_needs_an_address(client, venture, template):
    user = UserFactory(username="no-mail", email="", role=OPERATOR)
    MembershipFactory(venture=venture, user=user)
    client.force_login(user)
    response = client.post(
        url("send_test", template.pk),
        {"campaign": template.campaign_id, "recipient": "sample", "post": "yes"},
        follow=True,
    )
    assert "no email address" in page(response)
    assert mail.outbox == []


# --- Campaign check ---------------------------------------------------------------------------
def test_campaign_check_lists_blocked_leads_and_why(op_client, template, campaign):
    good = LeadFactory(campaign=campaign, first_name="Lena")
    bad = LeadFactory(campaign=campaign, first_name="TBD", email="tbd@prospect.example")
    venture_wide = MessageTemplateFactory(
        campaign=None,
        venture=campaign.venture,
        name="Breakup",
        body_text="Bye {{ company }}\n{{ unsubscribe_url }}",
    )
    LeadFactory(campaign=campaign, company="", email="nocompany@prospect.example")
    response = op_client.post(url("campaign_check"), {"campaign": campaign.pk, "limit": 500})
    assert response.status_code == 200
    text = page(response)
    assert (
        "2 active template(s) x 3 of 3 recipients: 6 renders, 3 blocked (2 recipient(s) affected)."
        in text
    )
    assert "tbd@prospect.example" in text and 'data-code="tbd"' in response.content.decode()
    assert "nocompany@prospect.example" in text and "'company' is undefined" in text
    assert good.email not in text
    assert venture_wide.name in text
    assert RenderLog.objects.filter(purpose=RenderPurpose.CHECK).count() == 6
    assert bad.pk


def test_campaign_check_samples_big_campaigns(op_client, template, campaign):
    for _ in range(5):
        LeadFactory(campaign=campaign)
    response = op_client.post(url("campaign_check"), {"campaign": campaign.pk, "limit": 2})
    assert "1 active template(s) x 2 of 5 recipients (the first ones by id)" in page(response)


def test_campaign_check_refuses_another_ventures_campaign(op_client, other_venture_campaign):
    MessageTemplateFactory(campaign=other_venture_campaign)
    response = op_client.post(
        url("campaign_check"), {"campaign": other_venture_campaign.pk, "limit": 10}
    )
    assert response.status_code == 200
    assert "Select a valid choice" in page(response)
    assert not RenderLog.objects.exists()


def test_campaign_check_ignores_inactive_templates_and_other_campaigns(
    op_client, template, campaign
):
    MessageTemplateFactory(campaign=campaign, is_active=False, body_text="{{ nope }}")
    MessageTemplateFactory(
        campaign=CampaignFactory(venture=campaign.venture), body_text="{{ nope }}"
    )
    LeadFactory(campaign=campaign)
    response = op_client.post(url("campaign_check"), {"campaign": campaign.pk, "limit": 10})
    assert "No lead is blocked." in page(response)


def test_venture_wide_template_previews_for_a_chosen_campaign(op_client, campaign):
    template = MessageTemplateFactory(campaign=None, venture=campaign.venture)
    second = CampaignFactory(venture=campaign.venture, name="Second campaign")
    lead = LeadFactory(campaign=second, first_name="Otto")
    response = op_client.get(
        url("preview", template.pk), {"campaign": second.pk, "recipient": f"lead:{lead.pk}"}
    )
    assert "Quick question, Otto" in page(response)
    response = op_client.get(url("preview", template.pk))
    assert "Quick question, Alex" in page(response)


def test_preview_without_any_campaign_says_so(client, operator):
    venture = VentureFactory()
    MembershipFactory(venture=venture, user=operator)
    template = MessageTemplateFactory(campaign=None, venture=venture)
    client.force_login(operator)
    response = client.get(url("preview", template.pk))
    assert response.status_code == 200
    assert "has no campaign you can see yet" in page(response)
    response = client.post(url("send_test", template.pk), {"recipient": "sample"}, follow=True)
    assert "Choose a campaign and a recipient first." in page(response)
    assert mail.outbox == []


def test_templates_are_deactivated_not_deleted(op_client, template):
    assert op_client.post(url("delete", template.pk), {"post": "yes"}).status_code == 403
    assert MessageTemplate.objects.filter(pk=template.pk).exists()
    assert "deletelink" not in op_client.get(url("change", template.pk)).content.decode()


def test_versions_and_render_logs_are_scoped_to_visible_ventures(
    op_client, template, other_venture_campaign
):
    foreign = MessageTemplateFactory(campaign=other_venture_campaign, name="Foreign template")
    for obj in (template, foreign):
        op_client.get(url("preview", obj.pk))  # renders only for the visible one
    foreign_version = template_current_version(foreign)
    versions = page(op_client.get(reverse("admin:templating_messagetemplateversion_changelist")))
    logs = page(op_client.get(reverse("admin:templating_renderlog_changelist")))
    assert "Opener" in versions and "Foreign template" not in versions
    assert "Opener v1" in logs and "Foreign template" not in logs
    change = reverse("admin:templating_messagetemplateversion_change", args=[foreign_version.pk])
    assert op_client.get(change).status_code == 404


@pytest.mark.parametrize("ref", ["lead:²", "lead:٣", "lead:99999999999999999999999", "lead:", "x"])
def test_preview_recipient_that_is_no_lead_id_is_a_404_not_a_500(
    op_client, template, campaign, ref
):
    LeadFactory(campaign=campaign)
    response = op_client.get(
        url("preview", template.pk), {"campaign": campaign.pk, "recipient": ref}
    )
    assert response.status_code == 404


# --- Campaign check, grouped -------------------------------------------------------------------
SIZE_SUBJECT = "{{ company_size }} people at {{ company }}?"
SIZE_BODY = "Hi {{ first_name }}, a team of {{ company_size }}.\n{{ unsubscribe_url }}"
COMPLIANT = "Hello\n{{ venture.postal_address }}\n{{ unsubscribe_url }}"


def test_campaign_check_groups_one_missing_variable_into_one_row_with_a_count(op_client, campaign):
    MessageTemplateFactory(
        campaign=campaign, name="Sizer", subject=SIZE_SUBJECT, body_text=SIZE_BODY
    )
    leads = [LeadFactory(campaign=campaign) for _ in range(39)]
    response = op_client.post(url("campaign_check"), {"campaign": campaign.pk, "limit": 500})

    groups = response.context["groups"]
    assert [(g.template.name, g.code, g.count) for g in groups] == [
        ("Sizer", "undefined_variable", 39)
    ]
    assert groups[0].part_labels == ["subject", "body text"]
    assert groups[0].phrase == "missing variable `company_size`"
    assert [ref for ref, _ in groups[0].examples] == [f"lead:{lead.pk}" for lead in leads[:3]]
    assert groups[0].more == 36
    content = response.content.decode()
    assert content.count('<tr class="check-group"') == 1
    text = page(response)
    assert "'company_size' is undefined" in text
    assert "subject, body text" in text
    assert "and 36 more" in text
    assert leads[0].email in text and leads[3].email not in text


def test_campaign_check_keeps_templates_and_reasons_apart_and_labels_the_html_part(
    op_client, campaign
):
    MessageTemplateFactory(
        campaign=campaign, name="Sizer", subject=SIZE_SUBJECT, body_text=SIZE_BODY
    )
    MessageTemplateFactory(
        campaign=campaign,
        name="Html one",
        body_text=COMPLIANT,
        body_html="<p>Hi {{ first_name }}</p><p>{{ unsubscribe_url }}</p>",
    )
    LeadFactory(campaign=campaign, company_size=50, first_name="[First Name]")
    LeadFactory(campaign=campaign, company_size=None)
    response = op_client.post(url("campaign_check"), {"campaign": campaign.pk, "limit": 500})

    found = {
        (g.template.name, g.code, tuple(g.part_labels), g.count) for g in response.context["groups"]
    }
    assert ("Sizer", "undefined_variable", ("subject", "body text"), 1) in found
    assert ("Sizer", "bracket_token", ("body text",), 1) in found
    assert ("Html one", "bracket_token", ("subject", "body HTML"), 1) in found
    assert len(found) == 3
    assert "subject, body HTML" in page(response)


def test_campaign_check_groups_subjects_too_long_whatever_their_length(op_client, campaign):
    MessageTemplateFactory(campaign=campaign, subject="{{ company }}", body_text=COMPLIANT)
    LeadFactory(campaign=campaign, company="A" * 120)
    LeadFactory(campaign=campaign, company="B" * 130)
    response = op_client.post(url("campaign_check"), {"campaign": campaign.pk, "limit": 500})
    [group] = response.context["groups"]
    assert (group.code, group.count, group.part_labels) == ("subject_too_long", 2, ["subject"])


# --- Saving a template that blocks leads of a running campaign ------------------------------------


def _running(campaign):
    campaign.status = CampaignStatus.RUNNING
    campaign.save(update_fields=["status"])
    return campaign


def test_saving_a_template_that_blocks_leads_of_a_running_campaign_warns_with_the_count(
    op_client, campaign
):
    _running(campaign)
    campaign.name = "Spring outreach"
    campaign.save(update_fields=["name"])
    for _ in range(39):
        LeadFactory(campaign=campaign)
    response = op_client.post(
        url("add"), form_data(campaign, subject=SIZE_SUBJECT, body_text=SIZE_BODY), follow=True
    )
    text = page(response)
    assert "was added successfully" in text
    assert (
        "This template now blocks 39 leads of running campaign “Spring outreach”: missing "
        "variable `company_size` (39 leads, subject and body text)." in text
    )
    check_link = f"{url('campaign_check')}?campaign={campaign.pk}&amp;limit=500"
    assert check_link in response.content.decode()
    assert not RenderLog.objects.exists()  # advisory: the campaign check it links to logs

    # The link opens the check for that campaign, ready to run.
    form = op_client.get(f"{url('campaign_check')}?campaign={campaign.pk}&limit=500")
    assert form.context["form"]["campaign"].value() == str(campaign.pk)
    assert not form.context["form"].errors or form.context["form"].is_valid()


def test_saving_a_fixed_template_or_one_of_a_paused_campaign_does_not_warn(op_client, campaign):
    LeadFactory(campaign=campaign)
    response = op_client.post(
        url("add"), form_data(campaign, subject=SIZE_SUBJECT, body_text=SIZE_BODY), follow=True
    )
    assert "now blocks" not in page(response)  # a draft campaign sends nothing yet

    _running(campaign)
    template = MessageTemplate.objects.get()
    response = op_client.post(
        url("change", template.pk),
        form_data(campaign, subject="{{ company_size | default('a few') }} people?"),
        follow=True,
    )
    text = page(response)
    assert "was changed successfully" in text and "now blocks" not in text


def test_saving_a_venture_wide_template_checks_each_running_campaign_and_the_first_leads_only(
    op_client, campaign, monkeypatch
):
    monkeypatch.setattr("templating.services.SAVE_CHECK_SAMPLE", 2)
    _running(campaign)
    second = _running(CampaignFactory(venture=campaign.venture, name="Second"))
    for _ in range(3):
        LeadFactory(campaign=campaign)
    LeadFactory(campaign=second)
    data = {**form_data(campaign, subject=SIZE_SUBJECT, body_text=SIZE_BODY), "campaign": ""}
    text = page(op_client.post(url("add"), data, follow=True))
    assert (
        f"now blocks 2 of the first 2 active leads (there are more) of running campaign "
        f"“{campaign.name}”" in text
    )
    assert "now blocks 1 lead of running campaign “Second”: missing variable" in text


def test_saving_checks_at_most_a_few_running_campaigns_and_says_how_many_were_not(
    op_client, campaign, monkeypatch
):
    monkeypatch.setattr("templating.services.SAVE_CHECK_CAMPAIGNS", 1)
    _running(campaign)
    _running(CampaignFactory(venture=campaign.venture))
    _running(CampaignFactory(venture=campaign.venture))
    data = {**form_data(campaign, subject=SIZE_SUBJECT, body_text=SIZE_BODY), "campaign": ""}
    text = page(op_client.post(url("add"), data, follow=True))
    assert "2 more running campaign(s) use this template and were not checked" in text


# --- Which email backend, which site URL ------------------------------------------------------
def _send_test(op_client, template, campaign):
    return page(
        op_client.post(
            url("send_test", template.pk),
            {"campaign": campaign.pk, "recipient": "sample", "post": "yes"},
            follow=True,
        )
    )


def test_send_me_a_test_with_the_console_backend_says_it_was_only_printed(
    op_client, template, campaign, settings, capsys
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    preview = page(op_client.get(url("preview", template.pk)))
    assert "through the console backend" in preview and "printed to the server's console" in preview
    text = _send_test(op_client, template, campaign)
    assert (
        "Test email to op-otto@agency.example (only you, labelled TEST): printed to the "
        "server's console, not delivered. To receive test emails, set EMAIL_URL" in text
    )
    assert "sent to" not in text
    assert "[TEST] Quick question, Alex" in capsys.readouterr().out


def test_send_me_a_test_with_the_file_backend_names_the_file(
    op_client, template, campaign, settings, tmp_path
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path)
    text = _send_test(op_client, template, campaign)
    [written] = tmp_path.iterdir()
    assert f"written to {written} (file backend), not delivered." in text
    assert "[TEST] Quick question, Alex" in written.read_text()


def test_send_me_a_test_over_smtp_says_which_server_took_it(
    op_client, template, campaign, settings, smtp_sink
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = smtp_sink.host, smtp_sink.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    address = f"{smtp_sink.host}:{smtp_sink.port}"
    assert f"through SMTP {address} (no encryption)." in page(
        op_client.get(url("preview", template.pk))
    )
    text = _send_test(op_client, template, campaign)
    assert f"handed to {address} (SMTP, no encryption) for delivery." in text
    assert smtp_sink.recipients() == ["op-otto@agency.example"]

    smtp_sink.fail_next("RCPT", 550)
    text = _send_test(op_client, template, campaign)
    assert f"The email backend (SMTP {address} (no encryption)) refused the test email" in text


def test_send_me_a_test_through_an_esp_names_it_and_its_answer(
    op_client, template, campaign, settings
):
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    text = _send_test(op_client, template, campaign)
    assert "handed to Test (an ESP, through django-anymail), which answered sent" in text
    assert len(mail.outbox) == 1


def test_preview_says_which_site_url_the_unsubscribe_links_use(op_client, template, settings):
    settings.AICMO_SITE_URL = "http://testserver"
    text = page(op_client.get(url("preview", template.pk)))
    assert "Unsubscribe links point to <code>http://testserver</code> (AICMO_SITE_URL)." in text
    assert "recipients will reach" not in text


def test_preview_warns_when_the_site_url_is_not_the_server_in_use(
    op_client, template, campaign, settings
):
    settings.AICMO_SITE_URL = "http://127.0.0.1:8000"
    response = op_client.get(url("preview", template.pk), HTTP_HOST="localhost:8001")
    text = page(response)
    assert (
        "Unsubscribe links point to http://127.0.0.1:8000, but you are using "
        "http://localhost:8001: recipients will reach the former." in text
    )
    assert "http://127.0.0.1:8000/u/" in text  # shown as they are, never rewritten
    # The same machine by another loopback name, same port: no warning.
    text = page(op_client.get(url("preview", template.pk), HTTP_HOST="localhost:8000"))
    assert "recipients will reach" not in text


def test_the_check_after_a_save_reads_one_lead_more_instead_of_counting_them_all(campaign):
    _running(campaign)
    template = MessageTemplateFactory(campaign=campaign, subject=SIZE_SUBJECT, body_text=SIZE_BODY)
    LeadFactory(campaign=campaign)
    LeadFactory(campaign=campaign)
    [check], _ = template_running_checks(template=template, limit=2)
    assert (check.recipients_checked, check.recipients_total, check.sampled) == (2, 2, False)
    LeadFactory(campaign=campaign)
    [check], _ = template_running_checks(template=template, limit=2)
    assert (check.recipients_checked, check.recipients_total, check.sampled) == (2, None, True)
    assert check.renders == 2 and check.blocked_recipients == 2
