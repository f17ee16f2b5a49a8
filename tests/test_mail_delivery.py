"""Mail delivery outcomes through a real worker, a real SMTP server and the database.

A non-ASCII local part (``jörg@example.com``) travels with SMTPUTF8 (RFC 6531)
when the server offers it, and fails at once with a clear reason when it does
not; either way the row ends sent or failed, never claimed. A permanent refusal
(550) is logged by the worker in one line, without a traceback.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from email.header import decode_header
from email.message import Message
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import confirm_link, link_from, register
from tests.harness.mail import SinkHandler, text_body
from tests.harness.stack import Stack
from tests.harness.wait import free_port, wait_until
from webapp.extensions import db
from webapp.models import OutboxMessage, User

TASK_ID = re.compile(r"send_mail\(([0-9a-f-]{36})\)")
RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def utf8_email(prefix: str = "jörg") -> str:
    """A fresh address whose local part is not ASCII."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"


def row_for(stack: Stack, email: str, timeout: float = 30) -> OutboxMessage:
    """The verification outbox row of ``email`` once it is sent or failed."""

    def settled() -> OutboxMessage | None:
        with stack.app.app_context():
            user = db.session.execute(db.select(User).filter_by(email=email)).scalar_one()
            row = db.session.execute(
                db.select(OutboxMessage).filter_by(user_id=user.id)).scalar_one()
            db.session.expunge(row)
            return row if row.sent_at or row.failed_at else None

    return wait_until(settled, timeout, what=f"outbox row of {email} sent or failed")


def header(msg: Message, name: str) -> str:
    """A header of a message parsed by the sink, its raw UTF-8 (SMTPUTF8) decoded."""
    return "".join(part.decode("utf-8") if isinstance(part, bytes) else part
                   for part, _charset in decode_header(msg.get(name) or ""))


class NoUTF8Sink:
    """A real SMTP server that does not offer SMTPUTF8 (aiosmtpd ``enable_SMTPUTF8=False``)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.handler = SinkHandler()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     enable_SMTPUTF8=False)


@pytest.fixture(scope="module")
def plain_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, NoUTF8Sink, Path]]:
    """A SQLite stack of its own whose one worker sends to a sink without SMTPUTF8;
    yields the stack, the sink and the worker's log file (read by the log test)."""
    sink = NoUTF8Sink()
    sink.controller.start()
    s = Stack("sqlite", tmp_path_factory.mktemp("plain")).start(worker=False)
    s.start_worker(concurrency=1, extra_env={"MAIL_PORT": str(sink.port)})
    try:
        yield s, sink, s.tmp / "worker0.log"
    finally:
        s.stop()
        sink.controller.stop()


def test_non_ascii_address_is_sent_with_smtputf8_and_verifies(stack: Stack) -> None:
    email = utf8_email()
    client = stack.client()
    assert register(client, email).status_code == 303
    row = row_for(stack, email)
    assert row.failed_at is None and row.sent_at is not None, row.last_error
    msg = next(m for m in stack.smtp.messages if m.get("Message-ID") == row.message_id)
    assert header(msg, "To") == email
    assert confirm_link(client, link_from(text_body(msg))).status_code == 200
    with stack.app.app_context():
        user = db.session.execute(db.select(User).filter_by(email=email)).scalar_one()
        assert user.is_verified


def test_non_ascii_address_fails_clearly_without_smtputf8(plain_stack) -> None:  # type: ignore[no-untyped-def]
    stack, sink, _log = plain_stack
    email = utf8_email()
    assert register(stack.client(), email).status_code == 303
    row = row_for(stack, email)
    assert row.sent_at is None and row.failed_at is not None and row.claimed_at is None
    assert row.attempts == 1
    assert "SMTPUTF8" in row.last_error and email in row.last_error
    assert sink.handler.messages == []
    # The same server still takes an ASCII address.
    ascii_email = f"ann-{uuid.uuid4().hex[:8]}@example.com"
    assert register(stack.client(), ascii_email).status_code == 303
    assert row_for(stack, ascii_email).sent_at is not None


def test_permanent_refusal_is_logged_once_without_traceback(plain_stack) -> None:  # type: ignore[no-untyped-def]
    stack, sink, log = plain_stack
    start = log.stat().st_size
    sink.handler.mode = "reject"
    try:
        email = f"bounce-{uuid.uuid4().hex[:8]}@example.com"
        assert register(stack.client(), email).status_code == 303
        row = row_for(stack, email)
    finally:
        sink.handler.mode = "ok"
    assert row.failed_at is not None and "550" in (row.last_error or "")

    def task_finished() -> list[str] | None:
        lines = log.read_bytes()[start:].decode().splitlines()
        mine = [ln for ln in lines if f"outbox={row.id} " in ln]
        task = TASK_ID.search(mine[0]) if mine else None
        if task is None:
            return None
        ends = [ln for ln in lines if task.group(1) in ln and (" succeeded in " in ln or " raised " in ln)]
        return lines if ends else None

    lines = wait_until(task_finished, 30, what="the task's end in the worker log")
    text = "\n".join(lines)
    task_id = TASK_ID.search(next(ln for ln in lines if f"outbox={row.id} " in ln)).group(1)
    assert "Traceback" not in text, text
    # Every record is one line: a traceback would add lines without a timestamp.
    assert all(RECORD_START.match(ln) for ln in lines if ln.strip()), text
    ours = [ln for ln in lines if task_id in ln]
    # "received", the failure, "succeeded": nothing else for one refused mail.
    assert len(ours) == 3 and sum("failed permanently" in ln for ln in ours) == 1, text


def test_mail_that_cannot_be_built_fails_with_its_reason(plain_stack) -> None:  # type: ignore[no-untyped-def]
    stack, _sink, _log = plain_stack
    from webapp.tasks.mail import send_mail

    with stack.app.app_context():
        row = OutboxMessage(kind="retired_kind", to_address="ann@example.com", context={})
        db.session.add(row)
        db.session.commit()
        row_id = row.id
        send_mail.delay(row_id)

    def settled() -> OutboxMessage | None:
        with stack.app.app_context():
            found = db.session.get(OutboxMessage, row_id)
            return found if found.failed_at or found.sent_at else None

    failed = wait_until(settled, 30, what="the row of an unknown kind failed")
    assert failed.sent_at is None and failed.claimed_at is None
    assert failed.last_error == "could not build the mail: KeyError: 'retired_kind'"
