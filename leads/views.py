"""The public lead-capture page of a campaign.

The link is `/capture/<signed token>/`: the token is the campaign id signed with SECRET_KEY
(salted), so it cannot be guessed or derived from the slug, and it does not change. UTM
parameters of the link (`?utm_source=...`) are stored on the lead. Consent is an explicit,
required checkbox; a hidden honeypot field drops bot submissions silently (the bot sees the
thank-you page, nothing is written); every POST counts against a per-IP rate limit shared by
all processes (leads.ratelimit).
"""

from __future__ import annotations

import ipaddress
import logging

from django.conf import settings
from django.core import signing
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache

from leads.forms import CaptureForm
from leads.inbound import inbound_records_import
from leads.models import ImportIssue, SourceChannel
from leads.ratelimit import RateLimitUnavailableError, rate_limit_take
from ventures.models import Campaign
from ventures.services import DomainError

logger = logging.getLogger(__name__)

_SALT = "leads.capture"
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_content")


def capture_token(campaign: Campaign) -> str:
    """The signed part of the campaign's capture link: its id, and its capture key once the
    link was renewed (ventures.services.campaign_capture_link_rotate)."""
    value = f"{campaign.pk}.{campaign.capture_key}" if campaign.capture_key else str(campaign.pk)
    return signing.Signer(salt=_SALT).sign(value)


def capture_url(campaign: Campaign) -> str:
    return reverse("leads:capture", args=[capture_token(campaign)])


def _campaign_for(token: str) -> Campaign:
    try:
        value = signing.Signer(salt=_SALT).unsign(token)
    except signing.BadSignature:
        raise Http404("No such form.") from None
    campaign_id, _, key = value.partition(".")
    campaign = Campaign.objects.select_related("venture").filter(pk=campaign_id).first()
    if campaign is None or not campaign.accepts_leads():
        raise Http404("This form is closed.")
    # A link made before the campaign's capture key last changed is closed.
    if not constant_time_compare(key, campaign.capture_key):
        raise Http404("This form is closed.")
    return campaign


def _consent_text(campaign: Campaign) -> str:
    return (
        f"I agree that {campaign.venture.name} may contact me by email about this offer. "
        "I can unsubscribe at any time."
    )


def _client_ip(request) -> str:
    """The address the rate limit counts. Without trusted proxies (AICMO_PROXY_HOPS = 0) it is
    REMOTE_ADDR: X-Forwarded-For is whatever the client wrote. Behind N proxies that each
    append the address they got the request from, the N-th address from the right is the one
    the outermost of them saw: everything left of it may be forged. A request that did not
    come through them all (too few addresses) or names no valid address falls back to
    REMOTE_ADDR."""
    remote = request.META.get("REMOTE_ADDR", "") or "unknown"
    hops = settings.AICMO_PROXY_HOPS
    if not hops:
        return remote
    chain = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if len(chain) < hops:
        return remote
    try:
        return str(ipaddress.ip_address(chain[-hops]))
    except ValueError:
        return remote


def _record(form: CaptureForm, request, campaign: Campaign) -> dict[str, str]:
    data = form.cleaned_data
    record = {
        "email": data["email"],
        "first_name": data["first_name"],
        "last_name": data["last_name"],
        "company": data["company"],
        "title": data["title"],
        "consent": "yes",
        "consent_date": timezone.now().strftime("%Y-%m-%d %H:%M:%S"),
        "consent_source": f"capture form ({campaign.slug})",
    }
    for key in UTM_KEYS:
        record[key] = request.GET.get(key, "")[:200]
    return record


@never_cache
def capture_view(request, token: str):
    campaign = _campaign_for(token)
    context = {"campaign": campaign, "thanks": False}
    if request.method != "POST":
        form = CaptureForm(consent_text=_consent_text(campaign))
        return render(request, "leads/capture.html", {**context, "form": form})
    try:
        allowed = rate_limit_take(
            scope="capture",
            client=_client_ip(request),
            limit=settings.AICMO_CAPTURE_RATE_LIMIT,
            window=settings.AICMO_CAPTURE_RATE_WINDOW,
        )
    except RateLimitUnavailableError:
        return render(request, "leads/capture_unavailable.html", context, status=503)
    if not allowed:
        return render(request, "leads/capture_limited.html", context, status=429)
    form = CaptureForm(request.POST, consent_text=_consent_text(campaign))
    if form.is_bot:
        return render(request, "leads/capture.html", {**context, "thanks": True})
    if not form.is_valid():
        return render(request, "leads/capture.html", {**context, "form": form}, status=400)
    try:
        batch = inbound_records_import(
            campaign=campaign,
            records=[_record(form, request, campaign)],
            channel=SourceChannel.FORM,
            actor="capture form",
            source=f"Capture form: {campaign.name}",
        )
    except DomainError as exc:
        form.add_error(None, str(exc))
        return render(request, "leads/capture.html", {**context, "form": form}, status=400)
    if batch.invalid:
        reason = ImportIssue.objects.filter(batch=batch).values_list("reason", flat=True)
        form.add_error("email", next(iter(reason), "This address cannot be used."))
        return render(request, "leads/capture.html", {**context, "form": form}, status=400)
    return render(request, "leads/capture.html", {**context, "thanks": True})
