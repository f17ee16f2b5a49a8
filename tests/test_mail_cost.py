"""What a mail and a sign-up cost in round trips, through real parts.

* A worker process keeps one SMTP session and sends mail after mail over it
  (RSET between), reopens it when the server dropped it, and closes it (QUIT)
  when it stays idle: an SMTP sink of its own counts sessions and commands.
* A sent mail costs three SQL statements (claim with ``UPDATE … RETURNING``,
  the suppression-list lookup, record with ``UPDATE``), and a sign-up one
  commit; counted with SQLAlchemy engine events on SQLite and PostgreSQL.
* A row written marked published whose publisher died before publishing is
  republished by the relay after ``OUTBOX_UNCLAIMED_AFTER`` seconds.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import event, select, update

from tests.conftest import new_email, register
from tests.harness.mail import SinkHandler
from tests.harness.stack import Stack
from tests.harness.wait import free_port, wait_until
from webapp import outbox
from webapp.extensions import db
from webapp.models import OutboxMessage, utcnow


class CountingHandler(SinkHandler):
    """The test sink, counting SMTP sessions (by the connection that sent DATA),
    RSETs and QUITs."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: set[int] = set()
        self.rsets = 0
        self.quits = 0

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.sessions.add(id(session))
        return await super().handle_DATA(server, session, envelope)

    async def handle_RSET(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.rsets += 1
        return "250 OK"

    async def handle_QUIT(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.quits += 1
        return "221 Bye"


class CountingSink:
    """A real aiosmtpd server with :class:`CountingHandler`; ``restart`` drops
    every open session (as a server restart or its idle time-out would)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.handler = CountingHandler()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def restart(self) -> None:
        self.controller.stop()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def wait_for(self, address: str, timeout: float = 30) -> None:
        wait_until(lambda: any(address in str(m.get("To") or "") for m in self.handler.messages),
                   timeout, what=f"mail to {address}")


IDLE = 2.0  # MAIL_CONNECTION_IDLE of the worker below, seconds


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, CountingSink]]:
    """A SQLite stack whose one worker (prefork, one child) sends to a counting sink."""
    sink = CountingSink()
    sink.controller.start()
    s = Stack("sqlite", tmp_path_factory.mktemp("counted")).start(worker=False)
    s.start_worker(concurrency=1, extra_env={"MAIL_PORT": str(sink.port),
                                              "MAIL_CONNECTION_IDLE": str(IDLE)})
    try:
        yield s, sink
    finally:
        s.stop()
        sink.controller.stop()


def _sign_up(stack: Stack, n: int, prefix: str) -> list[str]:
    client = stack.client()
    emails = [new_email(prefix) for _ in range(n)]
    for email in emails:
        assert register(client, email).status_code == 303
    return emails


def test_worker_sends_mails_over_one_session(counted: tuple[Stack, CountingSink]) -> None:
    """Five sign-ups in a row: five mails, one SMTP session, RSET before each reuse."""
    stack, sink = counted
    h = sink.handler
    sessions, rsets, sent = len(h.sessions), h.rsets, len(h.messages)
    for email in _sign_up(stack, 5, "kept"):
        sink.wait_for(email)
    assert len(h.messages) - sent == 5
    assert len(h.sessions) - sessions <= 1, "a new SMTP session per mail"
    assert h.rsets - rsets >= 4


def test_session_dropped_by_the_server_is_reopened(counted: tuple[Stack, CountingSink]) -> None:
    """The server drops the kept session between two mails: the next mail goes
    out at its first attempt over a new session (RSET found the session dead
    before anything of the mail was sent)."""
    stack, sink = counted
    first = _sign_up(stack, 1, "before-drop")[0]
    sink.wait_for(first)
    sink.restart()
    second = _sign_up(stack, 1, "after-drop")[0]
    sink.wait_for(second)
    with stack.app.app_context():
        row = db.session.scalar(select(OutboxMessage).where(OutboxMessage.to_address == second))
        assert row.sent_at is not None and row.attempts == 1 and row.last_error is None
        db.session.rollback()


def test_idle_session_is_closed(counted: tuple[Stack, CountingSink]) -> None:
    """A session unused for MAIL_CONNECTION_IDLE seconds is closed with QUIT."""
    stack, sink = counted
    quits = sink.handler.quits
    sink.wait_for(_sign_up(stack, 1, "idle")[0])
    wait_until(lambda: sink.handler.quits > quits, IDLE * 4 + 5, interval=0.2,
               what="QUIT of the idle session")


@contextmanager
def counting(stack: Stack) -> Iterator[dict[str, list[str]]]:
    """Statements and commits on the app's engine while the block runs."""
    seen: dict[str, list[str]] = {"statements": [], "commits": []}

    def on_statement(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen["statements"].append(statement.split(None, 1)[0].upper())

    def on_commit(_conn: Any) -> None:
        seen["commits"].append("COMMIT")

    with stack.app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(engine, "commit", on_commit)


def test_a_sent_mail_costs_three_statements(stack: Stack) -> None:
    """``deliver`` of a fresh row: claim-and-load in one UPDATE … RETURNING,
    the suppression-list lookup, sent recorded in one UPDATE, two commits; no
    read of the outbox row."""
    from webapp.mail import deliver

    with stack.app.app_context():
        row = outbox.add("verify", new_email("cost"))
        db.session.commit()
        row_id = row.id
        with counting(stack) as seen:
            assert deliver(row_id) == "sent"
        db.session.rollback()
    assert seen["statements"] == ["UPDATE", "SELECT", "UPDATE"], seen
    assert len(seen["commits"]) == 2


def test_signup_commits_once(stack: Stack) -> None:
    """POST /register writes the user and its outbox row, marked published, in
    one transaction; the publish after it writes nothing."""
    client = stack.client()
    email = new_email("onecommit")
    with counting(stack) as seen:
        assert register(client, email).status_code == 303
    assert len(seen["commits"]) == 1, seen
    assert "SELECT" not in seen["statements"], seen
    with stack.app.app_context():
        row = db.session.scalar(select(OutboxMessage).where(OutboxMessage.to_address == email))
        assert row.published_at is not None and row.publish_count == 1
        db.session.rollback()


def test_relay_republishes_a_premarked_row_never_published(stack: Stack) -> None:
    """A row written marked published whose publisher died before publishing:
    no worker ever tried it, so after OUTBOX_UNCLAIMED_AFTER the relay publishes
    it and the worker sends it."""
    from webapp.outbox import relay_unpublished

    email = new_email("died")
    with stack.app.app_context():
        row = outbox.add("verify", email, will_publish=True)
        db.session.commit()
        row_id = row.id

        def publishes() -> int:
            # Other tests share this database: look at this row only.
            count = db.session.get(OutboxMessage, row_id, populate_existing=True).publish_count
            db.session.rollback()
            return count

        relay_unpublished(3600)
        assert publishes() == 1  # fresh: left alone (the pre-mark counts one publish)
        past = utcnow() - timedelta(seconds=stack.app.config["OUTBOX_UNCLAIMED_AFTER"] + 1)
        db.session.execute(update(OutboxMessage).where(OutboxMessage.id == row_id)
                           .values(published_at=past, created_at=past))
        db.session.commit()
        assert relay_unpublished(3600) >= 1
        assert publishes() == 2
    stack.smtp.wait_for(email)
    with stack.app.app_context():
        row = db.session.get(OutboxMessage, row_id)
        assert row.publish_count == 2 and row.sent_at is not None
        db.session.rollback()
