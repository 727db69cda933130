"""Every list and every action of the console, walked from the admin site's registry.

- Every changelist action and every change-page button of every registered ModelAdmin renders
  a confirmation page naming the selected objects (or Django's refusal to delete what other
  rows protect), and neither a GET nor an unconfirmed POST
  changes anything in the database or sends anything: a new action that acts at once fails
  here. The two that only open another page (the import upload, the capture links) are named.
- Django's "delete selected" is not offered where deletion must be refused.
- Every changelist an Operator of one venture opens names nothing of another venture, in its
  rows or in its filters' choices; the new filters narrow the lists as they say.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

import pytest
import time_machine
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group
from django.core import mail
from django.test import RequestFactory
from django.urls import reverse
from django_q.models import OrmQ, Schedule, Task

from leads.models import ScoringRule
from leads.services.rules import campaign_lead_policy_set
from outreach.dispatch import tick
from outreach.feedback import reply_record
from outreach.models import (
    AutoPause,
    DispatchRun,
    Mailbox,
    MessageState,
    ObjectionRule,
    OutboundMessage,
    RoutingRule,
    StepKind,
)
from outreach.tests.outbox import NOON, running_campaign, two_step_sequence
from reporting.models import ReportFile, ReportSchedule
from tests.factories import (
    IcpSegmentFactory,
    ImportBatchFactory,
    LeadFactory,
    MembershipFactory,
    SuppressionEntryFactory,
    UserFactory,
    VentureFactory,
)
from tests.http import text
from ventures.admin_toolkit import OperationsAdmin
from ventures.models import AuditEvent, SystemControl
from ventures.roles import OPERATOR
from ventures.services import audit_record, venture_api_token_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]

# Actions that change nothing themselves: each opens another page, which confirms or shows.
NAVIGATION_ACTIONS = {
    ("ventures.campaign", "import_leads_into_campaign"),  # the import's upload and preview
    ("ventures.campaign", "show_capture_links"),  # shows the links, changes nothing
}


def populate(prefix: str):
    """One venture named `prefix` with a row for every console model: a running campaign
    with a mailbox, a two-step sequence (an email, then a call task) and two leads, ticked
    once (sent emails, render logs, a run) and a task come due, a reply, an import batch, a suppression entry, a
    scoring rule, a policy, a routing rule, a report and its schedule, an API token."""
    venture = VentureFactory(name=f"{prefix} Co", slug=f"{prefix.lower()}-co")
    with time_machine.travel(NOON, tick=False):
        campaign = running_campaign(venture=venture, name=f"{prefix} Launch")
        sequence = two_step_sequence(campaign, second=StepKind.CALL, delay_days=0)
        sequence.steps.get(position=1).templates.update(name=f"{prefix} Opener")
        mailbox = Mailbox.objects.create(
            venture=venture,
            name=f"{prefix} sender",
            from_email=f"sam@{prefix.lower()}-mail.example",
            daily_limit=500,
        )
        mailbox.campaigns.add(campaign)
        segment = IcpSegmentFactory(venture=venture, name=f"{prefix} Segment")
        LeadFactory(campaign=campaign, email=f"ann@{prefix.lower()}-lead.example")
        LeadFactory(campaign=campaign, email=f"bob@{prefix.lower()}-lead.example")
        tick()  # the emails go; the call tasks that follow are planned
    sent = OutboundMessage.objects.filter(campaign=campaign, state=MessageState.SENT).first()
    reply_record(message=sent, sentiment="positive", actor="esp", notes="Keen.")
    calls = OutboundMessage.objects.filter(campaign=campaign, kind=StepKind.CALL)
    calls.update(state=MessageState.TASK_OPEN, reason_code="")  # as if it had come due
    ImportBatchFactory(campaign=campaign, file_name=f"{prefix.lower()}-list.csv")
    SuppressionEntryFactory(venture=venture, value=f"no@{prefix.lower()}-lead.example")
    ScoringRule.objects.create(venture=venture, label=f"{prefix} title", field="title", points=5)
    campaign_lead_policy_set(campaign=campaign, cross_campaign="skip_active", actor="test")
    RoutingRule.objects.create(campaign=campaign, sequence=sequence, segment=segment, priority=1)
    AutoPause.objects.create(campaign=campaign, mailbox=mailbox, reason="bounce rate 9%")
    ReportFile.objects.create(
        campaign=campaign, format="html", path=f"{prefix}.html", sha256="0" * 64, generated_by="t"
    )
    ReportSchedule.objects.create(campaign=campaign)
    venture_api_token_create(venture=venture, name=f"{prefix} form", actor="test")
    audit_record(actor="test", action="campaign.note", entity=campaign, reason="set up")
    return campaign


@pytest.fixture
def world(db):
    """Two ventures' worth of rows, and one of each site-wide model (the global switch, an
    objection rule, a group, django-q2's schedule, tasks and queue)."""
    populate("Alpha")
    populate("Bravo")
    SystemControl.load()
    ObjectionRule.objects.create(category="price", pattern="too expensive", priority=1)
    Group.objects.get_or_create(name="Interns")
    Schedule.objects.create(func="math.floor", args="1")
    started = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    for success in (True, False):
        Task.objects.create(
            id=f"task-{success}", name=f"tick-{success}", func="math.floor", args=(1.5,),
            started=started, stopped=started, success=success,
        )  # fmt: skip
    OrmQ.objects.create(key="default", payload="x", lock=started)
    mail.outbox.clear()


@pytest.fixture
def root(client):
    user = UserFactory(username="root", is_superuser=True)
    client.force_login(user)
    return user


def database_state() -> dict[str, list]:
    """Every row of every table the project or its admins write (sessions aside)."""
    state = {}
    for model in apps.get_models():
        if model._meta.proxy or model._meta.db_table == "django_session":
            continue
        state[model._meta.label] = list(model._base_manager.order_by("pk").values_list())
    return state


def as_request(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def registered_actions(user):
    for model, model_admin in admin.site._registry.items():
        for name in model_admin.get_actions(as_request(user)):
            yield model, model_admin, name


def named(page: str, model_admin, request, obj) -> bool:
    """The confirm page names `obj`: as the admin's confirm label or as the object itself."""
    labels = [str(obj)]
    if isinstance(model_admin, OperationsAdmin):
        labels.append(model_admin.confirm_label(request, obj))
    return any(label in page for label in labels)  # `text()` decoded the entities


def test_every_action_confirms_naming_the_selection_and_changes_nothing_before(world, client, root):
    tried = []
    for model, model_admin, name in registered_actions(root):
        opts = model._meta
        if (opts.label_lower, name) in NAVIGATION_ACTIONS:
            continue
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        selection = list(client.get(url).context["cl"].result_list[:2])  # as the list shows
        assert selection, f"{opts.label}: no row to try {name!r} on; add one to populate()"
        before = database_state()
        response = client.post(
            url, {"action": name, ACTION_CHECKBOX_NAME: [o.pk for o in selection]}
        )
        where = f"{opts.label} action {name!r}"
        if response.status_code == 302:  # refused before any confirmation: back to the list
            page = text(client.get(response.url))
            assert "Nothing was deleted." in page, f"{where} acted at once"
            assert database_state() == before, f"{where} changed the database"
            tried.append(where)
            continue
        assert response.status_code == 200, f"{where} acted at once ({response.status_code})"
        page = text(response)
        # A confirmation, or Django's "Cannot delete" (objects that protect the selection).
        refused = "<title>Cannot delete" in page  # it names the protecting rows instead
        assert refused or 'name="post" value="yes"' in page, f"{where} shows no confirmation"
        for obj in [] if refused else selection:
            assert named(page, model_admin, as_request(root), obj), f"{where} does not name {obj}"
        assert database_state() == before, f"{where} changed the database before confirming"
        assert mail.outbox == [], f"{where} sent email before confirming"
        tried.append(where)
    assert len(tried) >= 30  # every app's actions were walked, not just a few


def test_actions_that_only_open_another_page_change_nothing(world, client, root):
    for label, name in NAVIGATION_ACTIONS:
        model = apps.get_model(label)
        pk = model._default_manager.order_by("pk").values_list("pk", flat=True)[0]
        before = database_state()
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        client.post(url, {"action": name, ACTION_CHECKBOX_NAME: [pk]}, follow=True)
        assert database_state() == before


def test_every_button_confirms_naming_its_object_and_a_get_or_unconfirmed_post_changes_nothing(
    world, client, root
):
    tried = 0
    for model, model_admin in admin.site._registry.items():
        if not isinstance(model_admin, OperationsAdmin):
            continue
        obj = model_admin.get_queryset(as_request(root)).order_by("pk").first()
        assert obj is not None, f"{model._meta.label}: no row to try its buttons on"
        for name in model_admin.operations:
            before = database_state()
            url = model_admin.operation_url(obj, name)
            for response in (client.get(url), client.post(url)):
                where = (
                    f"{model._meta.label} button {name!r} ({response.request['REQUEST_METHOD']})"
                )
                assert response.status_code == 200, where
                page = text(response)
                assert 'name="post" value="yes"' in page, f"{where} shows no confirmation"
                assert named(page, model_admin, as_request(root), obj), f"{where}: which object?"
            assert database_state() == before, f"{model._meta.label} {name!r} acted unconfirmed"
            assert mail.outbox == []
            tried += 1
    assert tried >= 25


@pytest.mark.parametrize(
    "label",
    [
        "ventures.campaign",
        "ventures.auditevent",
        "ventures.systemcontrol",
        "leads.lead",
        "leads.importbatch",
        "leads.unsubscribe",
        "templating.messagetemplate",
        "templating.messagetemplateversion",
        "templating.renderlog",
        "outreach.outboundmessage",
        "outreach.manualtask",
        "outreach.feedbackevent",
        "outreach.dispatchrun",
        "outreach.narrativestat",
        "outreach.autopause",
    ],
)
def test_delete_selected_is_not_offered_where_deletion_is_refused(world, root, label):
    """A campaign is deleted from its page only (a running one is refused there); messages,
    audit rows, imports, unsubscribes, template versions and figures are records."""
    model_admin = admin.site.get_model_admin(apps.get_model(label))
    assert "delete_selected" not in model_admin.get_actions(as_request(root))


# Where Django's own "Delete selected" (its page lists what the deletion cascades to) is enough:
# rules, settings and accounts whose rows hold no sending history, and whose absence sends
# nothing that was held back. Ventures and ICP segments, whose deletion takes rules and
# suppressions with it, go through the guarded delete. Anything else offers the toolkit's
# guarded delete, or none.
BARE_DELETE_ALLOWED = {
    "leads.scoringrule",
    "leads.campaignleadpolicy",
    "outreach.routingrule",
    "outreach.objectionrule",
    "reporting.reportschedule",
    "auth.group",
    "auth.user",
    "django_q.schedule",
    "django_q.success",
    "django_q.failure",
    "django_q.ormq",
}


def test_a_bare_delete_selected_is_offered_only_where_deleting_loses_no_history(world, root):
    """Report files, sequences, mailboxes, ventures, ICP segments and suppressions (and every
    new model) must not offer Django's delete_selected: it asks no reason, audits nothing and
    guards nothing."""
    offered = {
        model._meta.label_lower
        for model, model_admin, name in registered_actions(root)
        if name == "delete_selected"
        or model_admin.get_actions(as_request(root))[name][0] is django_delete_selected
    }
    assert offered - BARE_DELETE_ALLOWED == set()


@pytest.mark.parametrize(
    ("label", "action"),
    [
        ("reporting.reportfile", "delete_confirmed"),
        ("outreach.sequence", "delete_confirmed"),
        ("outreach.mailbox", "delete_confirmed"),
        ("ventures.venture", "delete_confirmed"),
        ("ventures.icpsegment", "delete_confirmed"),
        ("leads.suppressionentry", "lift_suppressions"),
    ],
)
def test_history_and_suppressions_go_only_through_a_guarded_confirmed_action(
    world, root, label, action
):
    model_admin = admin.site.get_model_admin(apps.get_model(label))
    actions = model_admin.get_actions(as_request(root))
    assert action in actions and "delete_selected" not in actions


# --- Lists: venture scoping of rows and filters ---------------------------------------------


@pytest.fixture
def bravo_operator(world, client):
    user = UserFactory(username="op-bravo", role=OPERATOR)
    MembershipFactory(user=user, venture=VentureFactory._meta.model.objects.get(name="Bravo Co"))
    client.force_login(user)
    return user


ALPHA_NAMES = ("Alpha Co", "Alpha Launch", "Alpha Opener", "alpha-mail.example", "Alpha Segment")


def test_an_operator_sees_nothing_of_another_venture_in_any_list_or_filter(client, bravo_operator):
    opened = 0
    for model, model_admin in admin.site._registry.items():
        if not model_admin.has_view_or_change_permission(as_request(bravo_operator)):
            continue
        opts = model._meta
        response = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        if response.status_code == 302:  # the global switch's list is its page
            response = client.get(response.url)
        assert response.status_code == 200, opts.label
        page = text(response)
        for name in ALPHA_NAMES:
            assert name not in page, f"{opts.label} shows {name!r} to an Operator of Bravo"
        opened += 1
    assert opened >= 20


def filter_choices(client, url_name: str, title: str) -> list[str]:
    """The choices a changelist's filter `title` offers, as shown."""
    cl = client.get(reverse(url_name)).context["cl"]
    spec = next(s for s in cl.filter_specs if str(s.title) == title)
    return [str(c["display"]) for c in spec.choices(cl)]


@pytest.mark.parametrize(
    ("url_name", "title", "own"),
    [
        ("admin:outreach_outboundmessage_changelist", "campaign", "Bravo Co / Bravo Launch"),
        ("admin:outreach_outboundmessage_changelist", "mailbox", "Bravo Co / sam@bravo-mail.example"),
        ("admin:outreach_autopause_changelist", "mailbox", "Bravo Co / sam@bravo-mail.example"),
        ("admin:outreach_dispatchrun_changelist", "campaign", "Bravo Co / Bravo Launch"),
        ("admin:templating_messagetemplate_changelist", "campaign", "Bravo Co / Bravo Launch"),
        ("admin:templating_renderlog_changelist", "template", "Bravo Co / Bravo Opener"),
        ("admin:reporting_reportfile_changelist", "campaign", "Bravo Co / Bravo Launch"),
        ("admin:reporting_reportschedule_changelist", "campaign", "Bravo Co / Bravo Launch"),
    ],
)  # fmt: skip
def test_related_filters_offer_only_the_operators_own_ventures_objects(
    client, bravo_operator, url_name, title, own
):
    choices = filter_choices(client, url_name, title)
    assert [c for c in choices if c.startswith(own)]
    assert not [c for c in choices if "Alpha" in c or "alpha" in c]


def since(start: dt.datetime, *, field: str, until: dt.datetime | None = None) -> str:
    """A date filter's query string, as DateFieldListFilter's links write it."""
    query = {f"{field}__gte": str(start)}
    if until is not None:
        query[f"{field}__lt"] = str(until)
    return urlencode(query)


def listed(client, url_name: str, query: str = "") -> list:
    response = client.get(reverse(url_name) + query)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_the_message_list_narrows_by_mailbox_step_sent_date_and_reason(client, root):
    with time_machine.travel(NOON, tick=False):
        campaign = populate("Alpha")
        other = running_campaign(name="Elsewhere")
        two_step_sequence(other)
        LeadFactory(campaign=other, email="zed@elsewhere.example")
        tick()
    url = "admin:outreach_outboundmessage_changelist"
    box = Mailbox.objects.get(venture=campaign.venture)
    by_box = listed(client, url, f"?mailbox={box.pk}")
    assert by_box and {m.campaign_id for m in by_box} == {campaign.pk}
    firsts = listed(client, url, "?step=1")
    assert firsts and {m.step.position for m in firsts} == {1}
    OutboundMessage.objects.filter(recipient="zed@elsewhere.example").update(
        state=MessageState.BLOCKED, reason_code="suppressed"
    )
    assert {m.recipient for m in listed(client, url, "?reason_code=suppressed")} == {
        "zed@elsewhere.example"
    }
    assert "suppressed" in filter_choices(client, url, "reason")
    day = NOON.replace(hour=0)  # the ranges the filter's own links carry (aware times)
    sent = listed(client, url, "?" + since(day, until=day + dt.timedelta(days=1), field="sent_at"))
    assert sent and all(m.sent_at.date() == NOON.date() for m in sent)
    assert listed(client, url, "?" + since(NOON + dt.timedelta(days=30), field="sent_at")) == []


def test_the_message_search_finds_the_start_of_an_address_in_any_case(client, root):
    populate("Alpha")
    url = "admin:outreach_outboundmessage_changelist"
    assert {m.recipient for m in listed(client, url, "?q=ANN@ALPHA")} == {"ann@alpha-lead.example"}
    assert listed(client, url, "?q=alpha-lead") == []  # a prefix of the address, not a part


def test_the_run_list_narrows_by_worker_and_outcome(client, root):
    DispatchRun.objects.create(worker="host-a:11", mode="proof", finished_at=NOON)
    DispatchRun.objects.create(worker="host-b:12", mode="proof", error="database gone")
    DispatchRun.objects.create(worker="host-b:12", mode="proof")
    url = "admin:outreach_dispatchrun_changelist"
    assert filter_choices(client, url, "worker") == ["All", "host-a:11", "host-b:12"]
    assert [r.worker for r in listed(client, url, "?worker=host-a:11")] == ["host-a:11"]
    assert [r.error for r in listed(client, url, "?outcome=error")] == ["database gone"]
    assert [r.worker for r in listed(client, url, "?outcome=ok")] == ["host-a:11"]
    assert len(listed(client, url, "?outcome=running")) == 1


def test_the_feedback_list_filters_by_source_and_searches_the_address(client, root):
    populate("Alpha")
    url = "admin:outreach_feedbackevent_changelist"
    assert "manual" in filter_choices(client, url, "source")
    assert len(listed(client, url, "?source=manual")) == 1
    assert len(listed(client, url, "?q=Ann@Alpha-Lead")) == 1


def test_bad_filter_values_are_ignored_or_empty_never_a_500(client, root):
    populate("Alpha")
    for query in ("?step=x", "?step=99999999999", "?mailbox=abc", "?reason_code=" + "x" * 300):
        response = client.get(reverse("admin:outreach_outboundmessage_changelist") + query)
        assert response.status_code in (200, 302), query


def test_the_audit_log_narrows_by_date(client, root):
    populate("Alpha")
    url = "admin:ventures_auditevent_changelist"
    late, early = dt.datetime(2999, 1, 1, tzinfo=dt.UTC), dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    assert listed(client, url, "?" + since(late, field="created_at")) == []
    assert AuditEvent.objects.exists() and listed(
        client, url, "?" + since(early, field="created_at")
    )


@pytest.mark.parametrize(
    "url_name",
    [
        "admin:leads_lead_changelist",
        "admin:outreach_outboundmessage_changelist",
        "admin:outreach_feedbackevent_changelist",
        "admin:ventures_auditevent_changelist",
    ],
)
def test_lists_too_big_to_count_offer_no_facet_counts(client, root, url_name):
    populate("Alpha")
    response = client.get(reverse(url_name) + "?_facets=True")
    assert "Show counts" not in text(response)
    assert response.context["cl"].add_facets is False


def test_a_wrapped_foreign_action_runs_once_confirmed_and_is_audited(world, client, root):
    """django-q2's "Resubmit selected tasks" queues the task again, only after its confirm
    page, and each resubmitted task leaves an audit row with the reason."""
    failed = Task.objects.get(success=False)
    url = reverse("admin:django_q_failure_changelist")
    data = {"action": "resubmit_task", ACTION_CHECKBOX_NAME: [failed.pk]}
    confirm = text(client.post(url, data))
    assert "Resubmit tasks to queue: are you sure?" in confirm and failed.name in confirm
    assert Task.objects.filter(pk=failed.pk).exists()
    client.post(url, {**data, "post": "yes", "reason": "the database is back"})
    assert not Task.objects.filter(pk=failed.pk).exists()  # queued again (django-q2 drops it)
    event = AuditEvent.objects.get(action="failure.resubmit_task")
    assert (event.entity_id, event.reason) == (failed.pk, "the database is back")
