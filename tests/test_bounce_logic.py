"""Pure rules of bounces: reading RFC 3464 reports and JSON, RFC 3463 codes in
plain words, which bounces suppress an address (no app, no database)."""
from __future__ import annotations

import smtplib

import pytest

from tests.bounce_samples import dsn
from webapp.bounces import services as b


def test_dsn_gives_recipient_status_and_original_message_id() -> None:
    [r] = b.parse_dsn(dsn("Ann@Example.com", "<outbox-7.verify@onboard.localhost>"))
    assert (r.recipient, r.status, r.action, r.message_id, r.source) == (
        "ann@example.com", "5.1.1", "failed", "<outbox-7.verify@onboard.localhost>", "dsn")
    assert "User unknown" in r.diagnostic


@pytest.mark.parametrize("raw, why", [
    (b"Subject: hello\n\njust a mail", "no message/delivery-status"),
    (dsn("not an address", "<x@y>"), "not an e-mail address"),
    (dsn("a@example.com", "<x@y>", status="bounced"), "RFC 3463"),
])
def test_unreadable_dsn_is_refused_with_the_reason(raw: bytes, why: str) -> None:
    with pytest.raises(b.BadReport, match=why):
        b.parse_dsn(raw)


def test_json_report() -> None:
    r = b.parse_json(b'{"message_id": "outbox-3.verify@x", "recipient": "A@Example.com", '
                     b'"status": "5.2.2"}')
    assert (r.recipient, r.status, r.action, r.message_id) == (
        "a@example.com", "5.2.2", "failed", "<outbox-3.verify@x>")
    assert b.parse_json({"recipient": "a@example.com", "status": "4.2.2"}).action == "delayed"
    for bad in (b"[1]", b"{", b'{"recipient": "a@example.com"}',
                b'{"recipient": 5, "status": "5.1.1"}', b'{"recipient": "a@example.com", "status": "550"}'):
        with pytest.raises(b.BadReport):
            b.parse_json(bad)


def test_plain_words_and_hard_bounces() -> None:
    assert b.plain_reason("5.1.1") == "there is no mailbox with that address"
    assert b.plain_reason("5.2.2") == "the mailbox is full"
    assert b.plain_reason("5.7.9").startswith("the receiving server's security or spam policy")
    assert b.plain_reason("4.4.1").endswith("we kept trying for a while and then gave up")
    assert b.plain_reason("junk") == "the receiving server did not accept it"
    assert [b.is_hard(s) for s in ("5.1.1", "5.1.2", "5.2.1", "5.2.2", "5.7.1", "4.1.1")] == [
        True, True, True, False, False, False]


def test_smtp_replies_map_to_enhanced_codes() -> None:
    assert b.smtp_failure(smtplib.SMTPDataError(550, b"5.1.1 Mailbox unavailable")).status == "5.1.1"
    assert b.smtp_failure(smtplib.SMTPDataError(552, b"Too much mail")).status == "5.2.2"
    refused = smtplib.SMTPRecipientsRefused({"a@example.com": (553, b"bad address")})
    assert b.smtp_failure(refused).status == "5.1.3"
    assert b.retries_failure("SMTPDataError: (451, b'4.3.0 Try again later')").status == "4.3.0"
    assert b.retries_failure("ConnectionRefusedError: [Errno 111]").status == "4.4.1"
