"""The lead console as an operator uses it: search, export, what a bulk confirm names, the lead
page's order, timeline and operations, and who is offered what."""

from __future__ import annotations

import csv
import io
from types import SimpleNamespace

import pytest
from django.db import connection
from django.urls import reverse

from leads.models import ConsentStatus, Lead
from leads.selectors import lead_search_q
from tests.factories import IcpSegmentFactory, LeadFactory
from tests.http import text
from ventures.models import AuditEvent

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]

CHANGELIST = "admin:leads_lead_changelist"
EXPORT = "admin:leads_lead_export"


def listed(response) -> set[str]:
    return {obj.email for obj in response.context["cl"].result_list}


def exported(response) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


@pytest.fixture
def people(campaign):
    def lead(email, first, last, company):
        return LeadFactory(
            campaign=campaign, email=email, first_name=first, last_name=last, company=company
        )

    return {
        "ann": lead("ann.smith@acme.example", "Ann", "Smith", "Acme Corp"),
        "bob": lead("bob@beta.example", "Bob", "Goldsmith", "Beta Acme"),
        "cleo": lead("cleo@gamma.example", "Cleo", "Jones", "Smithers & Co"),
    }


# --- search ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "found"),
    [
        ("ANN.S", {"ann.smith@acme.example"}),  # email prefix, any case
        ("smith", {"ann.smith@acme.example", "cleo@gamma.example"}),  # last name / company start
        ("goldsm", {"bob@beta.example"}),  # last name prefix
        ("cle", {"cleo@gamma.example"}),  # first name (and email) prefix
        ("acme", {"ann.smith@acme.example"}),  # company prefix, not "Beta Acme"
        ("  Ann   Smi ", {"ann.smith@acme.example"}),  # first name and the start of a last name
        ("acme.example", set()),  # the domain alone is not a prefix of anything
        ("mith", set()),  # never a substring
    ],
)
def test_search_finds_email_first_last_name_and_company_prefixes(
    client, operator, people, term, found
):
    client.force_login(operator)
    assert listed(client.get(reverse(CHANGELIST), {"q": term})) == found


def test_search_escapes_like_wildcards(operator, campaign):
    LeadFactory(campaign=campaign, email="x@y.example", last_name="Smith")
    assert not Lead.objects.filter(lead_search_q("%mith")).exists()
    assert not Lead.objects.filter(lead_search_q("_mith")).exists()


def test_search_prefix_indexes_exist():
    with connection.cursor() as cursor:
        indexes = connection.introspection.get_constraints(cursor, Lead._meta.db_table)
    for column in ("first_name", "last_name", "company"):
        assert f"lead_{column}_lower_idx" in indexes


@pytest.mark.postgres
def test_search_by_last_name_is_an_index_lookup_on_postgresql(campaign):
    LeadFactory.create_batch(5, campaign=campaign)
    sql, params = Lead.objects.filter(lead_search_q("smi")).order_by().query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    for index in (
        "lead_last_name_lower_idx",
        "lead_company_lower_idx",
        "lead_first_name_lower_idx",
    ):
        assert index in plan, plan


def test_status_grade_and_segment_come_right_after_who_the_lead_is(client, operator, campaign):
    LeadFactory(campaign=campaign, segment=IcpSegmentFactory(venture=campaign.venture))
    client.force_login(operator)
    response = client.get(reverse(CHANGELIST))
    shown = list(response.context["cl"].list_display)
    assert shown[1:6] == ["email_or_id", "company", "standing", "grade_and_score", "segment_name"]
    page = text(response)
    assert 'lead-name">Lena Lead<' in page and "(0)" in page  # the name under the email


# --- export ---------------------------------------------------------------------------------


def test_viewer_exports_the_filtered_and_searched_list_as_csv(client, viewer, people, campaign):
    LeadFactory(campaign=campaign, email="dnc@acme.example", consent_status=ConsentStatus.DNC)
    client.force_login(viewer)
    page = text(client.get(reverse(CHANGELIST), {"consent_status__exact": "unknown"}))
    assert f"{reverse(EXPORT)}?consent_status__exact=unknown" in page
    response = client.get(reverse(EXPORT), {"consent_status__exact": "unknown", "q": "smith"})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    rows = exported(response)
    assert [r["email"] for r in rows] == ["ann.smith@acme.example", "cleo@gamma.example"]
    assert rows[0]["last_name"] == "Smith" and rows[0]["company"] == "Acme Corp"


def test_export_never_includes_another_ventures_leads(
    client, operator, campaign, other_venture_campaign
):
    LeadFactory(campaign=campaign, email="mine@acme.example")
    LeadFactory(campaign=other_venture_campaign, email="theirs@acme.example")
    client.force_login(operator)
    assert [r["email"] for r in exported(client.get(reverse(EXPORT)))] == ["mine@acme.example"]
    forged = client.get(reverse(EXPORT), {"campaign": other_venture_campaign.pk})
    assert exported(forged) == []


def test_export_escapes_formulas_and_lists_custom_fields(client, operator, campaign):
    LeadFactory(campaign=campaign, company="=HYPERLINK(1)", custom_fields={"Icebreaker": "+hi"})
    client.force_login(operator)
    row = exported(client.get(reverse(EXPORT)))[0]
    assert row["company"] == "'=HYPERLINK(1)" and row["Icebreaker"] == "'+hi"


def test_export_with_a_broken_filter_says_so(client, operator, campaign):
    client.force_login(operator)
    response = client.get(reverse(EXPORT), {"id__gt": "abc"}, follow=True)
    assert "not valid" in text(response)


def test_anonymous_visitor_cannot_export(client, campaign):
    LeadFactory(campaign=campaign)
    response = client.get(reverse(EXPORT))
    assert response.status_code == 302 and "login" in response["Location"]


# --- bulk confirm ---------------------------------------------------------------------------


def test_bulk_dnc_confirm_names_the_leads_and_the_filters_that_chose_them(
    client, operator, people, campaign
):
    client.force_login(operator)
    query = f"?campaign={campaign.pk}&q=smith"
    response = client.post(
        reverse(CHANGELIST) + query,
        {"action": "mark_dnc", "select_across": "1", "_selected_action": [people["ann"].pk]},
    )
    page = text(response)
    assert "<strong>2</strong> leads selected" in page
    assert "every lead matching the list's filters and search" in page
    assert "ann.smith@acme.example</td><td>Ann Smith</td><td>Acme Corp</td>" in page
    assert "cleo@gamma.example</td><td>Cleo Jones</td><td>Smithers & Co</td>" in page
    assert "bob@beta.example" not in page
    assert f"<strong>Campaign:</strong> {campaign.venture.name} / {campaign.name}" in page
    assert "<strong>Search:</strong> smith" in page
    assert not Lead.objects.filter(consent_status=ConsentStatus.DNC).exists()


# --- roles ----------------------------------------------------------------------------------


def test_viewer_is_not_offered_the_campaign_import_action_an_operator_is(
    client, viewer, operator, campaign
):
    url = reverse("admin:ventures_campaign_changelist")
    client.force_login(viewer)
    viewer_actions = dict(client.get(url).context["action_form"].fields["action"].choices)
    assert "import_leads_into_campaign" not in viewer_actions
    assert "Import leads" not in text(client.get(reverse(CHANGELIST)))
    forged = client.post(
        url, {"action": "import_leads_into_campaign", "_selected_action": [campaign.pk]}
    )
    assert forged.status_code in (200, 302) and not str(forged.get("Location", "")).endswith(
        f"?campaign={campaign.pk}"
    )
    client.force_login(operator)
    operator_actions = dict(client.get(url).context["action_form"].fields["action"].choices)
    assert "import_leads_into_campaign" in operator_actions


def test_operator_and_viewer_see_their_own_imports_in_the_audit_log(
    client, operator, viewer, campaign, other_venture_campaign, write_csv
):
    from leads.services.imports import lead_import

    lead_import(campaign=campaign, path=write_csv("email\nann@acme.example\n"), actor=operator)
    lead_import(
        campaign=other_venture_campaign, path=write_csv("email\nbo@beta.example\n"), actor="x"
    )
    mine = AuditEvent.objects.get(action="leads.import", venture_id=campaign.venture_id)
    for user in (operator, viewer):
        client.force_login(user)
        shown = client.get(reverse("admin:ventures_auditevent_changelist")).context["cl"]
        assert [e.pk for e in shown.result_list if e.action == "leads.import"] == [mine.pk]


def _execute(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


def test_backfill_gives_old_import_audit_rows_their_batchs_venture(campaign):
    import importlib

    from tests.factories import ImportBatchFactory

    migration = importlib.import_module("leads.migrations.0014_console_import_audit_venture")
    batch = ImportBatchFactory(campaign=campaign)
    old = AuditEvent.objects.create(
        actor="op", action="leads.import", entity_type="leads.importbatch", entity_id=str(batch.pk)
    )
    orphan = AuditEvent.objects.create(
        actor="op", action="leads.import", entity_type="leads.importbatch", entity_id="999999"
    )
    other = AuditEvent.objects.create(actor="op", action="x", entity_type="ventures.campaign")
    # What the migration uses of a schema editor: its connection and execute().
    editor = SimpleNamespace(connection=connection, execute=lambda sql: _execute(sql))
    migration.forward(None, editor)
    got = dict(AuditEvent.objects.values_list("pk", "venture_id"))
    assert got == {old.pk: campaign.venture_id, orphan.pk: None, other.pk: None}
    with pytest.raises(Exception, match="append-only"):  # the guard is back
        AuditEvent.objects.filter(pk=old.pk).update(reason="changed")


# --- the lead page --------------------------------------------------------------------------


def lead_page(client, lead) -> str:
    response = client.get(reverse("admin:leads_lead_change", args=[lead.pk]))
    assert response.status_code == 200
    return text(response)


def test_lead_page_leads_with_identity_status_and_score_and_hides_technical_fields(
    client, operator, campaign
):
    lead = LeadFactory(campaign=campaign, fit_score=72, grade="B", score_explanation="+30 title")
    client.force_login(operator)
    page = lead_page(client, lead)
    order = [
        page.index(marker)
        for marker in (
            "field-email",
            "field-status",
            "field-fit_score",
            "field-score_explanation",
            "lead-timeline",
            "field-website",
            "field-identity_hash",
        )
    ]
    assert order == sorted(order)
    technical = page[page.rindex("<fieldset", 0, page.index("field-identity_hash")) :]
    assert "collapse" in technical.split(">", 1)[0] or "<details" in page
    assert "+30 title" in page


def test_lead_timeline_shows_the_import_consent_unsubscribe_and_audit_events(
    client, operator, campaign, write_csv
):
    from leads.services.imports import lead_import
    from leads.unsubscribes import lead_unsubscribe

    outcome = lead_import(
        campaign=campaign,
        path=write_csv("email,first name\nann@acme.example,Ann\n", name="spring.csv"),
        actor=operator,
        source="Spring list",
    )
    lead = Lead.objects.get()
    lead_unsubscribe(lead=lead, source="link", actor="visitor")
    client.force_login(operator)
    page = lead_page(client, lead)
    timeline = page[page.index("lead-timeline") :]
    assert f"Import #{outcome.batch_id}: spring.csv, row 2 (list: Spring list), by op-otto" in (
        timeline
    )
    assert "Unsubscribed" in timeline and "Unsubscribe page" in timeline
    assert timeline.index("Unsubscribed") < timeline.index("Imported")  # newest first


def test_erase_asks_for_a_reason_and_says_what_it_deletes(
    client, operator, campaign, other_venture_campaign
):
    lead = LeadFactory(campaign=campaign, email="ann@acme.example")
    LeadFactory(campaign=other_venture_campaign, email="ann@acme.example")
    client.force_login(operator)
    url = reverse("admin:leads_lead_operation", args=[lead.pk, "erase"])
    assert url in lead_page(client, lead)
    confirm = text(client.get(url))
    assert "cannot be undone" in confirm and "global suppression list" in confirm
    assert f"This erases 2 leads of this person, in {campaign.name}, and 1 in ventures" in (confirm)
    refused = client.post(url, {"post": "yes", "reason": ""})
    assert refused.status_code == 200
    assert Lead.objects.filter(email="ann@acme.example").count() == 2
    done = client.post(url, {"post": "yes", "reason": "GDPR request #12"}, follow=True)
    assert "Erased the person's personal data" in text(done)
    assert not Lead.objects.filter(email="ann@acme.example").exists()
    lead.refresh_from_db()
    assert lead.status == "erased" and lead.first_name == ""
    assert AuditEvent.objects.get(action="leads.erase").reason == "GDPR request #12"
    assert "operation-erase" not in text(done)  # nothing left to erase


def test_viewer_is_offered_no_erase_and_cannot_post_it(client, viewer, campaign):
    lead = LeadFactory(campaign=campaign)
    client.force_login(viewer)
    assert "operation-erase" not in lead_page(client, lead)
    url = reverse("admin:leads_lead_operation", args=[lead.pk, "erase"])
    assert client.post(url, {"post": "yes", "reason": "x"}).status_code == 403
    lead.refresh_from_db()
    assert lead.status == "active"


# --- import: remap, projected totals, the result page ---------------------------------------

IMPORT_CSV = (
    "Work Email,Given,Last Name,Firm,Notes\n"
    "ann@acme.example,Ann,Smith,Acme,hello\n"
    "broken,Bob,Jones,Beta,\n"
    "ANN@acme.example,Ann,Smith,Acme,\n"
    "carl@gamma.example,Carl,Berg,Gamma,\n"
)


def preview_upload(client, campaign, content=IMPORT_CSV):
    from django.core.files.uploadedfile import SimpleUploadedFile

    payload = {"campaign": campaign.pk, "file": SimpleUploadedFile("spring.csv", content.encode())}
    return client.post(reverse("admin:leads_lead_import"), payload)


def ticket_in(response) -> str:
    import re

    return re.search(r'name="ticket" value="([^"]+)"', response.content.decode()).group(1)


def remap(client, preview, **choices):
    """Post the preview's mapping form with `choices` ({column header: field}) changed."""
    columns = {header: index for index, header, _ in preview.context["columns"]}
    data = {f"column-{columns[header]}": field for header, field in choices.items()}
    return client.post(
        reverse("admin:leads_lead_import_remap"), {"ticket": ticket_in(preview), **data}
    )


def test_preview_shows_field_labels_and_the_dry_runs_projected_totals(client, operator, campaign):
    client.force_login(operator)
    response = preview_upload(client, campaign)
    page = text(response)
    assert ">First name</option>" in page and ">first_name<" not in page
    totals = {name: value for name, _, value in response.context["totals"]}
    assert totals["created"] == 2 and totals["invalid"] == 1
    assert totals["duplicates_in_file"] == 1 and totals["suppressed"] == 0
    assert "Projected totals" in page and "Skipped (active in another campaign)" in page
    assert not Lead.objects.exists()  # the dry run kept nothing
    from leads.models import ImportBatch

    assert not ImportBatch.objects.exists()


def test_operator_remaps_and_skips_columns_then_confirms_with_that_mapping(
    client, operator, campaign
):
    client.force_login(operator)
    first = preview_upload(client, campaign)
    remapped = remap(client, first, Given="first_name", Firm="company", Notes="")  # skip Notes
    assert remapped.status_code == 200
    chosen = {header: choice for _, header, choice in remapped.context["columns"]}
    assert chosen["Given"] == "first_name" and chosen["Notes"] == ""
    client.post(reverse("admin:leads_lead_import_confirm"), {"ticket": ticket_in(remapped)})
    ann = Lead.objects.get(email_key="ann@acme.example")
    assert (ann.first_name, ann.company, ann.custom_fields) == ("Ann", "Acme", {})


def test_a_mapping_without_email_or_with_a_field_twice_is_refused_clearly(
    client, operator, campaign
):
    client.force_login(operator)
    first = preview_upload(client, campaign)
    no_email = remap(client, first, **{"Work Email": ""})
    assert "Choose the column that holds the email address" in text(no_email)
    twice = remap(client, first, Firm="last_name")
    assert "Two columns are read as Last name: 'Last Name' and 'Firm'" in text(twice)


def test_remap_after_the_staged_file_is_gone_says_so(client, operator, campaign, settings):
    import shutil
    from pathlib import Path

    client.force_login(operator)
    first = preview_upload(client, campaign)
    shutil.rmtree(Path(settings.AICMO_ARTIFACT_DIR) / "lead-import-staging")
    gone = client.post(
        reverse("admin:leads_lead_import_remap"), {"ticket": ticket_in(first)}, follow=True
    )
    assert "its file is no longer kept" in text(gone)


def test_import_result_page_leads_with_the_campaign_name_and_outcome(client, operator, campaign):
    client.force_login(operator)
    result = client.post(
        reverse("admin:leads_lead_import_confirm"),
        {"ticket": ticket_in(preview_upload(client, campaign))},
        follow=True,
    )
    page = text(result)
    assert f"into {campaign.name}" in page and "into campaign #" not in page
    assert page.index("import-outcome") < page.index("field-file_sha256")
    assert "<strong>2</strong> New" in page and "<strong>1</strong> Invalid" in page


# --- import: rejected rows with their original columns --------------------------------------


def imported_batch(client, campaign):
    from leads.models import ImportBatch

    client.post(
        reverse("admin:leads_lead_import_confirm"),
        {"ticket": ticket_in(preview_upload(client, campaign))},
    )
    return ImportBatch.objects.order_by("-pk").first()


def rejected_rows(client, batch) -> list[list[str]]:
    response = client.get(reverse("admin:leads_importbatch_rejected", args=[batch.pk]))
    assert response.streaming
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_rejected_rows_csv_has_the_original_columns_and_a_reason_and_can_be_reimported(
    client, operator, campaign
):
    client.force_login(operator)
    batch = imported_batch(client, campaign)
    rows = rejected_rows(client, batch)
    assert rows[0] == ["Work Email", "Given", "Last Name", "Firm", "Notes", "reason"]
    assert rows[1][:5] == ["broken", "Bob", "Jones", "Beta", ""]
    assert rows[1][5].startswith("Invalid: ") and "email" in rows[1][5].lower()
    assert rows[2][:5] == ["ANN@acme.example", "Ann", "Smith", "Acme", ""]
    assert rows[2][5].startswith("Duplicate in the file")
    assert len(rows) == 3
    page = text(client.get(reverse("admin:leads_importbatch_change", args=[batch.pk])))
    assert "with each row's original columns and a reason column" in page

    fixed = "\n".join(",".join(r) for r in [rows[0], ["bob@beta.example", *rows[1][1:]]])
    again = preview_upload(client, campaign, fixed + "\n")
    assert {h: c for _, h, c in again.context["columns"]}["reason"] == "custom"
    skip_reason = remap(client, again, reason="")
    client.post(reverse("admin:leads_lead_import_confirm"), {"ticket": ticket_in(skip_reason)})
    bob = Lead.objects.get(email_key="bob@beta.example")
    assert bob.last_name == "Jones" and bob.custom_fields == {"Given": "Bob", "Firm": "Beta"}


def test_once_the_upload_is_gone_the_csv_has_row_numbers_and_the_page_says_why(
    client, operator, campaign
):
    from leads.services.runs import import_uploads_forget

    client.force_login(operator)
    batch = imported_batch(client, campaign)
    assert import_uploads_forget() == 1
    batch.refresh_from_db()
    assert batch.stored_path == ""
    rows = rejected_rows(client, batch)
    assert rows[0] == ["row", "column", "kind", "reason"]
    assert [r[0] for r in rows[1:]] == ["3", "4"]
    page = text(client.get(reverse("admin:leads_importbatch_change", args=[batch.pk])))
    assert "the uploaded file is no longer kept" in page


def test_kept_uploads_expire_after_a_week_and_an_erasure_deletes_them_all(
    client, operator, campaign
):
    import datetime as dt
    from pathlib import Path

    from django.utils import timezone

    from leads.services.privacy import lead_erase
    from leads.services.runs import KEPT_UPLOAD_DAYS, import_batches_recover

    client.force_login(operator)
    batch = imported_batch(client, campaign)
    stored = Path(batch.stored_path)
    assert stored.is_file()
    import_batches_recover()  # the minutely schedule: too young to forget
    assert stored.is_file()
    import_batches_recover(now=timezone.now() + dt.timedelta(days=KEPT_UPLOAD_DAYS, hours=1))
    assert not stored.exists()

    batch = imported_batch(
        client,
        campaign.__class__.objects.create(venture=campaign.venture, name="Second", slug="second"),
    )
    stored = Path(batch.stored_path)
    assert stored.is_file()
    lead_erase(email="carl@gamma.example", actor=operator)
    assert not stored.exists()
    batch.refresh_from_db()
    assert batch.stored_path == ""


def test_a_background_run_reads_the_rows_with_the_mapping_the_operator_confirmed(
    campaign, operator, write_csv
):
    from leads.services.imports import import_batch_create
    from leads.services.runs import import_batch_run_now

    path = write_csv(IMPORT_CSV)
    batch = import_batch_create(
        campaign=campaign,
        source_path=path,
        file_name="spring.csv",
        actor=operator,
        background=True,
        choices={"Given": "first_name", "Firm": "company", "Notes": ""},
    )
    assert batch.mapping["Given"] == "first_name" and "Notes" not in batch.mapping
    assert import_batch_run_now(batch_id=batch.pk)
    carl = Lead.objects.get(email_key="carl@gamma.example")
    assert (carl.first_name, carl.company, carl.custom_fields) == ("Carl", "Gamma", {})
