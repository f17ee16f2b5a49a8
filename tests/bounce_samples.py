"""Bounce reports as mail servers send them, for the bounce tests."""
from __future__ import annotations

#: A delivery status notification as Postfix writes it (RFC 3464
#: multipart/report: human part, message/delivery-status, returned headers).
DSN_TEMPLATE = """From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: no-reply@onboard.localhost
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not be delivered.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
Arrival-Date: Mon, 3 Jun 2024 10:00:00 +0000

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.com
Diagnostic-Code: smtp; 550 {status} <{rcpt}>: Recipient address rejected: User unknown

--B1
Content-Type: text/rfc822-headers

From: Onboard <no-reply@onboard.localhost>
To: {rcpt}
Subject: Confirm your e-mail address for Onboard
Message-ID: {mid}

--B1--
"""


def dsn(rcpt: str, mid: str, status: str = "5.1.1", action: str = "failed") -> bytes:
    """A DSN for one recipient of the mail with Message-ID ``mid``."""
    return DSN_TEMPLATE.format(rcpt=rcpt, mid=mid, status=status, action=action).encode()
