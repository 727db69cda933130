"""The unsubscribe headers every email carries (RFC 2369 List-Unsubscribe, RFC 8058 one-click).

`List-Unsubscribe` names two ways out, the https link first (mail clients prefer the first
they support): the lead's `/u/<token>/` page, which takes the RFC 8058 one-click POST that
`List-Unsubscribe-Post: List-Unsubscribe=One-Click` announces, and a mailto to
`unsubscribe@<the sender's domain>` whose subject carries the same signed token, so that an
unsubscribe email can be mapped back to its lead (`unsubscribe_token_from_mailto`, then
`outreach.unsubscribe.unsubscribe_token_read`). The token goes in the subject, not in the local
part: a signed token is longer than the 64 characters a local part may have, and its colons
would need quoting there.

Pure functions: no database, no network.
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from functools import lru_cache
from urllib.parse import quote, unquote

from leads.models import Lead
from outreach.unsubscribe import unsubscribe_token, unsubscribe_url

MAILTO_LOCAL_PART = "unsubscribe"
ONE_CLICK = "List-Unsubscribe=One-Click"
# signing.dumps: base64url payload (a leading "." when compressed), base62 timestamp and a
# base64url SHA-256 signature, joined by colons.
_TOKEN = re.compile(r"\.?[A-Za-z0-9_-]+:[A-Za-z0-9]+:[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # a header line break, or worse
_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)


@lru_cache(maxsize=1024)
def sender_domain(mailbox_address: str) -> str:
    """`Sam <sam@Mail.Example.com>` -> `mail.example.com` (IDNA for a non-ASCII domain);
    ValueError for what is not an email address."""
    if _CONTROL.search(mailbox_address):
        raise ValueError(f"{mailbox_address!r} is not an email address with a domain.")
    _, address = parseaddr(mailbox_address)
    _, at, domain = address.rpartition("@")
    try:
        domain = domain.strip().rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        domain = ""
    if not at or not _DOMAIN.fullmatch(domain):
        raise ValueError(f"{mailbox_address!r} is not an email address with a domain.")
    return domain


def unsubscribe_mailto(*, lead: Lead, mailbox_address: str) -> str:
    subject = quote(f"unsubscribe {unsubscribe_token(lead)}", safe="")
    return f"mailto:{MAILTO_LOCAL_PART}@{sender_domain(mailbox_address)}?subject={subject}"


def unsubscribe_headers(*, lead: Lead, mailbox_address: str, url: str = "") -> dict[str, str]:
    """The two headers for a message to `lead` sent from `mailbox_address`; `url` is the
    lead's unsubscribe link when the caller made it already (the tick: the one its body was
    rendered with), else it is made here."""
    mailto = unsubscribe_mailto(lead=lead, mailbox_address=mailbox_address)
    return {
        "List-Unsubscribe": f"<{url or unsubscribe_url(lead)}>, <{mailto}>",
        "List-Unsubscribe-Post": ONE_CLICK,
    }


def unsubscribe_token_from_mailto(address_or_subject: str) -> str | None:
    """The signed token in an unsubscribe email: its subject as received ("Re: unsubscribe
    <token>" too), or the mailto URL of the header; None when there is none. The token is not
    checked here: `outreach.unsubscribe.unsubscribe_token_read` does that."""
    match = _TOKEN.search(unquote(address_or_subject))
    return match.group() if match else None
