"""Abuse protection: per-IP rate limits (Flask-Limiter) and a per-account mail
throttle counted on the outbox.

Limits are declared on the views with :func:`limit`, which reads the limit string
from the app config at request time (``RATELIMIT_SIGNUP`` …), so each deployment
and each test app can choose its own. Storage is ``RATELIMIT_STORAGE_URI``:
``memory://`` in development, Redis (``redis://host:6379/0``) in production so
that every gunicorn worker and host shares one count. A breach raises
``RateLimitExceeded`` (a 429), answered by :mod:`webapp.errors` with a page or
JSON and a ``Retry-After`` header.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from flask import current_app, has_app_context
from flask_login import current_user
from sqlalchemy import select

from webapp.extensions import db, limiter
from webapp.models import OutboxMessage, User, utcnow

F = TypeVar("F", bound=Callable[..., Any])


def limit(config_key: str, *, key_func: Callable[[], str] | None = None,
          scope: str | None = None) -> Callable[[F], F]:
    """Rate-limit a view's POSTs with the limit string in ``app.config[config_key]``
    (limits' syntax, e.g. ``"5 per minute;30 per hour"``).

    Args:
        config_key: the config key holding the limit string, read per request.
        key_func: who is counted; the client IP when None, :func:`per_user` for
            the logged-in account.
        scope: a name shared by several views that must share one count (e.g.
            every route that accepts a file); each view counts on its own when None.

    GETs (showing the form) are not counted: only attempts are.
    """
    value = lambda: current_app.config[config_key]  # noqa: E731
    if scope is not None:
        return limiter.shared_limit(value, scope, key_func=key_func, methods=["POST"])
    return limiter.limit(value, key_func=key_func, methods=["POST"])


def per_user() -> str:
    """Rate-limit key of the logged-in account (``"user:<id>"``), so one account
    cannot flood the workers from many addresses. Use it on ``login_required`` views."""
    return f"user:{current_user.id}"


@limiter.request_filter
def _limits_off_for_this_app() -> bool:
    """Exempt requests of an app whose ``RATELIMIT_ENABLED`` is false.

    Flask-Limiter keeps its on/off switch on the (single, module-level) limiter
    object, so the last app built would decide for every app in the process; this
    filter makes the switch per app again (tests build several apps).
    """
    return has_app_context() and not current_app.config["RATELIMIT_ENABLED"]


def lock_account_mail(user_id: int) -> None:
    """Hold the account's mail-throttle lock until the caller's transaction ends.

    Checking the throttle and inserting the outbox row must be one step, or
    concurrent requests all see "no mail yet" and all insert. PostgreSQL locks
    the user row (``SELECT … FOR UPDATE``); SQLite has no row locks, so the
    transaction takes the database's write lock up front (``BEGIN IMMEDIATE``;
    WAL and ``busy_timeout`` make the others wait, not fail). If the SQLite
    transaction has written already it holds that lock anyway.

    Args:
        user_id: the account (``users.id``).
    """
    conn = db.session.connection()
    if conn.dialect.name == "sqlite":
        if not conn.connection.driver_connection.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        return
    db.session.execute(select(User.id).where(User.id == user_id).with_for_update())


def mail_throttled(kind: str, user_id: int, *, only: Callable[[OutboxMessage], bool] | None = None) -> bool:
    """Whether one more mail of ``kind`` to this account would exceed the throttle.

    The rule: at most one mail of a kind per ``MAIL_THROTTLE_INTERVAL`` seconds
    (default 60) and ``MAIL_THROTTLE_PER_DAY`` (default 5) per 24 hours, counted
    on the outbox rows of that kind for that user (so it holds across processes
    and hosts without another store). Callers skip the mail silently and answer
    as if it was sent, so the throttle reveals nothing about the account (OWASP
    Forgot Password Cheat Sheet: same response, protect against mail flooding).

    Atomic: it first takes :func:`lock_account_mail`, so the caller must add its
    outbox row and commit (or roll back) in the same transaction; concurrent
    callers for one account wait for that commit and then count the new row.

    Args:
        kind: the outbox mail kind, e.g. ``"password_reset"``.
        user_id: the account.
        only: optional filter on the rows that count (e.g. only resends, not the
            sign-up mail itself).

    Returns:
        ``True`` when the mail must not be sent now (the caller rolls back).
    """
    lock_account_mail(user_id)
    cfg = current_app.config
    now = utcnow()
    rows = db.session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.kind == kind, OutboxMessage.user_id == user_id,
               OutboxMessage.created_at >= now - timedelta(days=1))
        .order_by(OutboxMessage.created_at.desc())
        .limit(cfg["MAIL_THROTTLE_PER_DAY"] + 5)
    ).all()
    if only is not None:
        rows = [r for r in rows if only(r)]
    if len(rows) >= cfg["MAIL_THROTTLE_PER_DAY"]:
        return True
    interval = timedelta(seconds=cfg["MAIL_THROTTLE_INTERVAL"])
    return any(r.created_at > now - interval for r in rows)
