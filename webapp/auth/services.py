"""Account services: the rules of sign-up, verification and log-in.

Views stay thin: they validate forms and call these. Every function that writes
commits its own transaction, then publishes mail tasks (after the commit, never
before: a rolled-back row must not be mailed).
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from webapp import outbox
from webapp.auth import mail_requests, tokens
from webapp.auth.passwords import hash_password, needs_rehash, verify_password
from webapp.extensions import db
from webapp.mail import Rendered
from webapp.models import OutboxMessage, User, utcnow
from webapp.urls import external_url

VERIFY = "verify"


class EmailTaken(Exception):
    """An account with this address exists already."""


def find_user(email: str) -> User | None:
    """The user with this normalised address, or ``None``."""
    return db.session.scalar(select(User).where(User.email == email))


def register_user(email: str, password: str) -> User:
    """Create an unverified account and queue its verification mail.

    The user row and the outbox row commit in one transaction, the outbox row
    already marked published; the mail task is published after the commit
    (see :mod:`webapp.outbox`, ``will_publish``). The unique index on
    ``users.email`` decides whether the address is taken: no read comes first,
    so a taken address costs the same argon2id hash as a new one (its answer
    time says nothing more than its text). Database round trips: two
    ``INSERT … RETURNING`` and the commit.

    Args:
        email: normalised address (see ``forms.normalize_email``).
        password: the plain password, already length-checked.

    Returns:
        The new :class:`User` (expired by the commit: reading an attribute
        reloads it).

    Raises:
        EmailTaken: the address is registered already; nothing is written.
    """
    user = User(email=email, password_hash=hash_password(password))
    db.session.add(user)
    try:
        db.session.flush()
        row = outbox.add(VERIFY, email, user_id=user.id, will_publish=True)
        db.session.flush()
        row_id = row.id  # read before the commit expires the row (a reload is a round trip)
        db.session.commit()
    except IntegrityError as exc:  # the address is taken (also by a concurrent sign-up)
        db.session.rollback()
        raise EmailTaken(email) from exc
    outbox.publish([row_id], premarked=True)
    return user


def resend_verification(email: str) -> None:
    """Ask for a new verification mail to ``email``; the web side of a resend.

    Publishes :func:`webapp.tasks.account.resend_verification` for any address,
    known or not, and runs no SQL, so the answer time tells nothing (see
    :mod:`webapp.auth.mail_requests`); the worker runs :func:`send_verification_again`.

    Args:
        email: normalised address.
    """
    from webapp.tasks import account as tasks  # it imports this module

    mail_requests.submit(tasks.resend_verification, email, send_verification_again)


def send_verification_again(email: str, request_id: str) -> str:
    """Queue a new verification mail if ``email`` names an unverified account.

    Does nothing otherwise, nor when the per-account throttle says no (one resend
    a minute, five a day, counted on earlier resends; the sign-up mail itself is
    not counted, so someone who did not get it can ask at once).

    Args:
        email: normalised address.
        request_id: the request's id (idempotency key, see
            :func:`webapp.auth.mail_requests.queue_for_account`).

    Returns:
        The outcome of :func:`~webapp.auth.mail_requests.queue_for_account`.
    """
    return mail_requests.queue_for_account(
        VERIFY, email, request_id, wanted=lambda user: not user.is_verified,
        context={"resend": True}, only=lambda r: bool((r.context or {}).get("resend")))


def _verify_mail(row: OutboxMessage) -> Rendered:
    """Verification mail: a link with a token signed now, at send time.

    The token's ``jti`` is derived from the outbox id, so each mail's link is
    single use on its own and any of them verifies the account once.
    """
    token = tokens.make_token(VERIFY, {"uid": row.user_id, "email": row.to_address,
                                       "jti": f"verify-{row.id}"})
    hours = current_app.config["VERIFY_TOKEN_MAX_AGE"] // 3600
    return Rendered(subject="Confirm your e-mail address for Onboard",
                    context={"link": external_url("auth.verify", token=token), "hours": hours,
                             "email": row.to_address})


def verify_email(token: str) -> User:
    """Verify the account named by a verification token, once.

    Args:
        token: the string from the mailed link.

    Returns:
        The verified user.

    Raises:
        tokens.TokenError: ``forged`` (bad signature or unknown user), ``expired``
            (older than ``VERIFY_TOKEN_MAX_AGE`` seconds), or ``used`` (this link,
            or the account, was verified already).
    """
    payload = tokens.read_token(VERIFY, token, current_app.config["VERIFY_TOKEN_MAX_AGE"])
    user = db.session.get(User, payload.get("uid"))
    if user is None or user.email != payload.get("email"):
        raise tokens.TokenError("forged", "This link is not valid.")
    if user.is_verified or tokens.is_used(payload["jti"]):
        raise tokens.TokenError("used", "This link has already been used.")
    tokens.mark_used(VERIFY, payload["jti"])
    user.verified_at = utcnow()
    db.session.commit()
    return user


@dataclass(frozen=True)
class LoginResult:
    """Outcome of :func:`authenticate`: ``user`` is set when the password matched;
    ``ok`` only when the account is also verified."""

    user: User | None
    ok: bool


def authenticate(email: str, password: str) -> LoginResult:
    """Check an address and password.

    A wrong address costs one argon2 verification like a wrong password, so the
    answer time does not tell whether an account exists. A matching password on
    an unverified account gives ``LoginResult(user, ok=False)``.
    """
    user = find_user(email)
    if not verify_password(user.password_hash if user else None, password) or user is None:
        return LoginResult(None, False)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    if not user.is_verified:
        db.session.commit()
        return LoginResult(user, False)
    user.last_login_at = utcnow()
    db.session.commit()
    return LoginResult(user, True)


def end_sessions(user: User) -> None:
    """End every session of ``user``: ``session_epoch`` + 1, committed.

    Session and remember cookies carry the epoch (``User.get_id``), so every
    cookie issued before, including a copy of the current one, is refused by
    :func:`load_user` afterwards (OWASP Session Management Cheat Sheet: log-out
    invalidates the session on the server). Reset links carry the epoch too and
    die with it. The increment is one ``UPDATE … SET session_epoch =
    session_epoch + 1``, so two log-outs at once both count.

    Args:
        user: the account (a loaded :class:`User`).
    """
    db.session.execute(update(User).where(User.id == user.id)
                       .values(session_epoch=User.session_epoch + 1)
                       .execution_options(synchronize_session=False))
    db.session.commit()


def load_user(session_id: str) -> User | None:
    """Flask-Login user loader for ids made by ``User.get_id`` (``"<id>.<epoch>"``)."""
    user_id, _, epoch = session_id.partition(".")
    if not user_id.isdigit() or not epoch.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.session_epoch != int(epoch) or not user.is_verified:
        return None
    return user
