"""IMAP polling against a real Dovecot on loopback (`tests/imap.py`): our emails go out live
through a real SMTP server (`tests/smtp.py`), what mail servers and clients answer arrives in
the mailbox's inbox by IMAP APPEND (`outreach/tests/mails.py`), and `feedback poll` turns it
into feedback events with their effects."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import threading

import pytest
import time_machine
from django.core.management import CommandError, call_command

from leads.models import LeadStatus, SuppressionEntry
from outreach.dispatch import tick
from outreach.imap import imap_url_parse, mailbox_poll, mailboxes_poll
from outreach.models import Enrollment, FeedbackEvent, Mailbox, MailboxPoll, OutboundMessage
from outreach.tests import mails
from outreach.tests.outbox import NOON, running_campaign, two_step_sequence
from tests.factories import LeadFactory
from ventures.models import SendMode

pytestmark = pytest.mark.django_db

LEADS = ("lena", "bob", "carl", "olga", "paul")


@pytest.fixture(autouse=True)
def live(settings):
    settings.AICMO_SEND_MODE = "live"
    settings.AICMO_SITE_URL = "https://aicmo.example"
    settings.AICMO_IMAP_TIMEOUT = 5


@pytest.fixture
def inbox(imap_server):
    return imap_server.user()


@pytest.fixture
def box(smtp_sink, inbox):
    """A live campaign's one mailbox: it sends to the SMTP sink and reads its inbox over IMAP."""
    with time_machine.travel(NOON, tick=False):
        campaign = running_campaign(mode=SendMode.LIVE)
        two_step_sequence(campaign, delay_days=3)
        box = Mailbox.objects.create(
            venture=campaign.venture, name="Sam", from_name="Sam Sender",
            from_email="sam@venture.example", connection_url=smtp_sink.url,
            imap_url=inbox.url(), daily_limit=1000, min_gap_seconds=0, gap_jitter_seconds=0,
        )  # fmt: skip
        box.campaigns.add(campaign)
    return box


@pytest.fixture
def sent(box, smtp_sink):
    """Each lead's first email, sent live: {name: (message, raw bytes as the server got them)}."""
    campaign = box.campaigns.get()
    leads = {n: LeadFactory(campaign=campaign, email=f"{n}@prospect.example") for n in LEADS}
    with time_machine.travel(NOON, tick=False):
        assert tick().counts == {"sent": len(LEADS)}
    raw = {m.rcpt_tos[0]: m.data for m in smtp_sink.messages}
    return {
        name: (OutboundMessage.objects.get(lead=lead, step__position=1), raw[lead.email])
        for name, lead in leads.items()
    }


def poll(box) -> dict:
    result = mailbox_poll(mailbox=box)
    assert not result.error, result.error
    return dict(result.counts)


def follow_up(message) -> OutboundMessage:
    return OutboundMessage.objects.get(lead_id=message.lead_id, step__position=2)


def lead_of(message):
    return message.lead.__class__.objects.get(pk=message.lead_id)


# --- Each kind of mail, and what it does ---------------------------------------------------------


def test_a_hard_bounce_suppresses_the_address_and_stops_the_sequence(box, sent, inbox):
    message, raw = sent["bob"]
    inbox.append(mails.postfix_bounce(raw, recipient=message.recipient))

    assert poll(box) == {"mails": 1, "bounced": 1}

    event = FeedbackEvent.objects.get()
    assert (event.source, event.kind, event.matched_by, event.message) == (
        "imap", "bounced", "thread", message,
    )  # fmt: skip
    assert event.recipient == message.recipient
    assert event.reason.startswith("5.1.1: 550 5.1.1") and "User unknown" in event.reason
    assert event.event_id == "<20261202110004.0B7DC1C0B4@mail.venture.example>"
    assert lead_of(message).status == LeadStatus.BOUNCED
    assert SuppressionEntry.objects.filter(value=message.recipient, source="bounce").exists()
    assert (follow_up(message).state, follow_up(message).reason_code) == ("blocked", "bounced")
    # The others are untouched.
    assert Enrollment.objects.filter(state="active").count() == len(LEADS) - 1


def test_a_soft_bounce_is_recorded_and_suppresses_nothing(box, sent, inbox):
    message, raw = sent["carl"]
    inbox.append(mails.postfix_delay(raw, recipient=message.recipient))

    assert poll(box) == {"mails": 1, "deferred": 1}

    event = FeedbackEvent.objects.get()
    assert (event.kind, event.message, event.matched_by) == ("deferred", message, "thread")
    assert event.reason.startswith("4.2.2: 452 4.2.2") and "Mailbox full" in event.reason
    assert not SuppressionEntry.objects.exists()
    assert lead_of(message).status == LeadStatus.ACTIVE
    assert Enrollment.objects.get(lead_id=message.lead_id).state == "active"
    assert follow_up(message).state == "scheduled"


def test_a_bounce_without_the_returned_original_is_matched_by_the_failed_address(box, sent, inbox):
    message, raw = sent["bob"]
    inbox.append(mails.postfix_bounce(raw, recipient=message.recipient, returned=False))

    assert poll(box) == {"mails": 1, "bounced": 1}
    event = FeedbackEvent.objects.get()
    assert (event.message, event.matched_by, event.thread_ids) == (message, "address", [])
    assert lead_of(message).status == LeadStatus.BOUNCED


def test_a_bounce_in_a_pre_dsn_format_is_read_by_flufl_bounce(box, sent, inbox):
    message, raw = sent["bob"]
    garbled = b"MAILER-DAEMON@mx.prospect.example (Mail Delivery \xff System)"
    inbox.append(mails.qmail_bounce(raw, recipient=message.recipient, from_header=garbled))

    assert poll(box) == {"mails": 1, "bounced": 1}
    event = FeedbackEvent.objects.get()
    assert (event.kind, event.message) == ("bounced", message)
    assert event.reason == "a permanent delivery failure"
    assert lead_of(message).status == LeadStatus.BOUNCED


def test_a_reply_stops_the_sequence_and_shows_its_new_text(box, sent, inbox):
    message, raw = sent["lena"]
    inbox.append(mails.gmail_reply(raw, text="Sounds interesting - can we talk on Friday at 3?"))

    assert poll(box) == {"mails": 1, "replied": 1}

    event = FeedbackEvent.objects.get()
    assert (event.kind, event.matched_by, event.message) == ("replied", "thread", message)
    assert event.recipient == "lena@prospect.example"
    assert event.subject == f"Re: {message.subject}"
    assert event.reply_text == "Sounds interesting - can we talk on Friday at 3?"
    assert "wrote:" in event.text  # the whole text is kept; the new part is cut from it
    assert lead_of(message).status == LeadStatus.REPLIED
    assert (follow_up(message).state, follow_up(message).reason_code) == ("blocked", "replied")


def test_a_reply_that_names_none_of_our_ids_is_matched_by_the_senders_address(box, sent, inbox):
    message, raw = sent["paul"]
    inbox.append(mails.outlook_reply(raw, text="Please send me the pricing."))

    assert poll(box) == {"mails": 1, "replied": 1}

    event = FeedbackEvent.objects.get()
    assert (event.kind, event.matched_by, event.message) == ("replied", "address", message)
    assert event.thread_ids == []
    assert event.reply_text.startswith("Please send me the pricing.")
    assert "From: Sam Sender" not in event.reply_text
    assert lead_of(message).status == LeadStatus.REPLIED


def test_an_out_of_office_is_recorded_with_its_text_and_stops_nothing(box, sent, inbox):
    message, raw = sent["olga"]
    text = "I am out of the office until 14 December with limited access to e-mail."
    inbox.append(mails.exchange_out_of_office(raw, text=text))

    assert poll(box) == {"mails": 1, "autoresponded": 1}

    event = FeedbackEvent.objects.get()
    assert (event.kind, event.message) == ("autoresponded", message)
    assert event.reply_text == text
    assert lead_of(message).status == LeadStatus.ACTIVE
    assert Enrollment.objects.get(lead_id=message.lead_id).state == "active"
    assert follow_up(message).state == "scheduled"


def test_an_unrelated_mail_is_kept_as_unmatched_and_the_own_sent_copy_is_skipped(box, sent, inbox):
    _message, raw = sent["lena"]
    inbox.append(mails.stranger_mail(), raw)  # a stranger's mail; our email, as sent

    assert poll(box) == {"mails": 2, "replied": 1, "unmatched": 1, "own": 1}

    event = FeedbackEvent.objects.get()
    assert (event.recipient, event.message, event.lead) == ("nora@elsewhere.example", None, None)
    assert event.effect.startswith("unmatched")
    assert Enrollment.objects.filter(state="active").count() == len(LEADS)


# --- Reading only new mail, each mail once, changing nothing -------------------------------------


def test_a_second_poll_stores_nothing_new_and_a_mail_delivered_twice_counts_once(box, sent, inbox):
    _message, raw = sent["lena"]
    reply = mails.gmail_reply(raw, text="Yes, let's talk.")
    inbox.append(reply, reply)

    assert poll(box) == {"mails": 2, "replied": 1, "repeated": 1}
    assert poll(box) == {}  # nothing new
    assert FeedbackEvent.objects.count() == 1
    state = MailboxPoll.objects.get(mailbox=box)
    assert state.last_uid == 2 and state.error == "" and state.succeeded_at is not None

    inbox.append(mails.stranger_mail())
    assert poll(box) == {"mails": 1, "replied": 1, "unmatched": 1}
    assert FeedbackEvent.objects.count() == 2


def test_a_changed_uidvalidity_reads_the_folder_again_without_counting_twice(box, sent, inbox):
    message, raw = sent["bob"]
    inbox.append(mails.postfix_bounce(raw, recipient=message.recipient), mails.stranger_mail())
    assert poll(box) == {"mails": 2, "bounced": 1, "replied": 1, "unmatched": 1}

    new = inbox.uidvalidity_change()

    assert poll(box) == {"mails": 2, "repeated": 2}
    assert MailboxPoll.objects.get(mailbox=box).uidvalidity == new
    assert FeedbackEvent.objects.count() == 2
    assert SuppressionEntry.objects.count() == 1


def test_a_large_backlog_is_read_over_several_polls(box, sent, inbox, monkeypatch):
    monkeypatch.setattr("outreach.imap.MAX_MAILS_PER_POLL", 2)
    inbox.append(*(mails.stranger_mail().replace(b"a1b2c3d4", b"mail%d" % n) for n in range(3)))

    first = mailbox_poll(mailbox=box)
    assert (first.counts["mails"], first.waiting) == (2, 1)
    assert first.summary().endswith("; 1 more for the next poll")
    assert poll(box) == {"mails": 1, "replied": 1, "unmatched": 1}
    assert FeedbackEvent.objects.count() == 3


def test_mail_that_arrived_before_the_mailbox_was_added_is_not_read(box, sent, inbox):
    old = box.created_at - dt.timedelta(days=30)
    inbox.append(mails.stranger_mail(), arrived=old)
    assert poll(box) == {}
    assert not FeedbackEvent.objects.exists()


def test_a_server_without_starttls_is_refused_rather_than_sent_the_password(inbox):
    from outreach.imap import ImapPollError, ImapTarget, _session

    target = ImapTarget(
        security="starttls", host="127.0.0.1", port=inbox.server.port, user=inbox.name,
        password=inbox.password,
    )  # fmt: skip
    with pytest.raises(ImapPollError) as refused, _session(target):
        pass
    assert str(refused.value) == (
        f"127.0.0.1:{inbox.server.port} offers no STARTTLS, so the password is not sent; use "
        "imaps:// (TLS on port 993) instead"
    )


def test_a_poll_marks_nothing_seen_and_changes_nothing_in_the_mailbox(box, sent, inbox):
    _message, raw = sent["lena"]
    inbox.append(mails.gmail_reply(raw, text="Interested."), mails.stranger_mail())
    before = inbox.flags()

    poll(box)

    assert inbox.flags() == before
    assert all("\\Seen" not in flags for flags in before.values())


def test_a_folder_other_than_the_inbox_is_polled_as_the_url_names_it(box, sent, inbox):
    _message, raw = sent["lena"]
    inbox.append(mails.gmail_reply(raw, text="Call me."), folder="Lead Replies")
    inbox.append(mails.stranger_mail())  # in INBOX: not read
    Mailbox.objects.filter(pk=box.pk).update(imap_url=inbox.url("Lead Replies"))
    box.refresh_from_db()

    assert poll(box) == {"mails": 1, "replied": 1}


# --- Malformed mail --------------------------------------------------------------------------------


def test_malformed_mail_is_recorded_and_never_stops_a_poll(box, sent, inbox, caplog):
    message, raw = sent["lena"]
    no_headers = b"\r\nJust a body, no header at all.\r\n"
    bad_charset = (
        b"From: Lena Lead <lena@prospect.example>\r\nSubject: Re: \xe4rger \xff\r\n"
        b"In-Reply-To: " + message.message_id.encode() + b"\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n\r\n"
        b"Gr\xfc\xdfe, sounds good.\x00 Call me.\r\n"
    )
    attachment = b"A" * (3 * 1024 * 1024)
    huge = (
        b"From: Paul Prospect <paul@prospect.example>\r\nSubject: Deck attached\r\n"
        b"Message-ID: <huge-1@prospect.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nHere is our deck, what do you think?\r\n"
        b'--b1\r\nContent-Type: application/pdf; name="deck.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + attachment + b"\r\n--b1--\r\n"
    )
    # A bounce report the bounce detectors choke on (no From at all): stored, not lost.
    choking = mails.qmail_bounce(raw, recipient="x@prospect.example", from_header=b"").replace(
        b"Message-ID: <2026", b"Message-ID: <choke-2026"
    )
    inbox.append(no_headers, bad_charset, huge, mails.stranger_mail(), choking)

    assert poll(box) == {"mails": 5, "replied": 5, "unmatched": 3}
    assert FeedbackEvent.objects.filter(subject="failure notice", kind="replied").exists()

    by_sender = {e.recipient: e for e in FeedbackEvent.objects.all()}
    assert by_sender[""].effect.startswith("unmatched")  # no headers: kept, matched to nothing
    garbled = by_sender["lena@prospect.example"]
    assert garbled.message == message and "\x00" not in garbled.text
    assert "Call me." in garbled.text and garbled.subject.startswith("Re: ")
    big = by_sender["paul@prospect.example"]
    assert big.matched_by == "address" and "what do you think?" in big.text
    assert "read as its headers and the first 256 KB" in big.notes
    assert MailboxPoll.objects.get(mailbox=box).last_uid == 5
    assert "flufl.bounce cannot read is stored as a plain mail" in caplog.text


# --- The command: every mailbox, one line each ---------------------------------------------------


@pytest.fixture
def second_box(box, imap_server):
    """Another mailbox of the venture whose IMAP password is wrong."""
    wrong = imap_server.user()
    url = wrong.url().replace(wrong.password, "not-the-password")
    return Mailbox.objects.create(
        venture=box.venture, name="Tim", from_email="tim@venture.example", imap_url=url
    )


def test_a_wrong_password_is_one_line_and_the_other_mailbox_is_still_polled(
    box, second_box, sent, inbox, capsys
):
    _message, raw = sent["lena"]
    inbox.append(mails.gmail_reply(raw, text="Sure."))

    with pytest.raises(CommandError) as failed:
        call_command("feedback", "poll")

    out = capsys.readouterr().out
    assert "sam@venture.example: 1 new mail (1 reply)" in out
    assert (
        "tim@venture.example: not polled: 127.0.0.1:"
        f"{inbox.server.port} refused the login of '{second_box.imap_url.split('//')[1].split(':')[0]}': "
        "[AUTHENTICATIONFAILED] Authentication failed." in out
    )
    assert str(failed.value) == "1 of 2 mailboxes could not be polled: tim@venture.example"
    assert "not-the-password" not in out + str(failed.value)
    assert inbox.password not in out
    assert FeedbackEvent.objects.get().kind == "replied"
    state = MailboxPoll.objects.get(mailbox=second_box)
    assert "refused the login" in state.error and state.succeeded_at is None


def test_the_json_output_counts_what_each_mailbox_found(box, second_box, sent, inbox, capsys):
    message, raw = sent["bob"]
    inbox.append(mails.postfix_bounce(raw, recipient=message.recipient), mails.stranger_mail())

    with pytest.raises(CommandError):
        call_command("feedback", "poll", "--json")

    data = json.loads(capsys.readouterr().out)
    assert data["failed"] == 1
    good, bad = data["mailboxes"]
    assert good == {
        "mailbox": box.pk, "email": "sam@venture.example", "ok": True, "error": "",
        "transient": False, "waiting": 0, "mails": 2, "replied": 1, "bounced": 1, "deferred": 0,
        "autoresponded": 0, "unsubscribed": 0, "unmatched": 1, "repeated": 0, "own": 0,
        "unreadable": 0,
    }  # fmt: skip
    # A wrong password does not mend itself: not transient.
    assert (bad["email"], bad["ok"], bad["transient"], bad["mails"]) == (
        "tim@venture.example", False, False, 0,
    )  # fmt: skip
    assert "refused the login" in bad["error"]


def test_one_mailbox_is_polled_by_its_address_or_id(box, second_box, sent, inbox, capsys):
    call_command("feedback", "poll", "--mailbox", "SAM@venture.example")
    assert capsys.readouterr().out.strip() == "sam@venture.example: no new mail"
    call_command("feedback", "poll", "--mailbox", str(box.pk))
    assert not MailboxPoll.objects.filter(mailbox=second_box).exists()
    with pytest.raises(
        CommandError, match=re.escape("No mailbox has the id or address 'nobody@x.example'")
    ):
        call_command("feedback", "poll", "--mailbox", "nobody@x.example")
    Mailbox.objects.filter(pk=second_box.pk).update(imap_url="")
    with pytest.raises(CommandError, match=re.escape("tim@venture.example has no IMAP URL")):
        call_command("feedback", "poll", "--mailbox", "tim@venture.example")


def test_no_mailbox_with_an_imap_url_is_said_and_not_an_error(db, capsys):
    call_command("feedback", "poll")
    assert "No mailbox has an IMAP URL" in capsys.readouterr().out


@pytest.fixture
def silent_server():
    """A TCP server on loopback that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    for conn in accepted:
        conn.close()
    listener.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("url", "expected", "transient"),
    [
        ("imap://sam:s3cret-pw@127.0.0.1:{closed}/INBOX", "refused the connection", True),
        ("imap://sam:s3cret-pw@127.0.0.1:{silent}/", "no answer from 127.0.0.1:{silent}", True),
        ("imaps://sam:s3cret-pw@127.0.0.1:{silent}/", "no answer from 127.0.0.1:{silent}", True),
        ("smtp://sam:s3cret-pw@127.0.0.1/INBOX", "the IMAP URL must start with imaps://", False),
    ],
    ids=["refused", "timeout", "tls-timeout", "not-imap"],
)
def test_an_unreachable_server_is_one_line_without_the_password(
    db, settings, silent_server, capsys, url, expected, transient
):
    settings.AICMO_IMAP_TIMEOUT = 1
    ports = {"closed": _closed_port(), "silent": silent_server}
    box = Mailbox.objects.create(
        venture=running_campaign().venture, name="Sam", from_email="sam@venture.example",
        imap_url=url.format(**ports),
    )  # fmt: skip

    with pytest.raises(CommandError):
        call_command("feedback", "poll")

    out = capsys.readouterr().out
    assert out.startswith("sam@venture.example: not polled: ") and out.count("\n") <= 1
    assert expected.format(**ports) in out
    assert "s3cret-pw" not in out
    assert expected.format(**ports) in MailboxPoll.objects.get(mailbox=box).error
    assert mailboxes_poll()[0].transient is transient


def test_a_missing_folder_is_one_line(box, sent, inbox, capsys):
    Mailbox.objects.filter(pk=box.pk).update(imap_url=inbox.url("No/Such/Folder"))
    result = mailboxes_poll()[0]
    assert result.error.startswith("folder 'No/Such/Folder' cannot be opened on 127.0.0.1:")


# --- The IMAP URL ----------------------------------------------------------------------------------


def test_the_imap_url_names_security_port_user_and_folder():
    tls = imap_url_parse("imaps://sam%40venture.example:p%2Fw%23rd@imap.example.com/INBOX.Replies")
    assert (tls.security, tls.host, tls.port, tls.user, tls.password, tls.folder) == (
        "tls", "imap.example.com", 993, "sam@venture.example", "p/w#rd", "INBOX.Replies",
    )  # fmt: skip
    starttls = imap_url_parse("imap://sam:pw@imap.example.com")
    assert (starttls.security, starttls.port, starttls.folder) == ("starttls", 143, "INBOX")
    local = imap_url_parse("imap://sam:pw@127.0.0.1:1143/Archive%20Replies")
    assert (local.security, local.port, local.folder) == ("plain", 1143, "Archive Replies")
    assert imap_url_parse("imap://sam:pw@[::1]/").security == "plain"
    assert imap_url_parse("imap://sam:pw@10.0.0.5/").security == "starttls"
    assert "pw" not in repr(local).replace("plain", "")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://sam:pw@imap.example.com/", "must start with imaps:// (TLS, port 993)"),
        ("imaps://imap.example.com/INBOX", "needs the user name and password"),
        ("imaps://sam:pw@/INBOX", "names no server"),
        ("imaps://sam:pw@imap.example.com:99999/", "valid port"),
        ("imaps://sam:pw?d@imap.example.com/", "percent-encode characters such as / # ?"),
        ("imaps://sam:pw@imap.example.com/INBOX?tls=1", "takes no ?query"),
    ],
)
def test_a_bad_imap_url_is_a_clear_message(url, message):
    from outreach.imap import ImapUrlError

    with pytest.raises(ImapUrlError, match=re.escape(message)) as bad:
        imap_url_parse(url)
    assert "pw" not in str(bad.value)


# --- The schedule, and the console ---------------------------------------------------------------


def test_migrate_schedules_the_poll_and_the_task_polls_every_mailbox(box, sent, inbox, settings):
    from django_q.models import Schedule

    from outreach.signals import IMAP_POLL_SCHEDULE, ensure_imap_poll_schedule
    from outreach.tasks import mailboxes_poll as poll_task

    schedule = Schedule.objects.get(name=IMAP_POLL_SCHEDULE)  # made when the test database was
    assert schedule.func == "outreach.tasks.mailboxes_poll"
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == (Schedule.MINUTES, 5, -1)
    settings.AICMO_IMAP_POLL_MINUTES = 15
    ensure_imap_poll_schedule()
    assert Schedule.objects.get(name=IMAP_POLL_SCHEDULE).minutes == 15

    _message, raw = sent["lena"]
    inbox.append(mails.gmail_reply(raw, text="Tuesday works."))
    assert poll_task() == {"polled": 1, "failed": 0}
    assert FeedbackEvent.objects.get().reply_text == "Tuesday works."
    assert poll_task() == {"polled": 1, "failed": 0}  # again: nothing new, nothing twice
    assert FeedbackEvent.objects.count() == 1

    settings.AICMO_IMAP_POLL_MINUTES = 0
    ensure_imap_poll_schedule()
    assert not Schedule.objects.filter(name=IMAP_POLL_SCHEDULE).exists()


@pytest.mark.usefixtures("plain_http")
def test_the_mailbox_page_shows_the_last_poll_and_never_the_imap_password(
    client, administrator, box, second_box, sent, inbox
):
    message, raw = sent["bob"]
    inbox.append(mails.postfix_bounce(raw, recipient=message.recipient), mails.stranger_mail())
    mailboxes_poll()
    client.force_login(administrator)

    page = client.get(f"/admin/outreach/mailbox/{box.pk}/change/").content.decode()
    assert "2 new mails (1 reply, 1 hard bounce, 1 matching no email of ours)" in page
    assert inbox.password not in page
    other = client.get(f"/admin/outreach/mailbox/{second_box.pk}/change/").content.decode()
    assert "failed: 127.0.0.1:" in other and "refused the login of" in other
    assert "not-the-password" not in other and inbox.password not in other
