"""Mails asked for by address (password reset, new verification link), decided
on a worker so the page costs the same whether or not the address has an account.

Why: when the web looked the account up and wrote the outbox row itself, a
known address took 13-34 ms (INSERT + broker publish) and an unknown one 5-9 ms,
which tells an attacker which addresses have accounts (OWASP Forgot Password
Cheat Sheet: "ensure that the time taken for the user response message is
uniform"). Now the page does the same thing for every well-formed address: it
publishes one task carrying the normalised address and a random request id
(:func:`submit`), with no SQL at all. The worker (:mod:`webapp.tasks.account`)
looks the account up and, when it exists and the throttle allows, writes the
outbox row and publishes its send (:func:`queue_for_account`); the mail itself
then goes through the outbox as every other mail does (never lost once the row
is committed). ``bench/enumeration_timing.py`` measures both cases.

Design choice against "one outbox-style row per request, resolved by the
worker": that would insert a row even for unknown addresses (a table any
anonymous visitor can grow) and need its own relay. Here, when the broker cannot
take the task (down, or publishing paused after a failure), :func:`submit` does
the work in the request instead: the outbox row is committed and the relay sends
it later, so no request is lost. Only during such an outage can the answer time
differ between known and unknown addresses, and then the failed publish (up to
``OUTBOX_PUBLISH_TIMEOUT`` s) dominates it.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from celery import Task

from webapp import outbox, publisher
from webapp.auth import codes, tokens
from webapp.extensions import db
from webapp.models import OutboxMessage, User
from webapp.ratelimit import mail_throttled

log = logging.getLogger(__name__)

#: ``used_tokens.purpose`` of handled requests (their ids are the ``jti``).
PURPOSE = "mail_request"

Handler = Callable[[str, str], str]


def submit(task: Task, email: str, handle: Handler) -> bool:
    """Ask a worker to mail ``email`` if it has an account; same cost for any address.

    Args:
        task: the task to publish, e.g. :func:`webapp.tasks.account.password_reset`;
            it is called with ``(email, request_id)``, through
            :func:`webapp.publisher.publish_message` (its helper thread,
            ``OUTBOX_PUBLISH_TIMEOUT`` and pause after a broker failure), so a
            dead or blocked broker costs this page what it costs a sign-up.
        email: the normalised address (``forms.normalize_email``).
        handle: the service the task runs, ``handle(email, request_id) -> str``;
            called here instead when the broker cannot take the task.

    Returns:
        ``True`` when the task was published (confirmed by the broker),
        ``False`` when the request was handled here.
    """
    request_id = uuid.uuid4().hex
    if publisher.publish_message(task, [email, request_id], what=task.name):
        return True
    handle(email, request_id)
    return False


def queue_for_account(kind: str, email: str, request_id: str, *,
                      wanted: Callable[[User], bool] = lambda _user: True,
                      context: dict[str, Any] | None = None,
                      only: Callable[[OutboxMessage], bool] | None = None,
                      issue_code: int | None = None) -> str:
    """Write and publish the outbox row a request asks for, if it should be sent.

    Runs on the worker (or in the web when the broker was down). In one
    transaction: the account is looked up, the per-account throttle is checked
    under its lock (:func:`webapp.ratelimit.mail_throttled`), the request id is
    recorded in ``used_tokens`` and the row is added; then the send is published
    (:func:`webapp.outbox.publish`; if that fails the relay publishes it).

    Idempotent: a request id is handled at most once (the ``used_tokens``
    primary key), so a task redelivered after a crash, or published twice, adds
    no second mail.

    Args:
        kind: the outbox mail kind (``"password_reset"``, ``"verify"``).
        email: normalised address.
        request_id: the id :func:`submit` drew (32 hex characters).
        wanted: whether this account should get the mail (e.g. not verified yet).
        context: the outbox row's context.
        only: which earlier rows the throttle counts (see ``mail_throttled``).
        issue_code: when set, the account gets a new 6-digit code of purpose
            ``kind`` valid this many seconds (:func:`webapp.auth.codes.issue`),
            in the same transaction as the row; the mail carries it.

    Returns:
        ``"queued"``, ``"no-account"``, ``"not-wanted"``, ``"throttled"`` or
        ``"duplicate"``.
    """
    from webapp.auth.services import find_user

    user = find_user(email)
    if user is None or not wanted(user):
        db.session.rollback()
        return "no-account" if user is None else "not-wanted"
    if mail_throttled(kind, user.id, only=only):
        db.session.rollback()
        return "throttled"
    try:
        tokens.mark_used(PURPOSE, f"{PURPOSE}-{request_id}")
    except tokens.TokenError:
        db.session.rollback()
        return "duplicate"
    if issue_code is not None:
        codes.issue(user.id, kind, issue_code)
    row = outbox.add(kind, user.email, user_id=user.id, context=context)
    db.session.commit()
    outbox.publish([row.id])
    return "queued"
