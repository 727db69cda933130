"""The proof mode's .eml bytes are exactly the ones Django's `as_bytes()` makes."""

from __future__ import annotations

import random
from email import policy as email_policy
from email.header import MAXLINELEN, Header

import pytest
from django.core.mail import EmailMultiAlternatives

from outreach.sending import _QuickFold, _unfolded, email_bytes, plain_email_bytes

ALPHABET = "abcXYZ019 \t;,:<>@=?\"()'.-_/éü中\x7f"
NAMES = ("To", "From", "Subject", "Message-ID", "List-Unsubscribe-Post", "X-" + "a" * 40)


def header_values(rng: random.Random, count: int):
    fixed = [
        "",
        " ",
        "plain",
        "two words",
        "two  spaces",
        " leading",
        "trailing ",
        "tab\there",
        "=?utf-8?q?already_encoded?=",
        "List-Unsubscribe=One-Click",
        "<run-1.abc@mail.example.com>",
        "Ada Owner <owner@bench.example>",
        "x" * 70,
        "x" * 80,
        "word " * 20,
        "a;b,c d;e,f " * 8,
    ]
    yield from fixed
    printable = [chr(c) for c in range(0x21, 0x7F)]
    for _ in range(count):
        yield "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 120)))
        # Plain values of every length around the line's end: words, single spaces.
        words = ["".join(rng.choices(printable, k=rng.randint(1, 12))) for _ in range(12)]
        yield " ".join(words)[: rng.randint(1, 100)].strip()


@pytest.mark.parametrize("linesep", ["\n", "\r\n"])
def test_quick_fold_folds_every_header_as_the_standard_library_does(linesep):
    rng = random.Random(11)  # noqa: S311 - test data
    quick = _QuickFold(linesep=linesep)
    standard = email_policy.compat32.clone(linesep=linesep)
    for name in NAMES:
        for value in header_values(rng, 2000):
            assert quick.fold_binary(name, value) == standard.fold_binary(name, value), (
                name,
                value,
            )
            assert quick.fold(name, value) == standard.fold(name, value), (name, value)


def test_a_value_left_unfolded_is_what_a_header_without_a_name_encodes_it_to():
    rng = random.Random(5)  # noqa: S311 - test data
    for value in header_values(rng, 5000):
        if _unfolded(value, 0, MAXLINELEN):
            assert Header(value).encode() == value, value


@pytest.mark.parametrize(
    ("subject", "name", "html", "body"),
    [
        ("Quick question", "Ada Owner", "<p>Hi Bo,</p>", "Hi Bo,\n\nA short note.\n"),
        ("Re: Quick question", "", "", "Hi,\nplain text only\n"),
        ("Grüße aus Köln – ein Vorschlag", "Jörg Müller", "<p>Grüße</p>", "Grüße, Jörg\n"),
        ("A subject " * 12, "Sam", "", "x" * 1200 + "\nlong lines are quoted-printable\n"),
        ("emoji 🚀 in the subject", "中文 名字", "<b>中文</b>", "中文\n"),
    ],
)
def test_proof_eml_is_byte_for_byte_what_django_makes(settings, subject, name, html, body):
    settings.DEFAULT_CHARSET = "utf-8"
    email = EmailMultiAlternatives(
        subject=subject,
        body=body,
        from_email=f"{name} <sam@mail.example.com>" if name else "sam@mail.example.com",
        to=["bo.lead@example.org"],
        reply_to=["replies@example.com"],
        headers={
            "Message-ID": "<a1b2c3.0f0f0f0f0f0f@mail.example.com>",
            "List-Unsubscribe": "<https://aicmo.example/u/MTIz:1vGzQx:"
            + "A" * 43
            + "/>, <mailto:unsubscribe@mail.example.com?subject=unsubscribe%20MTIz%3A1vGzQx>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "In-Reply-To": "<first.0a0a0a0a0a0a@mail.example.com>",
            "References": "<first.0a0a0a0a0a0a@mail.example.com>",
        },
    )
    if html:
        email.attach_alternative(html, "text/html")
    message = email.message()
    # The same message object both times: the same Date and the same multipart boundary.
    assert email_bytes(message) == message.as_bytes()


UNSUBSCRIBE = {
    "Message-ID": "<a1b2c3.0f0f0f0f0f0f@mail.example.com>",
    "List-Unsubscribe": "<https://aicmo.example/u/MTIz:1vGzQx:"
    + "A" * 43
    + "/>, <mailto:unsubscribe@mail.example.com?subject=unsubscribe%20MTIz%3A1vGzQx>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}
THREAD = {"In-Reply-To": "<first.0a@mail.example.com>", "References": "<first.0a@mail.example.com>"}


def plain_case(**changes):
    fields = {
        "subject": "Quick question",
        "body": "Hi Bo,\n\nA short note.\n\nUnsubscribe: https://aicmo.example/u/x/\n",
        "from_email": "Ada Owner <sam@mail.example.com>",
        "to": ["bo.lead@example.org"],
        "reply_to": ["replies@example.com"],
        "headers": dict(UNSUBSCRIBE),
    }
    fields.update(changes)
    return EmailMultiAlternatives(**fields)


# Emails the quick path writes itself: each must come out as Django's bytes.
WRITTEN = {
    "first email": plain_case(),
    "follow-up in the thread": plain_case(
        subject="Re: Quick question", headers=UNSUBSCRIBE | THREAD
    ),
    "no reply-to": plain_case(reply_to=None),
    "bare sender address": plain_case(from_email="sam@mail.example.com"),
    "subject longer than its line": plain_case(subject="A rather long subject line " * 5),
    "subject with tabs and double spaces": plain_case(subject="Two  spaces\tand a tab "),
    "sender name with quotes": plain_case(from_email='"Owner, Ada" <sam@mail.example.com>'),
    "CRLF and CR line ends": plain_case(body="one\r\ntwo\rthree\nfour"),
    "no final line end": plain_case(body="no newline at the end"),
    "empty body": plain_case(body=""),
    "a line of 998 characters": plain_case(body="x" * 998 + "\n"),
    "From-line in the body": plain_case(body="From here on\n>From there\n"),
    "two recipients": plain_case(to=["a@example.org", "b@example.org"]),
}
# Emails it leaves to Django.
LEFT = {
    "HTML alternative": plain_case(alternatives=[("<p>Hi</p>", "text/html")]),
    "non-ASCII body": plain_case(body="Grüße\n"),
    "non-ASCII subject": plain_case(subject="Grüße"),
    "non-ASCII sender name": plain_case(from_email="Jörg <sam@mail.example.com>"),
    "a line over 998 characters": plain_case(body="x" * 999 + "\n"),
    "no Message-ID": plain_case(headers={"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}),
    "Date given": plain_case(headers=UNSUBSCRIBE | {"Date": "Wed, 02 Dec 2026 11:00:00 -0000"}),
    "a copy": plain_case(cc=["c@example.org"]),
}


@pytest.fixture
def frozen_clock():
    import time_machine

    with time_machine.travel("2026-12-02 11:00:00+00:00", tick=False):
        yield


@pytest.mark.parametrize("case", WRITTEN)
def test_the_quick_path_writes_the_common_email_as_django_does(frozen_clock, settings, case):
    settings.DEFAULT_CHARSET = "utf-8"
    email = WRITTEN[case]
    data = plain_email_bytes(email)
    assert data is not None
    assert data == email.message().as_bytes()


@pytest.mark.parametrize("case", LEFT)
def test_the_quick_path_leaves_every_other_email_to_django(frozen_clock, settings, case):
    settings.DEFAULT_CHARSET = "utf-8"
    assert plain_email_bytes(LEFT[case]) is None


def test_the_quick_path_leaves_a_capitalised_charset_to_django(settings):
    settings.DEFAULT_CHARSET = "UTF-8"  # Django then writes the body in Base64
    assert plain_email_bytes(plain_case()) is None


def test_a_header_with_a_line_break_is_refused_as_django_refuses_it(settings):
    from django.core.mail import BadHeaderError

    email = plain_case(subject="Hello\nBcc: victim@example.org")
    assert plain_email_bytes(email) is None
    with pytest.raises(BadHeaderError):
        email.message()
