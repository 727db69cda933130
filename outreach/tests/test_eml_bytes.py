"""The proof mode's .eml bytes are exactly the ones Django's `as_bytes()` makes."""

from __future__ import annotations

import random
from email import policy as email_policy

import pytest
from django.core.mail import EmailMultiAlternatives

from outreach.sending import _QuickFold, email_bytes

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
    for _ in range(count):
        yield "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 120)))


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
