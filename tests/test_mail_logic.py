"""Pure logic of mail delivery: SMTP error classes and the retry schedule."""
from __future__ import annotations

import smtplib
import socket

import pytest

from webapp.config import from_env
from webapp.mail import (PermanentMailError, TransientMailError, classify_smtp_error,
                         retry_countdown, retry_span)


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
])
def test_classify_smtp_error(exc: BaseException, expected: type) -> None:
    assert classify_smtp_error(exc) is expected


def test_countdown_grows_then_caps_with_equal_jitter() -> None:
    low = [retry_countdown(n, 300, rand=lambda: 0.0) for n in range(12)]
    high = [retry_countdown(n, 300, rand=lambda: 0.999999) for n in range(12)]
    assert low[:4] == [0.5, 1.0, 2.0, 4.0]
    assert low[-1] == 150.0  # half the cap is always waited
    assert high[3] == pytest.approx(8.0) and high[-1] == pytest.approx(300.0)
    assert all(a <= b for a, b in zip(low, low[1:]))


def test_retry_span_bounds() -> None:
    # 1+2+...+256 = 511, then 7 waits at the cap of 300 s.
    assert retry_span(16, 300) == (1305.5, 2611.0)
    assert retry_span(0, 300) == (0.0, 0.0)
    assert retry_span(5, 2) == (4.5, 9.0)  # 1+2+2+2+2


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
