"""Helpers shared by the account-lifecycle tests (no fixtures here)."""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, select

from tests.harness.fastapp import app_scope
from tests.harness.forms import (PASSWORD, confirm_link, csrf_from, link_from,  # noqa: F401
                                 new_email, post_form, register)
from tests.harness.mail import text_body
from tests.harness.stack import Stack
from webapp import config as config_module
from webapp import create_app
from webapp.extensions import db
from webapp.models import OutboxMessage, User


def verified_user(stack: Stack, prefix: str = "acct", client: Any = None) -> str:
    """Register a new address, follow the mailed link, return the address."""
    client = client or stack.client()
    email = new_email(prefix)
    assert register(client, email).status_code == 303
    [msg] = stack.smtp.wait_for(email)
    assert confirm_link(client, link_from(text_body(msg))).status_code == 200
    return email


def mail_with_subject(stack: Stack, address: str, subject: str, count: int = 1,
                      timeout: float = 30.0) -> list[Any]:
    """Wait for ``count`` mails to ``address`` with ``subject``; returns them."""
    from tests.harness.wait import wait_until

    return wait_until(lambda: (m := [x for x in stack.smtp.to(address) if x["Subject"] == subject])
                      and len(m) >= count and m, timeout, what=f"{count}× {subject!r} to {address}")


def code_from(msg: Any) -> str:
    m = re.search(r"^\s+(\d{6})\s*$", text_body(msg), re.M)
    assert m, "no code in mail"
    return m.group(1)


def outbox_count(stack: Stack, kind: str, address: str | None = None,
                 user_email: str | None = None) -> int:
    with stack.app.app_context():
        q = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == kind)
        if address:
            q = q.where(OutboxMessage.to_address == address)
        if user_email:
            uid = db.session.scalar(select(User.id).where(User.email == user_email))
            q = q.where(OutboxMessage.user_id == uid)
        return db.session.scalar(q)


def get_user(stack: Stack, **where: Any) -> User | None:
    with stack.app.app_context():
        user = db.session.scalar(select(User).filter_by(**where))
        if user is not None:
            db.session.expunge(user)
        return user


@contextmanager
def own_app(stack: Stack, **overrides: Any) -> Iterator[Any]:
    """A second Flask app on ``stack``'s database, broker and SMTP sink, with
    ``overrides`` (e.g. rate limits or the captcha on).

    Flask-Limiter's module-level state and Celery's default app are restored
    afterwards (:func:`tests.harness.fastapp.app_scope`) so the shared stacks'
    apps are as before.
    """
    with app_scope():
        app = create_app({**config_module.from_env(stack.env), "TESTING": True, **overrides})
        try:
            yield app
        finally:
            with app.app_context():
                db.engine.dispose()


def wait_idle(stack: Stack, timeout: float = 30.0) -> None:
    """Wait until the stack's workers have run every task published so far: the
    ``mail`` queue has no ready message and no worker has one active or reserved,
    seen twice in a row (a task may publish another, e.g. the send of its row)."""
    from kombu import Connection

    from tests.harness.wait import wait_until

    def idle() -> bool:
        with Connection(stack.broker_url) as conn:
            ready = conn.default_channel.queue_declare(queue="mail", passive=True).message_count
        if ready:
            return False
        inspect = stack.celery.control.inspect(timeout=1.0)
        busy = [t for tasks in (inspect.active() or {}).values() for t in tasks]
        busy += [t for tasks in (inspect.reserved() or {}).values() for t in tasks]
        return not busy

    wait_until(lambda: idle() and idle(), timeout, interval=0.2, what="workers idle")


def age_mails(stack: Stack, kind: str, address: str, seconds: float) -> None:
    """Move the outbox rows of ``kind`` to ``address`` ``seconds`` into the past
    (so the per-account throttle, which runs on the worker, lets the next one go)."""
    from datetime import timedelta

    from sqlalchemy import update

    from webapp.models import utcnow

    with stack.app.app_context():
        db.session.execute(update(OutboxMessage)
                           .where(OutboxMessage.kind == kind, OutboxMessage.to_address == address)
                           .values(created_at=utcnow() - timedelta(seconds=seconds)))
        db.session.commit()
