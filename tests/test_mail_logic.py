"""Pure logic of mail delivery: SMTP error classes, the retry schedule, the
table of mail kinds and message building."""
from __future__ import annotations

import smtplib
import socket
import ssl
from pathlib import Path

import pytest

from webapp.config import from_env
from webapp.mail import (PermanentMailError, SMTPUTF8Unsupported, TransientMailError,
                         classify_smtp_error, needs_smtputf8)
from webapp.tasks.retry import retry_countdown, retry_span


@pytest.mark.parametrize("exc, expected", [
    (smtplib.SMTPDataError(550, b"5.1.1 Mailbox unavailable"), PermanentMailError),
    (smtplib.SMTPSenderRefused(553, b"sender refused", "a@example.com"), PermanentMailError),
    (smtplib.SMTPDataError(451, b"4.3.0 Try again later"), TransientMailError),
    (smtplib.SMTPResponseException(421, b"closing"), TransientMailError),
    (smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no")}), PermanentMailError),
    (smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no"),
                                    "b@example.com": (452, b"full")}), TransientMailError),
    (smtplib.SMTPRecipientsRefused({}), TransientMailError),
    (smtplib.SMTPServerDisconnected("gone"), TransientMailError),
    (ConnectionRefusedError(111, "refused"), TransientMailError),
    (socket.timeout("timed out"), TransientMailError),
    (OSError("network unreachable"), TransientMailError),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), TransientMailError),
    (SMTPUTF8Unsupported("no SMTPUTF8"), PermanentMailError),
])
def test_classify_smtp_error(exc: BaseException, expected: type) -> None:
    assert classify_smtp_error(exc) is expected


def test_countdown_grows_then_caps_with_equal_jitter() -> None:
    low = [retry_countdown(n, 300, rand=lambda: 0.0) for n in range(12)]
    high = [retry_countdown(n, 300, rand=lambda: 0.999999) for n in range(12)]
    assert low[:5] == [1, 1, 2, 4, 8]  # whole seconds, at least 1
    assert low[-1] == 150  # half the cap is always waited
    assert high[:5] == [1, 2, 4, 8, 16] and high[-1] == 300
    assert all(a <= b for a, b in zip(low, low[1:]))
    assert retry_countdown(5, 60, rand=lambda: 0.5) == 24  # 32 * 0.75
    assert retry_countdown(9, 60, rand=lambda: 0.0) == 30  # capped: the image task's 60 s


def test_retry_span_bounds() -> None:
    # Longest: 1+2+...+256 = 511, then 7 waits at the cap of 300 s. Shortest: half
    # of each, the first wait rounded up to 1 s.
    assert retry_span(16, 300) == (1306, 2611)
    assert retry_span(0, 300) == (0, 0)
    assert retry_span(5, 2) == (5, 9)  # 1+1+1+1+1, 1+2+2+2+2


def test_default_retries_outlast_a_ten_minute_outage() -> None:
    cfg = from_env({})
    shortest, longest = retry_span(cfg["MAIL_MAX_RETRIES"], cfg["MAIL_RETRY_BACKOFF_MAX"])
    assert shortest > 600
    # A lost message is republished only once every retry had its chance.
    assert cfg["OUTBOX_REPUBLISH_AFTER"] > longest + cfg["MAIL_CLAIM_TIMEOUT"]


def test_retry_settings_come_from_the_environment() -> None:
    cfg = from_env({"MAIL_MAX_RETRIES": "3", "MAIL_RETRY_BACKOFF_MAX": "2",
                    "OUTBOX_REPUBLISH_AFTER": "60", "MAIL_CLAIM_TIMEOUT": "7"})
    assert (cfg["MAIL_MAX_RETRIES"], cfg["MAIL_RETRY_BACKOFF_MAX"]) == (3, 2)
    assert (cfg["OUTBOX_REPUBLISH_AFTER"], cfg["MAIL_CLAIM_TIMEOUT"]) == (60.0, 7.0)


def test_task_queues_are_quorum_with_delivery_limit_and_dead_letter() -> None:
    celery = from_env({"CELERY_DELIVERY_LIMIT": "4"})["CELERY"]
    queues = {q.name: q for q in celery["task_queues"]}
    assert set(queues) == {"mail", "images", "celery"}
    args = queues["mail"].queue_arguments
    assert args["x-queue-type"] == "quorum" and args["x-delivery-limit"] == 4
    assert args["x-dead-letter-exchange"] == "onboard.dlx"
    assert args["x-dead-letter-strategy"] == "at-least-once"
    assert args["x-overflow"] == "reject-publish"  # required by at-least-once
    assert queues["mail"].exchange.type == "topic"  # native delayed delivery
    assert celery["task_default_exchange_type"] == "topic"
    assert celery["task_acks_late"] and celery["task_reject_on_worker_lost"]


def test_every_mail_kind_has_its_templates_and_every_template_a_kind() -> None:
    from webapp.mail_kinds import KINDS

    folder = Path(__file__).resolve().parent.parent / "webapp" / "templates" / "email"
    on_disk = {p.stem for p in folder.glob("*.txt")} | {p.stem for p in folder.glob("*.html")}
    assert on_disk == set(KINDS)
    for kind in KINDS:
        assert (folder / f"{kind}.txt").is_file() and (folder / f"{kind}.html").is_file()
    assert all(callable(builder) for builder in KINDS.values())


def test_render_keeps_a_non_ascii_address_and_needs_smtputf8() -> None:
    from webapp import create_app
    from tests.unit_config import TEST_CONFIG
    from webapp.mail import render
    from webapp.models import OutboxMessage

    app = create_app(dict(TEST_CONFIG))
    with app.test_request_context():
        plain = render(OutboxMessage(id=7, kind="password_changed", to_address="ann@example.com",
                                     context={}))
        utf8 = render(OutboxMessage(id=8, kind="password_changed", to_address="jörg@example.com",
                                    context={}))
    assert not needs_smtputf8(plain)
    assert needs_smtputf8(utf8) and utf8["To"] == "jörg@example.com"
    assert utf8["Message-ID"] == "<outbox-8.password_changed@onboard.localhost>"
    assert {p.get_content_type() for p in utf8.walk()} >= {"text/plain", "text/html"}
    # The sender's display name alone never needs SMTPUTF8 (RFC 2047 covers it).
    plain.replace_header("From", "Onbörd <no-reply@onboard.localhost>")
    assert not needs_smtputf8(plain)
