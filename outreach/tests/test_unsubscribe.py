"""The unsubscribe link /u/<token>/ as recipients, link scanners and mail clients use it, and
the List-Unsubscribe headers that point at it."""

from __future__ import annotations

import email
import email.policy
import re

import pytest
from django.core import signing
from django.core.mail import EmailMessage
from django.test import Client

from leads.models import Lead, LeadStatus, SuppressionEntry, Unsubscribe
from leads.selectors import unsubscribe_reason_counts
from leads.services.privacy import lead_erase
from leads.signals import lead_unsubscribed
from outreach.context import lead_context, sample_lead
from outreach.headers import (
    sender_domain,
    unsubscribe_headers,
    unsubscribe_token_from_mailto,
)
from outreach.unsubscribe import (
    UNSUBSCRIBE_SALT,
    masked_email,
    unsubscribe_token,
    unsubscribe_token_read,
    unsubscribe_url,
)
from tests.factories import CampaignFactory, LeadFactory, VentureFactory
from ventures.models import AuditEvent

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]

ANN = "anna@prospect.example"
ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058's body, as mail clients send it


@pytest.fixture
def lead(campaign):
    return LeadFactory(campaign=campaign, email=ANN)


@pytest.fixture
def strict():
    """A client like a mail provider's: no cookie, no CSRF token, and CSRF checks enforced."""
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def signals():
    sent: list[dict] = []
    lead_unsubscribed.connect(
        lambda sender, **kw: sent.append(kw), dispatch_uid="test.view", weak=False
    )
    yield sent
    lead_unsubscribed.disconnect(dispatch_uid="test.view")


def path_of(lead: Lead) -> str:
    return f"/u/{unsubscribe_token(lead)}/"


def one_click(client: Client, path: str):
    return client.post(path, ONE_CLICK, content_type="application/x-www-form-urlencoded")


def nothing_written() -> bool:
    return not (
        Unsubscribe.objects.exists()
        or SuppressionEntry.objects.exists()
        or AuditEvent.objects.filter(action__startswith="leads.unsubscribe").exists()
        or Lead.objects.exclude(status=LeadStatus.ACTIVE).exists()
    )


# --- GET: a page with a button, never an unsubscribe ------------------------------------------


@pytest.mark.parametrize("method", ["get", "head"])
def test_opening_the_link_never_unsubscribes(strict, lead, method):
    response = getattr(strict, method)(path_of(lead))

    assert response.status_code == 200
    assert nothing_written()


def test_the_page_names_the_venture_and_the_masked_address_with_a_post_button(strict, lead):
    page = strict.get(path_of(lead)).content.decode()

    assert lead.venture.name in page
    assert "an***@prospect.example" in page and ANN not in page
    assert re.search(r'<form method="post">\s*<button type="submit"', page)
    assert "<script" not in page and "http" not in page.split("</style>")[1]  # no CDN, no JS
    assert "Cache-Control" in strict.get(path_of(lead)).headers


def test_the_unsubscribe_url_of_a_message_opens_this_page(strict, lead, campaign):
    url = lead_context(lead=lead, campaign=campaign)["unsubscribe_url"]

    assert url == "http://localhost:8000" + path_of(lead) == unsubscribe_url(lead)
    assert strict.get(url.removeprefix("http://localhost:8000")).status_code == 200


# --- POST: one click, no cookie, no CSRF token --------------------------------------------------


def test_rfc_8058_one_click_unsubscribes_without_cookie_or_csrf_token(strict, lead):
    response = one_click(strict, path_of(lead))

    assert response.status_code == 200
    assert "You are unsubscribed" in response.content.decode()
    lead.refresh_from_db()
    assert lead.status == LeadStatus.UNSUBSCRIBED
    assert Unsubscribe.objects.get().source == "one-click"
    assert not strict.cookies  # no session was needed, none was made


def test_the_pages_button_unsubscribes_too(strict, lead):
    response = strict.post(path_of(lead), {"confirm": "1"})

    assert response.status_code == 200
    lead.refresh_from_db()
    assert lead.status == LeadStatus.UNSUBSCRIBED
    assert Unsubscribe.objects.get().source == "link"
    assert 'name="reason"' in response.content.decode()  # the optional reason is offered


def test_repeated_posts_are_idempotent_and_signal_once(strict, lead, signals):
    responses = [one_click(strict, path_of(lead)) for _ in range(3)]
    responses.append(strict.post(path_of(lead)))

    assert [r.status_code for r in responses] == [200, 200, 200, 200]
    assert Unsubscribe.objects.count() == 1
    assert AuditEvent.objects.filter(action="leads.unsubscribe").count() == 1
    assert [(s["venture_id"], s["lead_ids"]) for s in signals] == [(lead.venture_id, [lead.pk])]


def test_the_persons_other_campaigns_in_the_venture_stop_but_not_another_ventures(strict, lead):
    sibling = LeadFactory(campaign=CampaignFactory(venture=lead.venture), email=ANN)
    elsewhere = LeadFactory(campaign=CampaignFactory(venture=VentureFactory()), email=ANN)

    one_click(strict, path_of(lead))

    statuses = dict(Lead.objects.values_list("pk", "status"))
    assert statuses[sibling.pk] == LeadStatus.UNSUBSCRIBED
    assert statuses[elsewhere.pk] == LeadStatus.ACTIVE


def test_a_reason_posted_after_the_unsubscribe_is_stored_and_counted(strict, lead, campaign):
    one_click(strict, path_of(lead))

    response = strict.post(
        path_of(lead), {"reason": "not_relevant", "comment": "We do not sell to EU firms."}
    )

    assert response.status_code == 200
    assert "Thank you for telling us why" in response.content.decode()
    record = Unsubscribe.objects.get()
    assert (record.reason, record.comment) == ("not_relevant", "We do not sell to EU firms.")
    assert unsubscribe_reason_counts(campaign=campaign)["not_relevant"] == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"reason": "spam-me-more"}, "Select a valid choice"),
        ({"reason": "other", "comment": "x" * 501}, "at most 500 characters"),
        ({"reason": "other", "comment": "nul \x00 here"}, "Null characters are not allowed"),
    ],
)
def test_a_reason_that_cannot_be_stored_is_a_message_and_the_unsubscribe_still_holds(
    strict, lead, data, message
):
    response = strict.post(path_of(lead), data)

    assert response.status_code == 400
    assert message in response.content.decode()
    record = Unsubscribe.objects.get()
    assert (record.reason, record.comment) == ("", "")
    lead.refresh_from_db()
    assert lead.status == LeadStatus.UNSUBSCRIBED


def test_other_methods_are_refused_without_an_error_page(strict, lead):
    assert strict.put(path_of(lead)).status_code == 405
    assert nothing_written()


# --- Tokens that name nobody ----------------------------------------------------------------------


def _forged(lead: Lead) -> str:
    payload, stamp, signature = unsubscribe_token(lead).split(":")
    return f"{payload}:{stamp}:{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


def _someone_elses(lead: Lead) -> str:
    # The signed token of one lead with the payload of another: the signature does not match.
    other = LeadFactory(campaign=lead.campaign)
    _, stamp, signature = unsubscribe_token(lead).split(":")
    return f"{unsubscribe_token(other).split(':')[0]}:{stamp}:{signature}"


BAD_TOKENS = {
    "garbled": lambda lead: "not-a-token",
    "forged signature": _forged,
    "another lead's payload": _someone_elses,
    "signed with another salt": lambda lead: signing.dumps(lead.pk, salt="leads.capture"),
    "signed without a salt": lambda lead: signing.dumps(lead.pk),
    "not a lead id": lambda lead: signing.dumps({"id": lead.pk}, salt=UNSUBSCRIBE_SALT),
    "a lead that no longer exists": lambda lead: signing.dumps(10**12, salt=UNSUBSCRIBE_SALT),
    "far too long": lambda lead: "A" * 5000,
}


@pytest.mark.parametrize("kind", BAD_TOKENS)
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_token_that_names_nobody_is_a_friendly_404_and_writes_nothing(strict, lead, kind, method):
    path = f"/u/{BAD_TOKENS[kind](lead)}/"

    response = strict.get(path) if method == "get" else one_click(strict, path)

    assert response.status_code == 404
    assert "This unsubscribe link is not valid" in response.content.decode()
    assert nothing_written()


def test_an_erased_persons_link_is_a_404_and_writes_nothing(strict, lead):
    path = path_of(lead)
    lead_erase(email=ANN, actor="test")

    response = one_click(strict, path)

    assert response.status_code == 404
    assert not Unsubscribe.objects.exists()
    assert not AuditEvent.objects.filter(action="leads.unsubscribe").exists()


def test_the_previews_sample_link_unsubscribes_nobody(strict, campaign):
    LeadFactory(campaign=campaign)
    url = unsubscribe_url(sample_lead(campaign))

    response = one_click(strict, url.removeprefix("http://localhost:8000"))

    assert response.status_code == 404
    assert "sample link of a message preview" in response.content.decode()
    assert nothing_written()


def test_a_bad_token_costs_no_database_query(strict, lead, django_assert_num_queries):
    token = _forged(lead)
    with django_assert_num_queries(0):
        assert one_click(strict, f"/u/{token}/").status_code == 404


def test_token_read_gives_the_lead_id_the_sample_or_nothing(lead, campaign):
    assert unsubscribe_token_read(unsubscribe_token(lead)) == lead.pk
    assert unsubscribe_token_read(unsubscribe_token(sample_lead(campaign))) == "sample"
    assert unsubscribe_token_read(signing.dumps(True, salt=UNSUBSCRIBE_SALT)) is None
    assert unsubscribe_token_read("") is None


@pytest.mark.parametrize(
    ("email", "shown"),
    [
        ("anna@example.com", "an***@example.com"),
        ("al@example.com", "a***@example.com"),
        ("a@example.com", "a***@example.com"),
        ("", ""),
    ],
)
def test_the_address_is_masked(email, shown):
    assert masked_email(email) == shown


# --- Headers (RFC 2369, RFC 8058) ------------------------------------------------------------------


def test_headers_offer_the_https_link_first_then_mailto_and_announce_one_click(lead, settings):
    settings.AICMO_SITE_URL = "https://aicmo.example.com"
    token = unsubscribe_token(lead)

    headers = unsubscribe_headers(
        lead=lead, mailbox_address="Sam Sender <sam@Mail.Venture.example>"
    )

    assert headers == {
        "List-Unsubscribe": (
            f"<https://aicmo.example.com/u/{token}/>, "
            f"<mailto:unsubscribe@mail.venture.example?subject=unsubscribe%20{token.replace(':', '%3A')}>"
        ),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    # RFC 2369: a comma-separated list of URIs in angle brackets, nothing else.
    assert re.fullmatch(r"<[^<>\s]+>(, <[^<>\s]+>)*", headers["List-Unsubscribe"])


def test_the_headers_link_takes_the_one_click_post_of_a_mail_client(strict, lead):
    link = unsubscribe_headers(lead=lead, mailbox_address="sam@venture.example")[
        "List-Unsubscribe"
    ].split(">")[0][1:]

    one_click(strict, link.removeprefix("http://localhost:8000"))

    lead.refresh_from_db()
    assert lead.status == LeadStatus.UNSUBSCRIBED


def test_headers_arrive_whole_in_a_real_message(lead):
    headers = unsubscribe_headers(lead=lead, mailbox_address="sam@venture.example")
    message = EmailMessage("Hi", "Body", "sam@venture.example", [ANN], headers=headers)

    received = email.message_from_bytes(message.message().as_bytes(), policy=email.policy.default)

    # Folded at the comma on the way; unfolded, it is the header as given.
    assert received["List-Unsubscribe"].strip() == headers["List-Unsubscribe"]
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize(
    "carrier",
    [
        lambda mailto, token: mailto,  # the header's URI itself
        lambda mailto, token: f"unsubscribe {token}",  # the subject as sent
        lambda mailto, token: f"Re: unsubscribe {token}",  # a reply to it
        lambda mailto, token: f"=?utf-8?q?x?= AW: unsubscribe {token} (sent from my phone)",
    ],
)
def test_the_mailto_token_can_be_read_back_to_its_lead(lead, carrier):
    mailto = unsubscribe_headers(lead=lead, mailbox_address="sam@venture.example")[
        "List-Unsubscribe"
    ].split(", ")[1][1:-1]

    token = unsubscribe_token_from_mailto(carrier(mailto, unsubscribe_token(lead)))

    assert unsubscribe_token_read(token) == lead.pk


def test_a_mail_without_a_token_gives_none():
    assert unsubscribe_token_from_mailto("unsubscribe") is None
    assert unsubscribe_token_from_mailto("Re: your offer: not now") is None


@pytest.mark.parametrize(
    ("address", "domain"),
    [
        ("sam@venture.example", "venture.example"),
        ("Sam Sender <SAM@Venture.Example>", "venture.example"),
        ("sam@bücher.example", "xn--bcher-kva.example"),
    ],
)
def test_the_mailto_goes_to_the_senders_domain(address, domain):
    assert sender_domain(address) == domain


@pytest.mark.parametrize(
    "address", ["", "no-at-sign", "sam@", "sam@localhost", "sam@evil.example\r\nBcc: x@y.example"]
)
def test_a_sender_that_is_no_address_with_a_domain_is_refused(address):
    with pytest.raises(ValueError, match="is not an email address with a domain"):
        sender_domain(address)
