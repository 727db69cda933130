"""The unsubscribe link, `/u/<signed token>/`: its token and its page (DESIGN.md, RFC 8058).

The token is the lead's id signed with SECRET_KEY under UNSUBSCRIBE_SALT (`signing.dumps`),
so it cannot be forged, guessed from another lead's, or reused from another signed value of
the site. It never expires: a link in an old email must keep working. The signature is
checked before anything reads the database, so a garbled token costs no query.

- GET (and HEAD) shows a page naming the venture and the masked address, with a button. It
  never unsubscribes: link scanners and mail filters open every link they see.
- POST unsubscribes at once, whatever the body: the button, and the mail client's RFC 8058
  one-click (`List-Unsubscribe=One-Click`), which comes without cookies or CSRF token, so the
  view is csrf_exempt (it changes nothing but the state of the person the token names).
  Repeated POSTs change nothing more (`leads.unsubscribes.lead_unsubscribe`). The answer
  offers an optional reason: a POST with `reason` to the same URL records it.
- A bad token, the preview's sample token, or a lead that no longer exists or was erased get
  a plain 404 page, and nothing is written.
"""

from __future__ import annotations

from functools import lru_cache

from django import forms
from django.conf import settings
from django.core import signing
from django.shortcuts import render
from django.urls import get_script_prefix, get_urlconf, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from leads.models import Lead, LeadStatus, UnsubscribeReason, UnsubscribeSource
from leads.unsubscribes import COMMENT_MAX, lead_unsubscribe
from ventures.services import DomainError
from ventures.text import validate_storable_text

UNSUBSCRIBE_SALT = "aicmo.unsubscribe"
SAMPLE = "sample"  # what the token of the preview's unsaved sample lead names
TOKEN_MAX = 200  # far above any real token; longer ones are refused before the signature check
VISITOR = "unsubscribe link"  # the audit trail's actor for a recipient's own request


def unsubscribe_token(lead: Lead) -> str:
    """The signed part of the lead's unsubscribe link (the sample lead's, if it is unsaved).
    One per lead and key in a process: the body's link and the headers of an email agree, and
    a batch signs each lead once."""
    return _signed(lead.pk if lead.pk is not None else SAMPLE, settings.SECRET_KEY)


@lru_cache(maxsize=20_000)
def _signed(value: int | str, secret_key: str) -> str:
    # `secret_key` only keys the cache: a changed key signs anew.
    return signing.dumps(value, salt=UNSUBSCRIBE_SALT)


def unsubscribe_url(lead: Lead) -> str:
    path = _path(get_script_prefix(), get_urlconf()).replace(_PLACEHOLDER, unsubscribe_token(lead))
    return f"{settings.AICMO_SITE_URL}{path}"


_PLACEHOLDER = "TOKEN"


@lru_cache(maxsize=8)
def _path(script_prefix: str, urlconf: str | None) -> str:
    # A token's characters (base64url, ":" and ".") pass reverse() unquoted, so one reversed
    # path with a placeholder serves every token.
    return reverse("outreach:unsubscribe", args=[_PLACEHOLDER])


def unsubscribe_token_read(token: str) -> int | str | None:
    """The lead id a token names, SAMPLE for the sample lead's, None when it is not one of ours
    (garbled, forged, or signed for something else)."""
    if not token or len(token) > TOKEN_MAX:
        return None
    try:
        value = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return None
    if value == SAMPLE:
        return SAMPLE
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def masked_email(email: str) -> str:
    """`anna@example.com` -> `an***@example.com`: enough for the person to recognise, not
    enough for someone who opened a forwarded link to learn the address."""
    local, at, domain = email.partition("@")
    if not at:
        return ""
    return f"{local[: 2 if len(local) > 2 else 1]}***@{domain}"


class ReasonForm(forms.Form):
    reason = forms.ChoiceField(
        label="Why did you unsubscribe? (optional)",
        choices=[("", "Choose a reason"), *UnsubscribeReason.choices],
        required=False,
    )
    comment = forms.CharField(
        label="Anything else? (optional)",
        max_length=COMMENT_MAX,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "maxlength": COMMENT_MAX}),
        validators=[validate_storable_text],
    )


def _lead_of(token: str) -> Lead | str | None:
    """The lead the token names (not erased), SAMPLE, or None."""
    lead_id = unsubscribe_token_read(token)
    if lead_id is None or lead_id == SAMPLE:
        return lead_id
    return (
        Lead.objects.select_related("venture")
        .exclude(status=LeadStatus.ERASED)
        .filter(pk=lead_id)
        .first()
    )


def _page(request, template: str, lead: Lead, status: int = 200, **context):
    context |= {"venture": lead.venture, "address": masked_email(lead.email)}
    return render(request, f"outreach/{template}", context, status=status)


@csrf_exempt
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe_view(request, token: str):
    lead = _lead_of(token)
    if not isinstance(lead, Lead):
        context = {"sample": lead == SAMPLE}
        return render(request, "outreach/unsubscribe_unknown.html", context, status=404)
    if request.method != "POST":
        return _page(request, "unsubscribe.html", lead)
    one_click = request.POST.get("List-Unsubscribe") == "One-Click"
    source = UnsubscribeSource.ONE_CLICK if one_click else UnsubscribeSource.LINK
    form = ReasonForm(request.POST) if "reason" in request.POST else None
    if form is not None and not form.is_valid():
        # Still unsubscribed (idempotent): only the reason is refused.
        lead_unsubscribe(lead=lead, source=source, actor=VISITOR)
        return _page(request, "unsubscribe_done.html", lead, status=400, form=form)
    data = form.cleaned_data if form is not None else {}
    try:
        result = lead_unsubscribe(
            lead=lead,
            source=source,
            reason=data.get("reason", ""),
            comment=data.get("comment", ""),
            actor=VISITOR,
        )
    except DomainError as exc:
        form = form or ReasonForm()
        form.add_error(None, str(exc))
        return _page(request, "unsubscribe_done.html", lead, status=400, form=form)
    thanks = form is not None and result.unsubscribe.reason_at is not None
    return _page(request, "unsubscribe_done.html", lead, form=ReasonForm(), thanks=thanks)
