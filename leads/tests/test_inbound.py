"""The public lead-capture page: consent, honeypot, rate limit, UTM attribution, same pipeline."""

from __future__ import annotations

import pytest
from django.core.cache import caches
from django.urls import reverse

from leads.models import ConsentStatus, ImportBatch, Lead, LeadStatus, SourceChannel
from leads.tests.capture_form import FORM
from leads.views import capture_token, capture_url
from tests.factories import CampaignFactory, LeadFactory, SuppressionEntryFactory
from tests.http import text
from ventures.models import Campaign, CampaignStatus

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http", "fresh_rate_limit")]


def submit(client, campaign, query: str = "", ip: str = "203.0.113.7", **changes):
    data = {**FORM, **changes}
    return client.post(capture_url(campaign) + query, data, REMOTE_ADDR=ip)


def test_capture_link_is_signed_not_the_slug_and_a_forged_one_is_404(client, campaign):
    url = capture_url(campaign)
    assert campaign.slug not in url
    assert client.get(url).status_code == 200
    forged = reverse("leads:capture", args=[f"{campaign.pk}:forged-signature"])
    assert client.get(forged).status_code == 404


def test_page_shows_an_unticked_consent_box_and_a_hidden_honeypot(client, campaign):
    page = text(client.get(capture_url(campaign)))
    assert 'name="consent"' in page and "checked" not in page
    assert f"I agree that {campaign.venture.name} may contact me" in page
    assert 'name="website"' in page and 'class="hp"' in page


def test_submission_creates_a_consented_lead_with_utm_attribution(client, campaign):
    query = "?utm_source=linkedin&utm_medium=social&utm_campaign=q4-launch&utm_content=video"
    response = submit(client, campaign, query)
    assert response.status_code == 200
    assert "Thank you" in text(response)
    lead = Lead.objects.get()
    assert lead.email_key == "visitor@example.com"
    assert lead.consent_status == ConsentStatus.CONSENTED
    assert lead.consent_at is not None and "capture form" in lead.consent_source
    assert (lead.utm_source, lead.utm_medium, lead.utm_campaign, lead.utm_content) == (
        "linkedin",
        "social",
        "q4-launch",
        "video",
    )
    assert lead.source_channel == SourceChannel.FORM
    batch = ImportBatch.objects.get()
    assert (batch.channel, batch.state, batch.created) == ("form", "done", 1)
    assert lead.source_batch == batch


def test_consent_is_required(client, campaign):
    response = submit(client, campaign, consent="")
    assert response.status_code == 400
    assert "Tick the box to agree to be contacted." in text(response)
    assert not Lead.objects.exists() and not ImportBatch.objects.exists()


def test_honeypot_submission_is_dropped_silently(client, campaign):
    response = submit(client, campaign, website="http://spam.example")
    assert response.status_code == 200
    assert "Thank you" in text(response)
    assert not Lead.objects.exists() and not ImportBatch.objects.exists()


def test_rate_limit_per_ip_answers_429_and_writes_nothing(client, campaign, settings):
    settings.AICMO_CAPTURE_RATE_LIMIT = 2
    assert submit(client, campaign, email="one@example.com").status_code == 200
    assert submit(client, campaign, email="two@example.com").status_code == 200
    limited = submit(client, campaign, email="three@example.com")
    assert limited.status_code == 429
    assert "Too many submissions" in text(limited)
    assert not Lead.objects.filter(email_key="three@example.com").exists()
    other_ip = submit(client, campaign, email="four@example.com", ip="198.51.100.9")
    assert other_ip.status_code == 200  # the limit is per IP


def _from(client, campaign, email, *, forwarded: str, proxy: str = "10.0.0.2"):
    """A POST that reached the site through a proxy at `proxy` with this X-Forwarded-For."""
    data = {**FORM, "email": email}
    return client.post(
        capture_url(campaign), data, REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=forwarded
    )


def test_without_trusted_proxies_a_forged_forwarded_for_does_not_dodge_the_limit(
    client, campaign, settings
):
    settings.AICMO_CAPTURE_RATE_LIMIT = 1
    settings.AICMO_PROXY_HOPS = 0
    assert _from(client, campaign, "a@example.com", forwarded="198.51.100.1").status_code == 200
    second = _from(client, campaign, "b@example.com", forwarded="198.51.100.2")
    assert second.status_code == 429  # both count for REMOTE_ADDR, the only fact


def test_behind_one_proxy_clients_are_told_apart_by_the_address_it_appended(
    client, campaign, settings
):
    settings.AICMO_CAPTURE_RATE_LIMIT = 1
    settings.AICMO_PROXY_HOPS = 1
    ok = _from(client, campaign, "a@example.com", forwarded="203.0.113.5")
    other = _from(client, campaign, "b@example.com", forwarded="203.0.113.6")
    assert ok.status_code == other.status_code == 200  # one proxy, two clients
    # The same client again, with a forged address put in front of the one the proxy added.
    forged = _from(client, campaign, "c@example.com", forwarded="192.0.2.99, 203.0.113.5")
    assert forged.status_code == 429
    assert not Lead.objects.filter(email_key="c@example.com").exists()


def test_behind_two_proxies_the_client_is_the_second_address_from_the_right(
    client, campaign, settings
):
    settings.AICMO_CAPTURE_RATE_LIMIT = 1
    settings.AICMO_PROXY_HOPS = 2
    first = _from(client, campaign, "a@example.com", forwarded="203.0.113.5, 10.1.1.1")
    same_client = _from(client, campaign, "b@example.com", forwarded="203.0.113.5, 10.1.1.2")
    assert first.status_code == 200 and same_client.status_code == 429


@pytest.mark.parametrize("forwarded", ["", "not-an-address"])
def test_a_request_that_did_not_come_through_the_proxies_counts_for_remote_addr(
    client, campaign, settings, forwarded
):
    settings.AICMO_CAPTURE_RATE_LIMIT = 1
    settings.AICMO_PROXY_HOPS = 1
    assert _from(client, campaign, "a@example.com", forwarded=forwarded).status_code == 200
    again = _from(client, campaign, "b@example.com", forwarded="198.51.100.77", proxy="10.0.0.2")
    assert again.status_code == 200  # a real forwarded client is someone else
    direct = _from(client, campaign, "c@example.com", forwarded=forwarded)
    assert direct.status_code == 429  # the unattributable requests share REMOTE_ADDR's count


def test_rate_limit_counter_lives_in_the_database_cache(client, campaign, settings):
    from django.core.cache.backends.db import DatabaseCache

    settings.AICMO_CAPTURE_RATE_LIMIT = 1
    assert isinstance(caches["ratelimit"], DatabaseCache)  # shared by every process
    submit(client, campaign, email="first@example.com")
    caches["ratelimit"].close()  # a fresh connection sees the same count
    assert submit(client, campaign, email="second@example.com").status_code == 429


def test_invalid_email_is_a_form_error(client, campaign):
    response = submit(client, campaign, email="not an email")
    assert response.status_code == 400
    assert "Enter a valid email address." in text(response)
    assert not Lead.objects.exists()


def test_suppressed_person_gets_a_thank_you_but_is_never_active(client, campaign):
    SuppressionEntryFactory(value="visitor@example.com", venture=campaign.venture)
    response = submit(client, campaign)
    assert "Thank you" in text(response)
    batch = ImportBatch.objects.get()
    assert batch.suppressed == 1
    assert not Lead.objects.filter(status=LeadStatus.ACTIVE).exists()


def test_existing_dnc_lead_is_never_reconsented_by_the_form(client, campaign):
    lead = LeadFactory(
        campaign=campaign,
        email="visitor@example.com",
        email_key="visitor@example.com",
        consent_status=ConsentStatus.DNC,
    )
    submit(client, campaign)
    lead.refresh_from_db()
    assert lead.consent_status == ConsentStatus.DNC
    assert ImportBatch.objects.get().duplicates_in_campaign == 1


def test_form_consent_upgrades_an_existing_lead_of_unknown_consent(client, campaign):
    lead = LeadFactory(
        campaign=campaign,
        email="visitor@example.com",
        email_key="visitor@example.com",
        consent_status=ConsentStatus.UNKNOWN,
    )
    submit(client, campaign)
    lead.refresh_from_db()
    assert lead.consent_status == ConsentStatus.CONSENTED
    assert lead.consent_at is not None and "capture form" in lead.consent_source
    assert Lead.objects.count() == 1


def test_a_stopped_campaigns_form_is_closed(client, campaign):
    campaign.status = CampaignStatus.STOPPED
    campaign.save(update_fields=["status"])
    assert client.get(capture_url(campaign)).status_code == 404
    assert submit(client, campaign).status_code == 404


def test_capture_token_does_not_change(campaign):
    assert capture_token(campaign) == capture_token(campaign)


def test_a_new_capture_link_closes_the_one_shared_before(client, campaign):
    from ventures.services import campaign_capture_link_rotate

    old = capture_url(campaign)
    assert client.get(old).status_code == 200

    campaign_capture_link_rotate(campaign=campaign, actor="test", reason="spam")

    new = capture_url(campaign)
    assert new != old
    assert client.get(old).status_code == 404
    assert client.post(old, {**FORM}, REMOTE_ADDR="203.0.113.7").status_code == 404
    assert not Lead.objects.exists()
    assert submit(client, campaign).status_code == 200  # through the new link
    assert Lead.objects.count() == 1
    campaign_capture_link_rotate(campaign=Campaign.objects.get(pk=campaign.pk), actor="test")
    assert client.get(new).status_code == 404  # each renewal closes the previous link


def test_a_capture_link_names_one_campaign_and_its_current_key(client, campaign):
    from django.core import signing

    from ventures.services import campaign_capture_link_rotate

    campaign_capture_link_rotate(campaign=campaign, actor="test")
    other = CampaignFactory(venture=campaign.venture)
    # A validly signed value with the right key but another campaign's id: closed.
    forged = signing.Signer(salt="leads.capture").sign(f"{other.pk}.{campaign.capture_key}")
    assert client.get(reverse("leads:capture", args=[forged])).status_code == 404
    assert client.get(capture_url(other)).status_code == 200


RACE = """
import time, django
django.setup()
from leads.ratelimit import rate_limit_take
time.sleep(max(0.0, {start} - time.time()))
print(sum(rate_limit_take(scope="race", client="ip", limit=10, window=10**9) for _ in range(8)))
"""


@pytest.mark.django_db(transaction=True)
def test_rate_limit_is_exact_across_processes_on_postgresql():
    import subprocess
    import sys
    import time

    from django.db import connection

    from tests.proc import REPO, clean_env, running_database_url

    if connection.vendor != "postgresql":
        pytest.skip("concurrency is proven on PostgreSQL")
    url = running_database_url()
    code = RACE.format(start=time.time() + 3)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=REPO,
            env=clean_env(DATABASE_URL=url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    # 32 attempts at once from 4 processes against a limit of 10: exactly 10 get through.
    assert sum(int(out.strip()) for out, _ in outputs) == 10
