"""ESP webhooks end to end: payloads in the formats Postmark, Mailgun and SparkPost publish,
posted to /anymail/<esp>/tracking/ and /inbound/ with the webhook secret; what is stored,
what it is matched to, and what it does to the lead, its sequence and the suppression list."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
import time_machine

from leads.models import LeadStatus, SuppressionEntry, Unsubscribe
from outreach.dispatch import tick
from outreach.models import Enrollment, FeedbackEvent, MessageState, OutboundMessage
from outreach.tests.outbox import NOON, running_campaign, two_step_sequence
from tests.factories import LeadFactory, MembershipFactory, UserFactory
from ventures.roles import OPERATOR

pytestmark = pytest.mark.django_db

SECRET = "hooks:correct-horse-battery"
MAILGUN_KEY = "mailgun-signing-key"
ESP_ID = "883953f4-6105-42a2-a16a-77a8eac79483"


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}


@pytest.fixture
def sent():
    return first_email_sent()


def first_email_sent() -> OutboundMessage:
    """A first email sent (proof mode) whose ESP id is ESP_ID; its follow-up is planned."""
    with time_machine.travel(NOON, tick=False):
        campaign = running_campaign()
        sequence = two_step_sequence(campaign)
        sequence.stop_on_company_reply = True
        sequence.save()
        lead = LeadFactory(campaign=campaign, company_domain="acme.example")
        tick()
    message = OutboundMessage.objects.get(lead=lead, step__position=1)
    assert message.state == MessageState.SENT
    OutboundMessage.objects.filter(pk=message.pk).update(esp_message_id=ESP_ID)
    message.refresh_from_db()
    return message


def auth(secret: str = SECRET) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


def post(client, path, payload, *, content_type="application/json", **extra):
    body = payload if isinstance(payload, bytes | str) else json.dumps(payload)
    return client.post(path, body, content_type=content_type, secure=True, **{**auth(), **extra})


def postmark_bounce(email: str, **more) -> dict:
    return {
        "RecordType": "Bounce", "MessageStream": "outbound", "ID": 4323372036854775807,
        "Type": "HardBounce", "TypeCode": 1, "Name": "Hard bounce", "Tag": "",
        "MessageID": ESP_ID, "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, "
        "mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": email, "From": "sam@venture.example", "BouncedAt": "2026-12-02T11:05:54Z",
        "DumpAvailable": True, "Inactive": True, "CanActivate": True, "Subject": "Hello",
        "Metadata": {}, **more,
    }  # fmt: skip


def postmark_inbound(sent, *, headers=(), subject="Re: Quick question") -> dict:
    return {
        "FromName": "Lena Lead", "MessageStream": "inbound", "From": sent.recipient,
        "FromFull": {"Email": sent.recipient, "Name": "Lena Lead", "MailboxHash": ""},
        "To": "sam@venture.example", "ToFull": [{"Email": "sam@venture.example", "Name": "",
                                                  "MailboxHash": ""}],
        "Cc": "", "CcFull": [], "Bcc": "", "BccFull": [], "OriginalRecipient": "sam@venture.example",
        "Subject": subject, "MessageID": "73e6d360-66eb-11e1-8e72-a8904824019b",
        "ReplyTo": "", "MailboxHash": "", "Date": "Wed, 2 Dec 2026 12:45:32 +0100",
        "TextBody": "Sounds interesting, can we talk on Friday?\n\nOn Wed, Sam wrote:\n> Hi",
        "HtmlBody": "", "StrippedTextReply": "Sounds interesting, can we talk on Friday?",
        "Tag": "", "Attachments": [],
        "Headers": [{"Name": "In-Reply-To", "Value": sent.message_id},
                    {"Name": "References", "Value": sent.message_id}, *headers],
    }  # fmt: skip


TRACKING = "/anymail/postmark/tracking/"
INBOUND = "/anymail/postmark/inbound/"


def test_a_hard_bounce_suppresses_the_address_and_stops_the_sequence(client, sent):
    response = post(client, TRACKING, postmark_bounce(sent.recipient))
    assert response.status_code == 200
    event = FeedbackEvent.objects.get()
    assert (event.kind, event.source, event.matched_by) == ("bounced", "postmark", "esp_message_id")
    assert event.message == sent and event.lead_id == sent.lead_id
    assert "550 5.1.1" in event.reason
    assert sent.lead.__class__.objects.get(pk=sent.lead_id).status == LeadStatus.BOUNCED
    assert SuppressionEntry.objects.filter(value=sent.lead.email_key, source="bounce").exists()
    enrollment = Enrollment.objects.get(lead_id=sent.lead_id)
    assert enrollment.state == "stopped" and "bounced" in enrollment.stop_reason
    follow_up = OutboundMessage.objects.get(lead_id=sent.lead_id, step__position=2)
    assert (follow_up.state, follow_up.reason_code) == ("blocked", "bounced")


def test_an_event_delivered_ten_times_is_stored_once(client, sent):
    for _ in range(10):
        assert post(client, TRACKING, postmark_bounce(sent.recipient)).status_code == 200
    assert FeedbackEvent.objects.count() == 1
    assert SuppressionEntry.objects.count() == 1
    open_event = {
        "RecordType": "Open", "MessageStream": "outbound", "FirstOpen": True,
        "Client": {"Name": "Gmail", "Company": "Google"}, "OS": {"Name": "unknown"},
        "Platform": "WebMail", "UserAgent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)",
        "ReadSeconds": 0, "Geo": {}, "MessageID": ESP_ID, "Metadata": {},
        "ReceivedAt": "2026-12-02T11:06:00Z", "Tag": "", "Recipient": sent.recipient,
    }  # fmt: skip
    for _ in range(3):  # no id of its own: the same payload is the same event
        assert post(client, TRACKING, open_event).status_code == 200
    assert FeedbackEvent.objects.filter(kind="opened").count() == 1


def test_an_open_is_recorded_as_unreliable_and_a_click_with_its_link(client, sent):
    base = {"MessageStream": "outbound", "MessageID": ESP_ID, "Metadata": {}, "Tag": "",
            "Recipient": sent.recipient, "ReceivedAt": "2026-12-02T11:06:00Z",
            "UserAgent": "Mozilla/5.0"}  # fmt: skip
    post(client, TRACKING, {**base, "RecordType": "Open", "FirstOpen": True})
    post(client, TRACKING, {**base, "RecordType": "Click", "ClickLocation": "HTML",
                            "OriginalLink": "https://venture.example/demo"})  # fmt: skip
    opened, clicked = (FeedbackEvent.objects.get(kind=k) for k in ("opened", "clicked"))
    assert not opened.reliable and clicked.reliable
    assert clicked.url == "https://venture.example/demo"
    assert Enrollment.objects.get(lead_id=sent.lead_id).state == "active"  # neither stops it


def test_a_spam_complaint_suppresses_and_stops(client, sent):
    payload = postmark_bounce(sent.recipient, RecordType="SpamComplaint", Type="SpamComplaint",
                              TypeCode=512, ID=42)  # fmt: skip
    assert post(client, TRACKING, payload).status_code == 200
    assert FeedbackEvent.objects.get().kind == "complained"
    assert SuppressionEntry.objects.filter(source="complaint").exists()
    assert Enrollment.objects.get(lead_id=sent.lead_id).state == "stopped"


def test_an_unsubscribe_reported_by_the_esp_unsubscribes_the_person(client, sent):
    payload = {
        "RecordType": "SubscriptionChange", "MessageID": ESP_ID, "ServerID": 23,
        "MessageStream": "outbound", "ChangedAt": "2026-12-02T11:10:00Z",
        "Recipient": sent.recipient, "Origin": "Recipient", "SuppressSending": True,
        "SuppressionReason": "ManualSuppression", "Tag": "", "Metadata": {},
    }  # fmt: skip
    assert post(client, TRACKING, payload).status_code == 200
    assert FeedbackEvent.objects.get().kind == "unsubscribed"
    assert Unsubscribe.objects.get(venture_id=sent.venture_id).source == "esp"
    assert sent.lead.__class__.objects.get(pk=sent.lead_id).status == LeadStatus.UNSUBSCRIBED


def test_a_delivery_settles_an_unknown_message_as_sent(client, sent):
    OutboundMessage.objects.filter(pk=sent.pk).update(state=MessageState.UNKNOWN)
    payload = {"RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound",
               "MessageID": ESP_ID, "Recipient": sent.recipient, "Tag": "",
               "DeliveredAt": "2026-12-02T11:05:00Z", "Details": "250 2.0.0 OK",
               "Metadata": {}}  # fmt: skip
    assert post(client, TRACKING, payload).status_code == 200
    sent.refresh_from_db()
    assert sent.state == MessageState.SENT and sent.settled_by == "feedback"


def test_a_reply_stops_the_sequence_and_those_of_colleagues_at_the_same_company(client, sent):
    colleague = LeadFactory(campaign=sent.campaign, company_domain="acme.example")
    with time_machine.travel(NOON, tick=False):
        tick()
    assert OutboundMessage.objects.get(lead=colleague, step__position=1).state == "sent"
    assert post(client, INBOUND, postmark_inbound(sent)).status_code == 200
    event = FeedbackEvent.objects.get()
    assert (event.kind, event.matched_by, event.message) == ("replied", "thread", sent)
    assert event.text.startswith("Sounds interesting")
    lead = sent.lead.__class__.objects.get(pk=sent.lead_id)
    assert lead.status == LeadStatus.REPLIED
    follow_up = OutboundMessage.objects.get(lead=lead, step__position=2)
    assert (follow_up.state, follow_up.reason_code) == ("blocked", "replied")
    theirs = OutboundMessage.objects.get(lead=colleague, step__position=2)
    assert (theirs.state, theirs.reason_code) == ("blocked", "company_replied")
    assert "acme.example" in Enrollment.objects.get(lead=colleague).stop_reason


def test_an_auto_reply_is_recorded_and_stops_nothing(client, sent):
    payload = postmark_inbound(
        sent, subject="Out of office", headers=[{"Name": "Auto-Submitted", "Value": "auto-replied"}]
    )
    assert post(client, INBOUND, payload).status_code == 200
    assert FeedbackEvent.objects.get().kind == "autoresponded"
    assert sent.lead.__class__.objects.get(pk=sent.lead_id).status == LeadStatus.ACTIVE
    assert Enrollment.objects.get(lead_id=sent.lead_id).state == "active"


def test_an_event_for_no_message_of_ours_is_kept_and_listed(client, sent):
    payload = postmark_bounce("stranger@elsewhere.example", MessageID="not-one-of-ours", ID=7)
    assert post(client, TRACKING, payload).status_code == 200
    event = FeedbackEvent.objects.get()
    assert event.message is None and event.effect.startswith("unmatched")
    assert not SuppressionEntry.objects.exists()


def mailgun(event_data: dict, *, key: str = MAILGUN_KEY) -> dict:
    timestamp, token = str(int(time.time())), "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": event_data}  # fmt: skip


def mailgun_failed(sent) -> dict:
    return {
        "event": "failed", "severity": "permanent", "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "timestamp": 1764673554.329574, "recipient": sent.recipient, "reason": "bounce",
        "message": {"headers": {"message-id": ESP_ID, "to": sent.recipient,
                                "from": "sam@venture.example", "subject": "Hello"}},
        "delivery-status": {"code": 550, "message": "5.1.1 No such user",
                            "description": "", "attempt-no": 1},
        "flags": {"is-routed": False, "is-authenticated": True, "is-system-test": False,
                  "is-test-mode": False},
        "envelope": {"transport": "smtp", "sender": "sam@venture.example",
                     "targets": sent.recipient},
        "tags": [], "campaigns": [], "user-variables": {}, "log-level": "error",
    }  # fmt: skip


def test_a_mailgun_permanent_failure_with_a_valid_signature_is_a_bounce(client, sent):
    response = post(client, "/anymail/mailgun/tracking/", mailgun(mailgun_failed(sent)))
    assert response.status_code == 200
    event = FeedbackEvent.objects.get()
    assert (event.source, event.kind) == ("mailgun", "bounced")
    assert event.event_id == "G9Bn5sl1TC6nu79C8C0bwg@1764673554.329574"
    assert event.message == sent
    # Delivered again (a new signature token each time): still one event.
    again = post(client, "/anymail/mailgun/tracking/", mailgun(mailgun_failed(sent)))
    assert again.status_code == 200 and FeedbackEvent.objects.count() == 1


def test_a_mailgun_event_with_a_forged_signature_is_refused_and_not_stored(client, sent):
    forged = mailgun(mailgun_failed(sent), key="someone-elses-key")
    assert post(client, "/anymail/mailgun/tracking/", forged).status_code == 401
    assert not FeedbackEvent.objects.exists()


def test_a_sparkpost_batch_stores_each_event(client, sent):
    OutboundMessage.objects.filter(pk=sent.pk).update(esp_message_id="65832150921904138")
    common = {"customer_id": "1", "delv_method": "esmtp", "friendly_from": "sam@venture.example",
              "ip_address": "127.0.0.1", "message_id": "000443ee14578172be22",
              "msg_from": "msprvs1=abc@sparkpostmail.com", "msg_size": "795", "num_retries": "0",
              "rcpt_meta": {}, "rcpt_tags": [], "rcpt_to": sent.recipient,
              "raw_rcpt_to": sent.recipient, "rcpt_type": "to", "routing_domain": "example",
              "sending_ip": "127.0.0.1", "subject": "Hello",
              "timestamp": "1764673554", "transmission_id": "65832150921904138"}  # fmt: skip
    batch = [
        {"msys": {"message_event": {**common, "type": "delivery", "event_id": "92356927693813850",
                                    "queue_time": "12"}}},
        {"msys": {"message_event": {**common, "type": "bounce", "event_id": "92356927693813856",
                                    "bounce_class": "10", "error_code": "550",
                                    "raw_reason": "550 5.1.1 <x>: Recipient address rejected",
                                    "reason": "550 5.1.1 <x>: Recipient address rejected"}}},
    ]  # fmt: skip
    assert post(client, "/anymail/sparkpost/tracking/", batch).status_code == 200
    assert sorted(FeedbackEvent.objects.values_list("kind", flat=True)) == ["bounced", "delivered"]
    assert post(client, "/anymail/sparkpost/tracking/", batch).status_code == 200  # a replay
    assert FeedbackEvent.objects.count() == 2
    assert sent.lead.__class__.objects.get(pk=sent.lead_id).status == LeadStatus.BOUNCED


def test_a_sparkpost_relayed_reply_is_matched_by_its_thread(client, sent):
    raw = (
        f"From: Lena Lead <{sent.recipient}>\r\nTo: sam@venture.example\r\n"
        "Subject: Re: Quick question\r\nMessage-ID: <reply-1@prospect.example>\r\n"
        f"In-Reply-To: {sent.message_id}\r\nReferences: {sent.message_id}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nYes, call me.\r\n"
    )
    relay = [{"msys": {"relay_message": {
        "content": {"email_rfc822": raw, "email_rfc822_is_base64": False, "headers": [],
                    "html": "", "subject": "Re: Quick question", "text": "Yes, call me.",
                    "to": ["sam@venture.example"]},
        "customer_id": "1337", "protocol": "smtp", "friendly_from": sent.recipient, "msg_from": sent.recipient,
        "rcpt_to": "sam@venture.example", "webhook_id": "4839201967643219"}}}]  # fmt: skip
    assert post(client, "/anymail/sparkpost/inbound/", relay).status_code == 200
    event = FeedbackEvent.objects.get()
    assert (event.kind, event.matched_by, event.event_id) == (
        "replied",
        "thread",
        "<reply-1@prospect.example>",
    )
    assert sent.lead.__class__.objects.get(pk=sent.lead_id).status == LeadStatus.REPLIED


@pytest.mark.parametrize(
    ("credentials", "status"),
    [(None, 401), ("hooks:wrong", 401), ("", 401)],
    ids=["none", "wrong", "empty"],
)
def test_without_the_secret_nothing_is_stored(client, sent, credentials, status):
    extra = {} if credentials is None else auth(credentials)
    body = json.dumps(postmark_bounce(sent.recipient))
    response = client.post(TRACKING, body, content_type="application/json", secure=True, **extra)
    assert response.status_code == status
    assert response["WWW-Authenticate"].startswith("Basic")
    assert not FeedbackEvent.objects.exists() and not SuppressionEntry.objects.exists()


def test_with_no_secret_configured_the_webhooks_are_off(client, sent, settings):
    settings.ANYMAIL = {}
    response = post(client, TRACKING, postmark_bounce(sent.recipient))
    assert response.status_code == 403 and b"ANYMAIL_WEBHOOK_SECRET" in response.content
    assert not FeedbackEvent.objects.exists()


MALFORMED = {
    "truncated JSON": ('{"RecordType": "Bounce", "MessageID": "88', "application/json"),
    "empty body": ("", "application/json"),
    "a JSON array": ('[{"RecordType": "Bounce"}]', "application/json"),
    "a JSON string": ('"bounce"', "application/json"),
    "invalid UTF-8": (b'{"RecordType": "Bounce", "Email": "\xff\xfe"}', "application/json"),
    "the wrong content type": ("RecordType=Bounce", "application/x-www-form-urlencoded"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_payload_is_a_400_never_a_500(client, sent, case, caplog):
    body, content_type = MALFORMED[case]
    response = post(client, TRACKING, body, content_type=content_type)
    assert response.status_code == 400, response.content
    assert not FeedbackEvent.objects.exists()
    assert any("ESP webhook postmark/tracking" in r.getMessage() for r in caplog.records)


def test_an_oversized_body_is_refused_before_it_is_read(client, sent):
    response = post(client, TRACKING, "{}", CONTENT_LENGTH=str(64 * 1024 * 1024))
    assert response.status_code == 413
    assert not FeedbackEvent.objects.exists()


def test_an_esp_anymail_does_not_know_is_a_404(client):
    assert post(client, "/anymail/nosuchesp/tracking/", {}).status_code == 404


def test_the_console_lists_a_ventures_events_to_its_members_and_unmatched_ones_to_admins(
    client, sent, administrator
):
    post(client, TRACKING, postmark_bounce(sent.recipient))
    post(client, TRACKING, postmark_bounce("stranger@elsewhere.example", MessageID="x", ID=8))
    member = UserFactory(username="op-member", role=OPERATOR)
    MembershipFactory(venture_id=sent.venture_id, user=member)
    outsider = UserFactory(username="op-outsider", role=OPERATOR)
    url = "/admin/outreach/feedbackevent/"
    seen = {}
    for user in (member, outsider, administrator):
        client.force_login(user)
        response = client.get(url, secure=True)
        assert response.status_code == 200
        seen[user.username] = {e.recipient for e in response.context["cl"].result_list}
    assert seen["op-member"] == {sent.recipient}
    assert seen["op-outsider"] == set()
    assert seen["admin-ann"] == {sent.recipient, "stranger@elsewhere.example"}


def test_an_email_to_the_unsubscribe_mailto_unsubscribes_the_person_it_names(client, sent):
    from outreach.unsubscribe import unsubscribe_token

    payload = postmark_inbound(sent, subject=f"unsubscribe {unsubscribe_token(sent.lead)}")
    payload["To"] = payload["OriginalRecipient"] = "unsubscribe@venture.example"
    payload["Headers"] = []  # a fresh email from the mail client, not a reply
    assert post(client, INBOUND, payload).status_code == 200
    event = FeedbackEvent.objects.get()
    assert (event.kind, event.message) == ("unsubscribed", sent)
    assert Unsubscribe.objects.get(venture_id=sent.venture_id).source == "mailto"
    assert sent.lead.__class__.objects.get(pk=sent.lead_id).status == LeadStatus.UNSUBSCRIBED


def test_a_forged_unsubscribe_token_unsubscribes_nobody(client, sent):
    payload = postmark_inbound(sent, subject="unsubscribe MTI:1vX9aB:" + "x" * 43)
    assert post(client, INBOUND, payload).status_code == 200
    assert not Unsubscribe.objects.exists()
    assert FeedbackEvent.objects.get().kind == "replied"  # read as what it is: a reply


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        (TRACKING, "postmark-soft"),
        ("/anymail/sparkpost/tracking/", "sparkpost-22"),
        ("/anymail/sparkpost/tracking/", "sparkpost-70"),
    ],
)
def test_a_soft_bounce_suppresses_nobody_and_the_sequence_goes_on(client, sent, path, payload):
    """Mailbox full, a transient failure: the address is fine and the ESP tries again."""
    if payload == "postmark-soft":
        body = postmark_bounce(sent.recipient, Type="SoftBounce", TypeCode=4096,
                               Name="Soft bounce", Details="452 4.2.2 Mailbox full")  # fmt: skip
    else:
        OutboundMessage.objects.filter(pk=sent.pk).update(esp_message_id="6583215")
        body = [{"msys": {"message_event": {
            "type": "bounce", "event_id": "9235692769", "bounce_class": payload[-2:],
            "raw_reason": "452 4.2.2 Mailbox full", "reason": "452 4.2.2 Mailbox full",
            "transmission_id": "6583215", "rcpt_to": sent.recipient, "timestamp": "1764673554",
        }}}]  # fmt: skip
    assert post(client, path, body).status_code == 200
    event = FeedbackEvent.objects.get()
    assert event.kind == "deferred" and event.message == sent
    assert not SuppressionEntry.objects.exists()
    assert sent.lead.__class__.objects.get(pk=sent.lead_id).status == LeadStatus.ACTIVE
    assert Enrollment.objects.get(lead_id=sent.lead_id).state == "active"


def test_a_sparkpost_block_of_the_sender_is_recorded_not_a_bad_address(client, sent):
    OutboundMessage.objects.filter(pk=sent.pk).update(esp_message_id="6583216")
    body = [{"msys": {"message_event": {
        "type": "bounce", "event_id": "9235692770", "bounce_class": "50",
        "reason": "554 5.7.1 Service unavailable; client host blocked", "timestamp": "1764673554",
        "transmission_id": "6583216", "rcpt_to": sent.recipient,
    }}}]  # fmt: skip
    assert post(client, "/anymail/sparkpost/tracking/", body).status_code == 200
    assert FeedbackEvent.objects.get().kind == "rejected"
    assert not SuppressionEntry.objects.exists()
    assert sent.lead.__class__.objects.get(pk=sent.lead_id).status == LeadStatus.ACTIVE
