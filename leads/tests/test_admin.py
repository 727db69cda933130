"""The lead console: changelist speed and scoping, search, filters, bulk actions, batch pages."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from leads.models import (
    BatchState,
    ConsentStatus,
    ImportIssue,
    Lead,
    LeadStatus,
    SuppressionEntry,
)
from tests.factories import (
    CampaignFactory,
    IcpSegmentFactory,
    ImportBatchFactory,
    LeadFactory,
    SuppressionEntryFactory,
    UserFactory,
)
from tests.http import text
from ventures.admin_toolkit import COUNT_CAP, CappedCountPaginator
from ventures.models import AuditEvent
from ventures.roles import ADMINISTRATOR

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]

CHANGELIST = "admin:leads_lead_changelist"


def listed_pks(response) -> set[int]:
    return {obj.pk for obj in response.context["cl"].result_list}


def run_action(client, action: str, leads, *, query: str = "", **extra):
    data = {"action": action, ACTION_CHECKBOX_NAME: [lead.pk for lead in leads], **extra}
    return client.post(reverse(CHANGELIST) + query, data, follow=True)


# --- changelist ---------------------------------------------------------------------------------


def test_operator_sees_only_leads_of_their_ventures(
    client, operator, campaign, other_venture_campaign
):
    mine = LeadFactory(campaign=campaign)
    LeadFactory(campaign=other_venture_campaign)
    client.force_login(operator)
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert listed_pks(response) == {mine.pk}


def test_administrator_sees_leads_of_every_venture(
    client, administrator, campaign, other_venture_campaign
):
    leads = {LeadFactory(campaign=campaign).pk, LeadFactory(campaign=other_venture_campaign).pk}
    client.force_login(administrator)
    assert listed_pks(client.get(reverse(CHANGELIST))) == leads


def test_viewer_sees_their_leads_but_has_no_bulk_actions(client, viewer, campaign):
    lead = LeadFactory(campaign=campaign)
    client.force_login(viewer)
    response = client.get(reverse(CHANGELIST))
    assert listed_pks(response) == {lead.pk}
    assert "mark_dnc" not in text(response)
    run_action(client, "mark_dnc", [lead], post="yes")
    lead.refresh_from_db()
    assert lead.consent_status == ConsentStatus.UNKNOWN


def test_changelist_query_count_does_not_grow_with_the_list(
    client, operator, campaign, django_assert_num_queries
):
    segment = IcpSegmentFactory(venture=campaign.venture)
    batch = ImportBatchFactory(campaign=campaign)
    LeadFactory(campaign=campaign, segment=segment, source_batch=batch)
    client.force_login(operator)
    client.get(reverse(CHANGELIST))  # warm the session
    with CaptureQueriesContext(connection) as first:
        client.get(reverse(CHANGELIST))
    # session, user, permissions, role, visible ventures, 3 filter choice lists, the capped
    # count and the page: a dozen at most, and the same whatever the number of leads.
    assert len(first) <= 12
    for size in (20, 60):
        LeadFactory.create_batch(size, campaign=campaign, segment=segment, source_batch=batch)
        with django_assert_num_queries(len(first)):
            response = client.get(reverse(CHANGELIST), {"campaign": campaign.pk})
        assert len(response.context["cl"].result_list) == min(50, Lead.objects.count())


def test_changelist_never_counts_more_than_the_cap(client, administrator, campaign, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "cap", 5)
    LeadFactory.create_batch(8, campaign=campaign)
    client.force_login(administrator)
    response = client.get(reverse(CHANGELIST))
    cl = response.context["cl"]
    assert cl.result_count == 6  # cap + 1: "more than 5"
    assert cl.full_result_count is None  # no unfiltered COUNT(*)
    assert "More than 5 leads" in text(response)
    assert COUNT_CAP == 10_000


def test_search_is_an_email_prefix_and_not_case_sensitive(client, operator, campaign):
    ann = LeadFactory(
        campaign=campaign, email="Ann.Smith@acme.example", email_key="ann.smith@acme.example"
    )
    LeadFactory(campaign=campaign, email="joanne@acme.example", email_key="joanne@acme.example")
    client.force_login(operator)
    response = client.get(reverse(CHANGELIST), {"q": "ANN"})
    assert listed_pks(response) == {ann.pk}  # a prefix, not "contains": joanne is not found
    assert listed_pks(client.get(reverse(CHANGELIST), {"q": "acme"})) == set()


def test_filters_by_campaign_consent_segment_source_and_batch(client, operator, venture):
    first, second = CampaignFactory(venture=venture), CampaignFactory(venture=venture)
    segment = IcpSegmentFactory(venture=venture)
    batch = ImportBatchFactory(campaign=first)
    target = LeadFactory(
        campaign=first,
        consent_status=ConsentStatus.CONSENTED,
        segment=segment,
        source_channel="form",
        source_batch=batch,
    )
    LeadFactory(campaign=first)
    LeadFactory(campaign=second, consent_status=ConsentStatus.CONSENTED)
    client.force_login(operator)
    url = reverse(CHANGELIST)
    assert listed_pks(
        client.get(url, {"campaign": first.pk, "consent_status__exact": "consented"})
    ) == {target.pk}
    assert listed_pks(client.get(url, {"segment": segment.pk})) == {target.pk}
    assert listed_pks(client.get(url, {"source_channel__exact": "form"})) == {target.pk}
    assert listed_pks(client.get(url, {"batch": batch.pk})) == {target.pk}


def test_campaign_filter_offers_only_visible_campaigns(
    client, operator, campaign, other_venture_campaign
):
    client.force_login(operator)
    page = text(client.get(reverse(CHANGELIST)))
    assert campaign.name in page
    assert other_venture_campaign.name not in page


def test_filtering_on_another_ventures_campaign_shows_nothing(
    client, operator, other_venture_campaign
):
    LeadFactory(campaign=other_venture_campaign)
    client.force_login(operator)
    response = client.get(reverse(CHANGELIST), {"campaign": other_venture_campaign.pk})
    assert listed_pks(response) == set()


def test_another_ventures_lead_page_is_a_404(client, operator, other_venture_campaign):
    lead = LeadFactory(campaign=other_venture_campaign)
    client.force_login(operator)
    assert client.get(reverse("admin:leads_lead_change", args=[lead.pk])).status_code == 404
    assert client.get(reverse("admin:leads_lead_data_export", args=[lead.pk])).status_code == 404


# --- per-lead data export -------------------------------------------------------------------------


def test_lead_data_export_downloads_the_persons_data_as_json(client, viewer, campaign):
    lead = LeadFactory(campaign=campaign, custom_fields={"icebreaker": "Saw your talk"})
    client.force_login(viewer)
    page = client.get(reverse("admin:leads_lead_change", args=[lead.pk]))
    export_url = reverse("admin:leads_lead_data_export", args=[lead.pk])
    assert export_url in text(page)
    response = client.get(export_url)
    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    data = json.loads(response.content)
    assert lead.email in json.dumps(data)
    assert "Saw your talk" in json.dumps(data)
    assert AuditEvent.objects.filter(action="leads.data_export", entity_id=str(lead.pk)).exists()


# --- bulk actions ----------------------------------------------------------------------------------


def test_mark_dnc_asks_for_confirmation_then_reports_counts(client, operator, campaign):
    leads = LeadFactory.create_batch(3, campaign=campaign)
    already = LeadFactory(campaign=campaign, consent_status=ConsentStatus.DNC)
    client.force_login(operator)
    confirm = run_action(client, "mark_dnc", [*leads, already])
    assert "<strong>4</strong> leads selected" in text(confirm)
    assert Lead.objects.filter(consent_status=ConsentStatus.DNC).count() == 1
    done = run_action(client, "mark_dnc", [*leads, already], post="yes", reason="asked us")
    assert "Marked 3 leads do-not-contact. 1 lead already were." in text(done)
    for lead in leads:
        lead.refresh_from_db()
        assert lead.consent_status == ConsentStatus.DNC
        assert lead.consent_source.startswith("admin")
    event = AuditEvent.objects.get(action="leads.mark_dnc")
    assert event.after["leads"] == 3 and event.reason == "asked us"


def test_select_across_acts_on_every_matching_lead_not_just_the_page(client, operator, campaign):
    other = CampaignFactory(venture=campaign.venture)
    leads = LeadFactory.create_batch(60, campaign=campaign)  # more than one page of 50
    untouched = LeadFactory(campaign=other)
    client.force_login(operator)
    response = run_action(
        client,
        "mark_dnc",
        leads[:50],
        query=f"?campaign={campaign.pk}",
        select_across="1",
        post="yes",
    )
    assert "Marked 60 leads do-not-contact." in text(response)
    untouched.refresh_from_db()
    assert untouched.consent_status == ConsentStatus.UNKNOWN


def test_suppress_puts_people_on_the_venture_list_across_campaigns(client, operator, campaign):
    other = CampaignFactory(venture=campaign.venture)
    lead = LeadFactory(campaign=campaign, email="pat@x.example", email_key="pat@x.example")
    twin = LeadFactory(campaign=other, email="pat@x.example", email_key="pat@x.example")
    client.force_login(operator)
    response = run_action(client, "suppress", [lead], post="yes", reason="complaint")
    assert "Added 1 suppression entry; 2 leads suppressed" in text(response)
    entry = SuppressionEntry.objects.get()
    assert (entry.kind, entry.value, entry.venture_id) == (
        "email",
        "pat@x.example",
        campaign.venture_id,
    )
    for row in (lead, twin):
        row.refresh_from_db()
        assert row.status == LeadStatus.SUPPRESSED
    again = run_action(client, "suppress", [lead], post="yes")
    assert "Added 0 suppression entries; 0 leads suppressed" in text(again)


def test_move_to_segment_moves_only_leads_of_the_segments_venture(
    client, administrator, campaign, other_venture_campaign
):
    segment = IcpSegmentFactory(venture=campaign.venture)
    mine = LeadFactory.create_batch(2, campaign=campaign)
    foreign = LeadFactory(campaign=other_venture_campaign)
    client.force_login(administrator)
    response = run_action(
        client, "move_to_segment", [*mine, foreign], post="yes", segment=segment.pk
    )
    page = text(response)
    assert f"Moved 2 leads to {segment}" in page
    assert "1 lead of another venture left as they were" in page
    foreign.refresh_from_db()
    assert foreign.segment_id is None
    assert Lead.objects.filter(segment=segment).count() == 2


def test_move_to_segment_refuses_a_segment_the_operator_cannot_see(
    client, operator, campaign, other_venture_campaign
):
    foreign_segment = IcpSegmentFactory(venture=other_venture_campaign.venture)
    lead = LeadFactory(campaign=campaign)
    client.force_login(operator)
    response = run_action(client, "move_to_segment", [lead], post="yes", segment=foreign_segment.pk)
    assert "Select a valid choice" in text(response)
    lead.refresh_from_db()
    assert lead.segment_id is None


def test_the_confirm_page_names_the_selected_leads_and_counts_the_rest(client, operator, campaign):
    leads = [
        LeadFactory(campaign=campaign, email=f"p{n:02}@x.example", email_key=f"p{n:02}@x.example")
        for n in range(23)
    ]
    client.force_login(operator)
    confirm = text(run_action(client, "suppress", leads))
    assert "<strong>23</strong> leads selected" in confirm
    named = [lead.email for lead in leads if lead.email in confirm]
    assert len(named) == 20 and "and 3 more" in confirm
    assert SuppressionEntry.objects.count() == 0  # nothing happens before the confirmation


def test_the_move_confirm_page_asks_for_the_segment_before_the_reason(client, operator, campaign):
    segment = IcpSegmentFactory(venture=campaign.venture)
    lead = LeadFactory(campaign=campaign)
    client.force_login(operator)
    confirm = text(run_action(client, "move_to_segment", [lead]))
    assert confirm.index('name="segment"') < confirm.index('name="reason"')
    assert f'<option value="{segment.pk}">' in confirm


def test_a_lead_page_has_dnc_and_suppress_buttons_that_act_on_that_lead_only(
    client, operator, campaign
):
    lead = LeadFactory(campaign=campaign, email="pat@x.example", email_key="pat@x.example")
    other = LeadFactory(campaign=campaign)
    client.force_login(operator)
    page = text(client.get(reverse("admin:leads_lead_change", args=[lead.pk])))
    dnc_url = reverse("admin:leads_lead_operation", args=[lead.pk, "mark-dnc"])
    suppress_url = reverse("admin:leads_lead_operation", args=[lead.pk, "suppress"])
    assert dnc_url in page and suppress_url in page
    assert "move-to-segment" not in page  # the form itself edits the segment
    confirm = client.get(dnc_url)
    assert "pat@x.example" in text(confirm) and "no import can lift DNC" in text(confirm)
    done = client.post(dnc_url, {"post": "yes", "reason": "asked us"}, follow=True)
    assert "Marked 1 lead do-not-contact." in text(done)
    lead.refresh_from_db()
    other.refresh_from_db()
    assert lead.consent_status == ConsentStatus.DNC
    assert other.consent_status == ConsentStatus.UNKNOWN
    page = text(client.get(reverse("admin:leads_lead_change", args=[lead.pk])))
    assert dnc_url not in page and suppress_url in page  # DNC already: only Suppress is left


def test_a_viewer_sees_no_lead_buttons_and_cannot_post_them(client, viewer, campaign):
    lead = LeadFactory(campaign=campaign)
    client.force_login(viewer)
    page = text(client.get(reverse("admin:leads_lead_change", args=[lead.pk])))
    url = reverse("admin:leads_lead_operation", args=[lead.pk, "suppress"])
    assert url not in page
    assert client.post(url, {"post": "yes"}).status_code == 403
    lead.refresh_from_db()
    assert lead.status == LeadStatus.ACTIVE


def test_a_lead_button_cannot_reach_another_ventures_lead(client, operator, other_venture_campaign):
    foreign = LeadFactory(campaign=other_venture_campaign)
    client.force_login(operator)
    url = reverse("admin:leads_lead_operation", args=[foreign.pk, "mark-dnc"])
    assert client.post(url, {"post": "yes"}).status_code == 404
    foreign.refresh_from_db()
    assert foreign.consent_status == ConsentStatus.UNKNOWN


def test_an_erased_lead_has_no_buttons(client, operator, campaign):
    lead = LeadFactory(campaign=campaign, status=LeadStatus.ERASED)
    client.force_login(operator)
    page = text(client.get(reverse("admin:leads_lead_change", args=[lead.pk])))
    assert "operation-mark-dnc" not in page and "operation-suppress" not in page


def test_an_action_cannot_reach_another_ventures_lead_by_id(
    client, operator, campaign, other_venture_campaign
):
    foreign = LeadFactory(campaign=other_venture_campaign)
    client.force_login(operator)
    run_action(client, "mark_dnc", [foreign], post="yes")
    foreign.refresh_from_db()
    assert foreign.consent_status == ConsentStatus.UNKNOWN


# --- import batches ---------------------------------------------------------------------------------


def test_batch_page_shows_progress_and_the_progress_endpoint_reports_it(client, operator, campaign):
    batch = ImportBatchFactory(
        campaign=campaign, state=BatchState.RUNNING, rows_total=200, rows_done=50, created=40
    )
    client.force_login(operator)
    page = client.get(reverse("admin:leads_importbatch_change", args=[batch.pk]))
    assert page.status_code == 200
    assert "import_progress.js" in text(page)
    assert 'value="25"' in text(page)
    data = client.get(reverse("admin:leads_importbatch_progress", args=[batch.pk])).json()
    assert data["percent"] == 25 and data["created"] == 40 and data["finished"] is False


def test_rejected_rows_download_escapes_formulas(client, viewer, campaign):
    batch = ImportBatchFactory(campaign=campaign, state=BatchState.DONE)
    ImportIssue.objects.create(batch=batch, row_number=3, column="Email", reason='=HYPERLINK("x")')
    ImportIssue.objects.create(batch=batch, row_number=2, column="@Name", reason="bad email")
    client.force_login(viewer)
    response = client.get(reverse("admin:leads_importbatch_rejected", args=[batch.pk]))
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["row", "column", "kind", "reason"]
    assert rows[1] == ["2", "'@Name", "invalid", "bad email"]
    assert rows[2][3] == '\'=HYPERLINK("x")'


def test_another_ventures_batch_and_its_downloads_are_404(client, operator, other_venture_campaign):
    batch = ImportBatchFactory(campaign=other_venture_campaign)
    client.force_login(operator)
    for name in ("change", "progress", "rejected"):
        assert (
            client.get(reverse(f"admin:leads_importbatch_{name}", args=[batch.pk])).status_code
            == 404
        )


# --- suppression list ------------------------------------------------------------------------------


def test_suppression_list_is_scoped_and_global_entries_are_visible(
    client, operator, venture, other_venture_campaign
):
    mine = SuppressionEntryFactory(venture=venture)
    global_entry = SuppressionEntryFactory(venture=None)
    SuppressionEntryFactory(venture=other_venture_campaign.venture)
    client.force_login(operator)
    response = client.get(reverse("admin:leads_suppressionentry_changelist"))
    assert {o.pk for o in response.context["cl"].result_list} == {mine.pk, global_entry.pk}


def test_only_administrators_take_people_off_the_suppression_list(
    client, operator, administrator, venture
):
    """Nobody deletes an entry; an Administrator lifts one from its page, with a reason."""
    entries = [SuppressionEntryFactory(venture=None), SuppressionEntryFactory(venture=venture)]
    lift = [
        reverse("admin:leads_suppressionentry_operation", args=[entry.pk, "lift"])
        for entry in entries
    ]
    for user in (operator, administrator):
        client.force_login(user)
        for entry in entries:
            url = reverse("admin:leads_suppressionentry_delete", args=[entry.pk])
            assert client.post(url, {"post": "yes"}).status_code == 403
    client.force_login(operator)
    for url in lift:
        assert client.post(url, {"post": "yes", "reason": "x"}).status_code == 403
    assert SuppressionEntry.objects.count() == 2
    client.force_login(administrator)
    assert client.post(lift[1], {"post": "yes", "reason": "Wrong address"}).status_code == 302
    assert not SuppressionEntry.objects.filter(pk=entries[1].pk).exists()
    assert AuditEvent.objects.get(action="leads.suppression_lift").reason == "Wrong address"


def test_an_erased_persons_identity_entry_can_never_be_deleted(client, administrator):
    entry = SuppressionEntryFactory(kind="identity", value="ab" * 32, venture=None)
    client.force_login(administrator)
    url = reverse("admin:leads_suppressionentry_delete", args=[entry.pk])
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert SuppressionEntry.objects.filter(pk=entry.pk).exists()


# --- API tokens ------------------------------------------------------------------------------------


def test_administrator_creates_a_token_and_sees_the_plaintext_once(client, administrator, venture):
    client.force_login(administrator)
    url = reverse("admin:ventures_ventureapitoken_add")
    response = client.post(url, {"venture": venture.pk, "name": "website"})
    page = text(response)
    token = venture.api_tokens.get()
    assert "shown only once" in page
    plaintext = page.split('class="api-token-plaintext">')[1].split("<")[0]
    assert plaintext.startswith(token.prefix)
    listing = text(client.get(reverse("admin:ventures_ventureapitoken_changelist")))
    assert plaintext not in listing


def test_administrator_revokes_tokens(client, administrator, venture):
    from ventures.services import venture_api_token_create

    token, _ = venture_api_token_create(venture=venture, name="zap", actor="test")
    client.force_login(administrator)
    response = client.post(
        reverse("admin:ventures_ventureapitoken_changelist"),
        {"action": "revoke_tokens", ACTION_CHECKBOX_NAME: [token.pk], "post": "yes"},
        follow=True,
    )
    assert "Revoked 1 venture API token." in text(response)
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_operator_cannot_see_or_create_api_tokens(client, operator, venture):
    client.force_login(operator)
    assert client.get(reverse("admin:ventures_ventureapitoken_changelist")).status_code == 403
    assert (
        client.post(
            reverse("admin:ventures_ventureapitoken_add"), {"venture": venture.pk, "name": "x"}
        ).status_code
        == 403
    )
    assert not venture.api_tokens.exists()


def test_superuser_without_group_is_an_administrator_here(client, venture):
    root = UserFactory(username="root", is_superuser=True)
    client.force_login(root)
    assert client.get(reverse("admin:ventures_ventureapitoken_changelist")).status_code == 200
    assert UserFactory(username="adm2", role=ADMINISTRATOR).groups.exists()


# --- scoring rules, per-campaign policy, adding to the suppression list -----------------------------


def test_scoring_rules_are_scoped_and_rescore_action_updates_grades(
    client, operator, campaign, other_venture_campaign
):
    from leads.models import ScoringRule

    mine = ScoringRule.objects.create(
        venture=campaign.venture, label="sales title", field="title", values=["sales"], points=80
    )
    ScoringRule.objects.create(
        venture=other_venture_campaign.venture, label="theirs", field="title", values=["x"]
    )
    lead = LeadFactory(campaign=campaign, title="VP Sales", fit_score=0, grade="D")
    foreign = LeadFactory(campaign=other_venture_campaign, title="VP Sales", fit_score=0)
    client.force_login(operator)
    listing = client.get(reverse("admin:leads_scoringrule_changelist"))
    assert {r.pk for r in listing.context["cl"].result_list} == {mine.pk}
    response = client.post(
        reverse("admin:leads_scoringrule_changelist"),
        {"action": "rescore_ventures", ACTION_CHECKBOX_NAME: [mine.pk], "post": "yes"},
        follow=True,
    )
    assert "Re-scored the leads of" in text(response)
    lead.refresh_from_db()
    foreign.refresh_from_db()
    assert lead.fit_score == 80 and lead.grade == "A"
    assert "sales title" in lead.score_explanation
    assert foreign.fit_score == 0  # another venture's leads are never touched


def test_policy_admin_saves_through_the_service_and_is_audited(client, operator, campaign):
    from leads.models import CampaignLeadPolicy

    client.force_login(operator)
    response = client.post(
        reverse("admin:leads_campaignleadpolicy_add"),
        {"campaign": campaign.pk, "cross_campaign": "allow"},
    )
    assert response.status_code == 302
    assert CampaignLeadPolicy.objects.get(campaign=campaign).cross_campaign == "allow"
    assert AuditEvent.objects.filter(action="leads.policy", entity_id=str(campaign.pk)).exists()


def test_policy_admin_offers_only_visible_campaigns(client, operator, other_venture_campaign):
    client.force_login(operator)
    response = client.post(
        reverse("admin:leads_campaignleadpolicy_add"),
        {"campaign": other_venture_campaign.pk, "cross_campaign": "allow"},
    )
    assert "Select a valid choice" in text(response)


def test_adding_a_suppression_entry_suppresses_matching_active_leads(client, operator, campaign):
    lead = LeadFactory(campaign=campaign, email="gone@x.example", email_key="gone@x.example")
    client.force_login(operator)
    response = client.post(
        reverse("admin:leads_suppressionentry_add"),
        {
            "kind": "email",
            "value": " Gone@X.example ",
            "venture": campaign.venture_id,
            "reason": "asked",
        },
        follow=True,
    )
    assert "1 active lead(s) matching it are now suppressed" in text(response)
    entry = SuppressionEntry.objects.get()
    assert (entry.kind, entry.value, entry.venture_id) == (
        "email",
        "gone@x.example",
        campaign.venture_id,
    )
    lead.refresh_from_db()
    assert lead.status == LeadStatus.SUPPRESSED


def test_bad_suppression_value_is_a_form_error(client, operator, campaign):
    client.force_login(operator)
    response = client.post(
        reverse("admin:leads_suppressionentry_add"),
        {"kind": "domain", "value": "not a domain", "venture": campaign.venture_id},
    )
    assert response.status_code == 200
    assert "is not a domain" in text(response)
    assert not SuppressionEntry.objects.exists()


def test_operator_must_choose_one_of_their_ventures_for_a_suppression(
    client, operator, other_venture_campaign
):
    client.force_login(operator)
    for venture in ("", other_venture_campaign.venture_id):
        response = client.post(
            reverse("admin:leads_suppressionentry_add"),
            {"kind": "email", "value": "x@y.example", "venture": venture},
        )
        assert response.status_code == 200
    assert not SuppressionEntry.objects.exists()


def test_capture_links_action_shows_a_signed_link(client, operator, campaign):
    from leads.views import capture_url

    client.force_login(operator)
    response = client.post(
        reverse("admin:ventures_campaign_changelist"),
        {"action": "show_capture_links", ACTION_CHECKBOX_NAME: [campaign.pk]},
        follow=True,
    )
    assert capture_url(campaign) in text(response)


def test_batch_list_is_scoped_by_venture(client, viewer, campaign, other_venture_campaign):
    mine = ImportBatchFactory(campaign=campaign)
    ImportBatchFactory(campaign=other_venture_campaign)
    client.force_login(viewer)
    response = client.get(reverse("admin:leads_importbatch_changelist"))
    assert {b.pk for b in response.context["cl"].result_list} == {mine.pk}


@pytest.mark.parametrize("role", ["operator", "viewer", "administrator"])
def test_every_lead_page_and_download_follows_the_venture_scope(
    client, request, role, other_venture_campaign
):
    user = request.getfixturevalue(role)
    lead = LeadFactory(campaign=other_venture_campaign)
    batch = ImportBatchFactory(campaign=other_venture_campaign)
    urls = [
        reverse("admin:leads_lead_change", args=[lead.pk]),
        reverse("admin:leads_lead_data_export", args=[lead.pk]),
        reverse("admin:leads_importbatch_change", args=[batch.pk]),
        reverse("admin:leads_importbatch_progress", args=[batch.pk]),
        reverse("admin:leads_importbatch_rejected", args=[batch.pk]),
    ]
    client.force_login(user)
    expected = 200 if role == "administrator" else 404
    assert [client.get(url).status_code for url in urls] == [expected] * len(urls)
