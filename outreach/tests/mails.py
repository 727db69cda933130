"""Mail as mail servers and mail clients write it, answering an email we sent: Postfix's
bounce and delay notices (RFC 3464 DSNs), a Gmail reply, an Outlook reply that quotes our
email without In-Reply-To, an Exchange out-of-office, and a stranger's mail. Each builder
takes the raw bytes of our email as the SMTP server received them (`tests/smtp.py`) and
returns raw bytes to APPEND to an IMAP inbox, with the headers delivery adds."""

from __future__ import annotations

import email
from email import policy

CRLF = "\r\n"
POSTFIX_HOST = "mail.venture.example"


def _original(sent: bytes):
    return email.message_from_bytes(sent, policy=policy.compat32)


def _crlf(text: str) -> bytes:
    return CRLF.join(text.split("\n")).encode("utf-8")


def _quoted(original) -> str:
    body = original.get_payload(decode=True) or b""
    return "\n".join(f"> {line}" for line in body.decode("utf-8").splitlines())


def postfix_bounce(sent: bytes, *, recipient: str, returned: bool = True) -> bytes:
    """Postfix's "Undelivered Mail Returned to Sender": 5.1.1, with the whole original
    returned, or (`returned=False`, as some relays send it) without it."""
    original = sent.decode("utf-8").replace("\r\n", "\n").rstrip("\n")
    return _postfix_report(
        queue_id="4F2A81C0B3", stamp="1764673204", date="Wed,  2 Dec 2026 12:00:04 +0100 (CET)",
        message_id=f"<20261202110004.0B7DC1C0B4@{POSTFIX_HOST}>",
        subject="Undelivered Mail Returned to Sender",
        notice=f"""\
I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

<{recipient}>: host mx.prospect.example[203.0.113.25] said: 550 5.1.1
    <{recipient}>: Recipient address rejected: User unknown in virtual mailbox
    table (in reply to RCPT TO command)""",
        recipient_fields=f"""\
Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.prospect.example
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected:
    User unknown in virtual mailbox table""",
        returned=("Undelivered Message", "message/rfc822", original) if returned else None,
    )  # fmt: skip


def postfix_delay(sent: bytes, *, recipient: str) -> bytes:
    """Postfix's "Delayed Mail (still being retried)": 4.2.2 mailbox full, headers returned."""
    headers = sent.decode("utf-8").replace("\r\n", "\n").split("\n\n", 1)[0]
    return _postfix_report(
        queue_id="7C19E1C0A2", stamp="1764687609", date="Wed,  2 Dec 2026 16:00:09 +0100 (CET)",
        message_id=f"<20261202150009.2D4F01C0A9@{POSTFIX_HOST}>",
        subject="Delayed Mail (still being retried)",
        notice=f"""\
####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

Your message could not be delivered for more than 4 hour(s).
It will be retried until it is 5 day(s) old.

                   The mail system

<{recipient}>: host mx.prospect.example[203.0.113.25] said: 452 4.2.2
    <{recipient}>: Mailbox full (in reply to RCPT TO command)""",
        recipient_fields=f"""\
Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: delayed
Status: 4.2.2
Remote-MTA: dns; mx.prospect.example
Diagnostic-Code: smtp; 452 4.2.2 <{recipient}>: Mailbox full
Will-Retry-Until: Mon,  7 Dec 2026 12:00:02 +0100 (CET)""",
        returned=("Undelivered Message Headers", "text/rfc822-headers", headers),
    )  # fmt: skip


def _postfix_report(
    *, queue_id: str, stamp: str, date: str, message_id: str, subject: str, notice: str,
    recipient_fields: str, returned: tuple[str, str, str] | None,
) -> bytes:  # fmt: skip
    """A DSN as Postfix's bounce daemon writes it, delivered back to our mailbox."""
    boundary = f"{queue_id}.{stamp}/{POSTFIX_HOST}"
    attached = ""
    if returned is not None:
        description, content_type, content = returned
        attached = (
            f"--{boundary}\nContent-Description: {description}\nContent-Type: {content_type}\n"
            f"Content-Transfer-Encoding: 8bit\n\n{content}\n\n"
        )
    return _crlf(f"""\
Return-Path: <>
Delivered-To: sam@venture.example
Received: by {POSTFIX_HOST} (Postfix)
	id {queue_id}; {date}
Date: {date}
From: MAILER-DAEMON@{POSTFIX_HOST} (Mail Delivery System)
Subject: {subject}
To: sam@venture.example
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="{boundary}"
Content-Transfer-Encoding: 8bit
Message-Id: {message_id}

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This is the mail system at host {POSTFIX_HOST}.

{notice}

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; {POSTFIX_HOST}
X-Postfix-Queue-ID: {queue_id}
X-Postfix-Sender: rfc822; sam@venture.example
Arrival-Date: Wed,  2 Dec 2026 12:00:02 +0100 (CET)

{recipient_fields}

{attached}--{boundary}--
""")


def gmail_reply(sent: bytes, *, text: str, message_id: str = "") -> bytes:
    """A reply written in Gmail: text and HTML, our email quoted below "On ... wrote:"."""
    original = _original(sent)
    ours = original["Message-ID"]
    mid = message_id or "<CAK7ZmQxL9f2nR0u3jP4Hq8bVw1sYt6cE5dGh2Ji0kLm9No@mail.gmail.com>"
    lead = original["To"]
    boundary = "000000000000a1b2c3d4e5f60718"
    return _crlf(f"""\
Return-Path: <{lead}>
Delivered-To: sam@venture.example
Received: from mail-lj1-f181.google.com (mail-lj1-f181.google.com [209.85.208.181])
	by {POSTFIX_HOST} (Postfix) with ESMTPS id 5E3B21C0B7
	for <sam@venture.example>; Wed,  2 Dec 2026 13:41:27 +0100 (CET)
MIME-Version: 1.0
References: {ours}
In-Reply-To: {ours}
From: Lena Lead <{lead}>
Date: Wed, 2 Dec 2026 13:41:12 +0100
Message-ID: {mid}
Subject: Re: {original["Subject"]}
To: Sam Sender <sam@venture.example>
Content-Type: multipart/alternative; boundary="{boundary}"

--{boundary}
Content-Type: text/plain; charset="UTF-8"
Content-Transfer-Encoding: 8bit

{text}

On Wed, Dec 2, 2026 at 12:00 PM Sam Sender <sam@venture.example> wrote:

{_quoted(original)}

--{boundary}
Content-Type: text/html; charset="UTF-8"
Content-Transfer-Encoding: 8bit

<div dir="ltr">{text}</div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Wed,
 Dec 2, 2026 at 12:00 PM Sam Sender &lt;sam@venture.example&gt; wrote:<br></div>
<blockquote class="gmail_quote">Hi</blockquote></div>

--{boundary}--
""")


def outlook_reply(sent: bytes, *, text: str) -> bytes:
    """A reply from Outlook that quotes our email under its header block and names none of
    our ids (no In-Reply-To, no References: only Thread-Topic and Thread-Index)."""
    original = _original(sent)
    lead = original["To"]
    body = (original.get_payload(decode=True) or b"").decode("utf-8")
    return _crlf(f"""\
Return-Path: <{lead}>
Delivered-To: sam@venture.example
From: Paul Prospect <{lead}>
To: Sam Sender <sam@venture.example>
Subject: AW: {original["Subject"]}
Thread-Topic: {original["Subject"]}
Thread-Index: AQHbRk3xq0m7yq2ZVEOd4r5Lh6pPbQ==
Date: Wed, 2 Dec 2026 14:05:33 +0000
Message-ID: <AM9PR07MB7012C3F1B0D44E2A9B6A5E1FD1A2A@AM9PR07MB7012.eurprd07.prod.outlook.com>
Accept-Language: de-DE, en-US
Content-Language: en-US
X-MS-Has-Attach:
X-MS-TNEF-Correlator:
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: 8bit

{text}

Paul

________________________________
From: Sam Sender <sam@venture.example>
Sent: Wednesday, December 2, 2026 12:00 PM
To: {lead}
Subject: {original["Subject"]}

{body}
""")


def exchange_out_of_office(sent: bytes, *, text: str) -> bytes:
    """Exchange's automatic reply: sent with an empty envelope sender (RFC 3834), with
    Auto-Submitted and X-Auto-Response-Suppress headers."""
    original = _original(sent)
    ours = original["Message-ID"]
    lead = original["To"]
    return _crlf(f"""\
Return-Path: <>
Delivered-To: sam@venture.example
From: Olga Office <{lead}>
To: Sam Sender <sam@venture.example>
Subject: Automatic reply: {original["Subject"]}
Thread-Topic: {original["Subject"]}
Date: Wed, 2 Dec 2026 11:00:41 +0000
Message-ID: <2b8e1c6f0a7d4e3f9c5b@DB8PR02MB5913.eurprd02.prod.outlook.com>
In-Reply-To: {ours}
References: {ours}
Auto-Submitted: auto-generated
X-Auto-Response-Suppress: All
X-MS-Exchange-Inbox-Rules-Loop: {lead}
Content-Language: en-US
MIME-Version: 1.0
Content-Type: text/plain; charset="us-ascii"

{text}
""")


def stranger_mail() -> bytes:
    """Someone we never wrote to, about something else."""
    return _crlf("""\
Return-Path: <nora@elsewhere.example>
Delivered-To: sam@venture.example
From: Nora Newcomer <nora@elsewhere.example>
To: sam@venture.example
Subject: Partnership?
Date: Wed, 2 Dec 2026 09:12:00 +0100
Message-ID: <a1b2c3d4-0000-4c5d-9e8f@elsewhere.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hi Sam, do you work with agencies? Nora
""")


def qmail_bounce(sent: bytes, *, recipient: str, from_header: bytes) -> bytes:
    """qmail's "failure notice" (no DSN: flufl.bounce's qmail detector reads its text), with
    the From header as the server wrote it (some write 8-bit bytes there)."""
    original = sent.decode("utf-8").replace("\r\n", "\n").rstrip("\n")
    head = b"Return-Path: <>\r\nDelivered-To: sam@venture.example\r\nFrom: " + from_header
    return head + _crlf(f"""
To: sam@venture.example
Subject: failure notice
Date: 2 Dec 2026 11:00:07 -0000
Message-ID: <20261202110007.31337.qmail@mx.prospect.example>

Hi. This is the qmail-send program at mx.prospect.example.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<{recipient}>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

{original}
""")
