"""Every changelist of the console, fed the query strings a hostile but ordinary user types.

Bad filter values (not numbers, Unicode digits, numbers past 64 bits, NUL, invalid UTF-8,
very long), bad search, ordering and page values: never a 500. An invalid filter value is
ignored with a message, as Django does for an invalid lookup.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.contrib import admin
from django.contrib.admin import SimpleListFilter
from django.db import connection
from django.test import RequestFactory
from django.urls import reverse

from tests.factories import CampaignFactory, ImportBatchFactory, LeadFactory, UserFactory
from ventures.roles import ADMINISTRATOR

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]

# Raw (already percent-encoded where it must be) query values; every filter parameter of
# every changelist gets each of them.
BAD_VALUES = [
    "abc",
    quote("²"),  # str.isdigit() says yes, int() says no
    quote("٣"),  # an Arabic-Indic digit: int() accepts it, an id parser must not
    "99999999999999999999999",
    "9223372036854775808",  # one past the 64-bit signed range
    "-1",
    "1.5",
    "1%00",
    "%00",
    "%ED%A0%80",  # a lone surrogate as UTF-8 bytes: invalid UTF-8
    "%FF",
    "x" * 5000,
    "",
]


def changelists() -> list[tuple[str, admin.ModelAdmin]]:
    return [
        (f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist", model_admin)
        for model, model_admin in admin.site._registry.items()
    ]


def filter_parameters(model_admin, user) -> list[str]:
    """Every query parameter the changelist's filters read, plus search, order and page."""
    request = RequestFactory().get("/")
    request.user = user
    names = ["q", "o", "p", "id__exact", "pk"]
    for spec in model_admin.get_list_filter(request):
        if isinstance(spec, type) and issubclass(spec, SimpleListFilter):
            names.append(spec.parameter_name)
            continue
        path = spec[0] if isinstance(spec, tuple) else spec
        names += [path, f"{path}__exact", f"{path}__id__exact", f"{path}__isnull"]
    return names


@pytest.fixture
def people(operator, campaign):
    LeadFactory(campaign=campaign)
    ImportBatchFactory(campaign=campaign)  # a filter without choices is not shown, nor run
    CampaignFactory()
    return {
        "administrator": UserFactory(username="adm-q", role=ADMINISTRATOR),
        "operator": operator,
    }


def status_of(client, url: str) -> int | str:
    try:
        return client.get(url).status_code
    except Exception as exc:  # the test client re-raises what a browser would see as a 500
        return f"{type(exc).__name__}: {str(exc)[:80]}"


def visible_changelists(client) -> list[tuple[str, admin.ModelAdmin]]:
    return [(n, a) for n, a in changelists() if client.get(reverse(n)).status_code != 403]


@pytest.mark.parametrize("role", ["administrator", "operator"])
def test_no_changelist_answers_500_to_bad_values_in_all_its_parameters_at_once(
    client, people, role
):
    client.force_login(people[role])
    failures = []
    for name, model_admin in visible_changelists(client):
        names = filter_parameters(model_admin, people[role])
        for value in BAD_VALUES:
            url = reverse(name) + "?" + "&".join(f"{n}={value}" for n in names)
            status = status_of(client, url)
            if not isinstance(status, int) or status >= 500:
                failures.append(f"{name} {value[:20]} -> {status}")
    assert not failures, failures


def test_no_id_filter_answers_500_to_any_bad_value_on_its_own(client, people):
    """Each of the console's own filters alone, so that no other filter's refusal hides it."""
    client.force_login(people["administrator"])
    failures = []
    for name, model_admin in visible_changelists(client):
        request = RequestFactory().get("/")
        request.user = people["administrator"]
        own = [
            f.parameter_name
            for f in model_admin.get_list_filter(request)
            if isinstance(f, type) and issubclass(f, SimpleListFilter)
        ]
        for parameter in own:
            for value in BAD_VALUES:
                status = status_of(client, f"{reverse(name)}?{parameter}={value}")
                if not isinstance(status, int) or status >= 500:
                    failures.append(f"{name}?{parameter}={value[:20]} -> {status}")
    assert not failures, failures


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("admin:leads_lead_changelist", "campaign"),
        ("admin:leads_lead_changelist", "batch"),
        ("admin:templating_messagetemplate_changelist", "venture"),
        ("admin:ventures_auditevent_changelist", "venture"),
    ],
)
@pytest.mark.parametrize("value", ["abc", quote("²"), quote("٣"), "99999999999999999999999"])
def test_an_invalid_id_filter_is_ignored_with_a_message(client, people, path, parameter, value):
    client.force_login(people["operator"])
    response = client.get(f"{reverse(path)}?{parameter}={value}", follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert any("is not an id and was ignored" in m for m in shown), shown


def test_a_lookup_the_database_cannot_take_shows_the_plain_list_with_a_message(client, people):
    """Django's own filter on auth users: past 64 bits SQLite overflows, and the guard answers
    with the plain list and a message; PostgreSQL's backend answers it as matching nothing."""
    client.force_login(people["administrator"])
    url = reverse("admin:auth_user_changelist")
    response = client.get(f"{url}?groups=99999999999999999999999", follow=True)
    assert response.status_code == 200
    if response.redirect_chain:
        assert response.redirect_chain == [(url, 302)]
        shown = [str(m) for m in response.context["messages"]]
        assert "The filter or search in the address was not valid and was ignored." in shown
    else:
        assert connection.vendor == "postgresql"


def test_a_lookup_django_refuses_shows_the_plain_list_with_a_message(client, people):
    client.force_login(people["administrator"])
    url = reverse("admin:auth_user_changelist")
    response = client.get(f"{url}?is_staff__exact=maybe&date_joined__gte=yesterday", follow=True)
    assert response.status_code == 200
    assert response.redirect_chain == [(url, 302)]
    shown = [str(m) for m in response.context["messages"]]
    assert "The filter or search in the address was not valid and was ignored." in shown
