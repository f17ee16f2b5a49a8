"""Fault tests: no mail is lost and (almost) none is sent twice.

Every test runs real parts: a private RabbitMQ node (stopped and started to make
outages), real ``celery worker`` and ``celery beat`` processes, an aiosmtpd SMTP
sink and SQLite or PostgreSQL. Each prints Jepsen-style counts (attempted,
answered, delivered, lost, duplicated; mails counted by Message-ID at the sink)
and asserts on them.

Knobs: ``FAULT_BROKER_OUTAGE`` (s, default 30), ``FAULT_SMTP_OUTAGE`` (s, default
20), ``FAULT_KILLS`` (default 5). The full 2-minute SMTP outage is ``slow``.
"""
from __future__ import annotations

import asyncio
import os
import signal
import sys
import statistics
import threading
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import new_email, register
from tests.harness.counts import Counts, elapsed, message_ids
from tests.harness.mail import SMTPSink
from tests.harness.rabbit import RabbitNode
from tests.harness.stack import Stack
from tests.harness.wait import wait_until
from webapp import outbox
from webapp.extensions import db
from webapp.mail import message_id_for
from webapp.models import OutboxMessage, User
from webapp.tasks.retry import retry_span

BROKER_OUTAGE = float(os.environ.get("FAULT_BROKER_OUTAGE", "30"))
SMTP_OUTAGE = float(os.environ.get("FAULT_SMTP_OUTAGE", "20"))
KILLS = int(os.environ.get("FAULT_KILLS", "5"))


def rows_for(stack: Stack, emails: list[str]) -> list[OutboxMessage]:
    """The outbox rows of these addresses, detached from the session."""
    with stack.app.app_context():
        rows = db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.to_address.in_(emails))
            .order_by(OutboxMessage.id)).all()
        db.session.expunge_all()
        return list(rows)


def expected_ids(stack: Stack, emails: list[str]) -> set[str]:
    with stack.app.app_context():
        return {message_id_for(row) for row in rows_for(stack, emails)}


def wait_delivered(stack: Stack, expected: set[str], timeout: float) -> None:
    """Wait until every expected Message-ID reached the sink (or time out)."""
    try:
        wait_until(lambda: expected <= set(message_ids(stack)), timeout, interval=0.25,
                   what=f"{len(expected)} mails")
    except TimeoutError:
        pass  # the counts below say what is missing


def signups(stack: Stack, n: int, prefix: str) -> tuple[list[str], list[float], int]:
    """``n`` sign-ups through the Flask test client; returns (emails, page
    seconds, pages answered 303)."""
    emails, times, answered = [], [], 0
    client = stack.client()
    for _ in range(n):
        email = new_email(prefix)
        emails.append(email)
        t = time.monotonic()
        resp = register(client, email)
        times.append(time.monotonic() - t)
        answered += resp.status_code == 303
    return emails, times, answered


def test_signups_survive_broker_outage(fault_stack: Any, rabbit: RabbitNode) -> None:
    """100 sign-ups while RabbitMQ is stopped: every page answers 303 quickly and
    every mail arrives once the broker is back (relay by a real celery beat)."""
    stack: Stack = fault_stack("sqlite")
    stack.start_beat()
    warm, _, _ = signups(stack, 1, "warm")  # the pipeline works before the outage
    stack.smtp.wait_for(warm[0], timeout=30)

    rabbit.outage_begin()
    down = time.monotonic()
    try:
        emails, times, answered = signups(stack, 100, "outage")
        with stack.app.app_context():
            unpublished = sum(r.published_at is None for r in rows_for(stack, emails))
        time.sleep(max(0.0, BROKER_OUTAGE - (time.monotonic() - down)))
    finally:
        rabbit.outage_end()
    back = time.monotonic()
    expected = expected_ids(stack, emails)
    wait_delivered(stack, expected, 120)

    counts = Counts("broker-outage", attempted=len(emails), answered=answered, extra={
        "outage_s": round(back - down, 1), "unpublished_during_outage": unpublished,
        "page_p50_s": round(statistics.median(times), 3), "page_max_s": round(max(times), 3),
        "all_mail_after_broker_back_s": elapsed(back)}).tally(message_ids(stack), expected)
    counts.report()
    assert len(expected) == 100 and answered == 100
    assert unpublished > 0, "the broker outage did not stop any publish"
    assert counts.lost == 0 and counts.delivered == 100
    assert counts.duplicated == 0
    # "Quickly": a dead broker costs at most one connection timeout (2 s here).
    assert max(times) < 5.0


def _slow_rcpt(delay: float):  # type: ignore[no-untyped-def]
    """An aiosmtpd RCPT hook that takes ``delay`` seconds, so SMTP sessions are in
    flight when a worker is killed (before DATA: a killed client sends no mail,
    as with a real MTA)."""

    async def handle_RCPT(server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        await asyncio.sleep(delay)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    return handle_RCPT


def test_worker_sigkill_loses_no_mail(fault_stack: Any) -> None:
    """200 mails flow while the worker is SIGKILLed (whole process group) again
    and again: all 200 delivered, duplicates counted (goal ≤ 1)."""
    stack: Stack = fault_stack("postgresql")
    # Sessions spend ~0.3 s before DATA, ~ms from DATA to the sent_at commit:
    # a kill mostly lands before DATA (no mail), rarely in the commit window.
    stack.smtp.handler.handle_RCPT = _slow_rcpt(0.3)  # type: ignore[attr-defined]
    result: dict[str, Any] = {}

    def produce() -> None:
        result["emails"], _, result["answered"] = signups(stack, 200, "kill")

    # The sink shares this process with the producer thread. A duplicate needs a
    # kill between the sink taking the DATA and the worker committing sent_at
    # (RFC 1047's window); the sink's "250" must not wait 5 ms GIL slices behind
    # the producer, as a real MTA in its own process would not.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    producer = threading.Thread(target=produce)
    producer.start()
    kills, worker = 0, stack.workers[0]
    start = time.monotonic()
    try:
        for _ in range(KILLS):
            time.sleep(1.5)
            stack.stop_worker(worker, signal.SIGKILL)
            kills += 1
            worker = stack.start_worker()
        producer.join()
    finally:
        sys.setswitchinterval(switch)
    emails = result["emails"]
    expected = expected_ids(stack, emails)
    wait_delivered(stack, expected, 120)
    rows = rows_for(stack, emails)
    counts = Counts("worker-sigkill", attempted=len(emails), answered=result["answered"], extra={
        "kills": kills,
        "takeovers_in_db": sum(r.takeovers for r in rows),
        "rows_taken_over": sum(r.takeovers > 0 for r in rows),
        "attempts_in_db": sum(r.attempts for r in rows),
        "seconds": elapsed(start)}).tally(message_ids(stack), expected)
    counts.report()
    assert len(expected) == 200 and counts.answered == 200
    assert counts.lost == 0 and counts.delivered == 200
    assert all(r.sent_at is not None for r in rows)
    assert counts.duplicated <= 1
    # Every duplicate at the sink was detected (a takeover counted on its row).
    seen = Counter(message_ids(stack))
    with stack.app.app_context():
        undetected = [r.id for r in rows if seen[message_id_for(r)] > 1 and r.takeovers == 0]
    assert undetected == []


def _smtp_outage(stack: Stack, outage: float, n: int, env_note: dict[str, Any]) -> None:
    port = stack.smtp.port
    handler = stack.smtp.handler
    stack.smtp.stop()
    down = time.monotonic()
    emails, times, answered = signups(stack, n, "smtpdown")
    time.sleep(max(0.0, outage - (time.monotonic() - down)))
    # Back on the same port with the same handler (what it received is kept).
    sink = SMTPSink(port)
    sink.handler = handler
    sink.controller.handler = handler
    stack.smtp = sink.start()
    back = time.monotonic()
    expected = expected_ids(stack, emails)
    wait_delivered(stack, expected, 60 + outage)
    rows = rows_for(stack, emails)
    counts = Counts("smtp-outage", attempted=n, answered=answered, extra={
        "outage_s": round(back - down, 1), **env_note,
        "smtp_attempts_in_db": sum(r.attempts for r in rows),
        "all_mail_after_smtp_back_s": elapsed(back)}).tally(message_ids(stack), expected)
    counts.report()
    assert answered == n
    assert counts.lost == 0 and counts.delivered == n and counts.duplicated == 0
    assert all(r.sent_at is not None and r.failed_at is None for r in rows)
    assert all(r.attempts > 1 for r in rows), "the outage did not make any send retry"


def test_smtp_outage_all_delivered(fault_stack: Any) -> None:
    """SMTP down for FAULT_SMTP_OUTAGE seconds (20): every mail retried until
    delivered, none failed, none twice."""
    env = {"MAIL_RETRY_BACKOFF_MAX": "2", "MAIL_MAX_RETRIES": "60"}
    assert retry_span(60, 2)[0] > SMTP_OUTAGE  # the retries outlast the outage
    stack: Stack = fault_stack("sqlite", env=env)
    _smtp_outage(stack, SMTP_OUTAGE, 20, {"backoff_max_s": 2})


@pytest.mark.slow
def test_smtp_outage_two_minutes(fault_stack: Any) -> None:
    """The full scenario: SMTP down for 2 minutes, then back: all delivered."""
    env = {"MAIL_RETRY_BACKOFF_MAX": "10", "MAIL_MAX_RETRIES": "40"}
    assert retry_span(40, 10)[0] > 120
    stack: Stack = fault_stack("postgresql", env=env)
    _smtp_outage(stack, 120.0, 50, {"backoff_max_s": 10})


def test_smtp_550_fails_once_and_is_listed(fault_stack: Any) -> None:
    """SMTP answers 550: the row fails after one attempt, is not retried, shows
    in ``flask mail-failures``; ``--retry ID`` sends it once SMTP accepts."""
    stack: Stack = fault_stack("sqlite")
    stack.smtp.handler.mode = "reject"
    emails, _, answered = signups(stack, 1, "reject")

    def failed() -> OutboxMessage | None:
        [row] = rows_for(stack, emails)
        return row if row.failed_at is not None else None

    row = wait_until(failed, 30, interval=0.2, what="row marked failed")
    time.sleep(3)  # a retry (backoff ≤ 2 s here) would have come by now
    [row] = rows_for(stack, emails)
    refused = stack.smtp.handler.refused
    runner = stack.app.test_cli_runner()
    listing = runner.invoke(args=["mail-failures"])
    assert refused == 1 and row.attempts == 1 and row.sent_at is None
    assert "550" in (row.last_error or "")
    assert listing.exit_code == 0 and str(row.id) in listing.output and "550" in listing.output

    # The operator fixes the cause and re-queues the mail.
    stack.smtp.handler.mode = "ok"
    retried = runner.invoke(args=["mail-failures", "--retry", str(row.id)])
    assert retried.exit_code == 0, retried.output
    stack.smtp.wait_for(emails[0], timeout=30)
    again = runner.invoke(args=["mail-failures", "--retry", str(row.id)])
    counts = Counts("smtp-550", attempted=1, answered=answered, extra={
        "smtp_refused": refused, "attempts_before_operator_retry": row.attempts,
        "failed_recorded": 1, "delivered_after_operator_retry": len(stack.smtp.to(emails[0]))})
    counts.tally(message_ids(stack), expected_ids(stack, emails)).report()
    assert counts.lost == 0 and counts.duplicated == 0
    assert again.exit_code != 0  # no longer failed


def test_rolled_back_outbox_row_sends_nothing(fault_stack: Any) -> None:
    """A transaction that wrote a user and its outbox row, then rolled back,
    never produces a mail, even with the relay running."""
    stack: Stack = fault_stack("postgresql")
    stack.start_beat()
    doomed = new_email("rollback")
    with stack.app.app_context():
        user = User(email=doomed, password_hash="x")
        db.session.add(user)
        db.session.flush()
        row = outbox.add("verify", doomed, user_id=user.id)
        db.session.flush()
        doomed_id = row.id
        db.session.rollback()
        assert outbox.relay_unpublished(0.0) == 0
    # A later sign-up's mail arriving shows the relay and worker ran meanwhile.
    sentinel, _, _ = signups(stack, 1, "sentinel")
    stack.smtp.wait_for(sentinel[0], timeout=30)
    time.sleep(2.5)  # two more relay ticks (OUTBOX_RELAY_INTERVAL=1)
    with stack.app.app_context():
        assert db.session.get(OutboxMessage, doomed_id) is None
    counts = Counts("rolled-back", attempted=1, answered=0, extra={
        "rolled_back": 1, "mails_to_rolled_back_address": len(stack.smtp.to(doomed))})
    counts.report()
    assert stack.smtp.to(doomed) == []
    assert not any(f"<outbox-{doomed_id}." in mid for mid in message_ids(stack)
                   if mid not in expected_ids(stack, sentinel))
