"""Account services: the rules of sign-up, verification and log-in.

Views stay thin: they validate forms and call these. Every function that writes
commits its own transaction, then publishes mail tasks (after the commit, never
before: a rolled-back row must not be mailed).

Over 300 lines on purpose: sign-up, verification by link and by code, resend, log-in and
sessions share the account rules and the verify mail builder; each section is marked.
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from webapp import outbox
from webapp.auth import codes, mail_requests, tokens
from webapp.bounces import services as bounces
from webapp.auth.passwords import hash_password, needs_rehash, verify_password
from webapp.extensions import db
from webapp.mail import Rendered
from webapp.models import OutboxMessage, User, utcnow
from webapp.ratelimit import mail_throttled
from webapp.urls import external_url

VERIFY = "verify"


class EmailTaken(Exception):
    """An account with this address exists already."""


def find_user(email: str) -> User | None:
    """The user with this normalised address, or ``None``."""
    return db.session.scalar(select(User).where(User.email == email))


def register_user(email: str, password: str) -> int:
    """Create an unverified account and queue its verification mail.

    The user row, its 6-digit code (:func:`webapp.auth.codes.issue`, valid as
    long as the link) and the outbox row commit in one transaction, the outbox
    row already marked published; the mail task is published after the commit
    (see :mod:`webapp.outbox`, ``will_publish``). The unique index on
    ``users.email`` decides whether the address is taken: no read comes first,
    so a taken address costs the same argon2id hash as a new one (its answer
    time says nothing more than its text).

    Args:
        email: normalised address (see ``forms.normalize_email``).
        password: the plain password, already length-checked.

    Returns:
        The new user's id (int): the id, not the row, because the commit expires
        the row and reading it again would cost a ``SELECT``.

    Raises:
        EmailTaken: the address is registered already; nothing is written.
    """
    user = User(email=email, password_hash=hash_password(password))
    db.session.add(user)
    try:
        db.session.flush()
        user_id = user.id
        codes.issue(user_id, VERIFY, current_app.config["VERIFY_TOKEN_MAX_AGE"])
        row = outbox.add(VERIFY, email, user_id=user_id, will_publish=True)
        db.session.flush()
        row_id = row.id  # read before the commit expires the row (a reload is a round trip)
        db.session.commit()
    except IntegrityError as exc:  # the address is taken (also by a concurrent sign-up)
        db.session.rollback()
        raise EmailTaken(email) from exc
    outbox.publish([row_id], premarked=True)
    return user_id


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
    not counted, so someone who did not get it can ask at once). The mail
    carries a new code; the account's previous code stops working.

    Args:
        email: normalised address.
        request_id: the request's id (idempotency key, see
            :func:`webapp.auth.mail_requests.queue_for_account`).

    Returns:
        The outcome of :func:`~webapp.auth.mail_requests.queue_for_account`.
    """
    return mail_requests.queue_for_account(
        VERIFY, email, request_id, wanted=lambda user: not user.is_verified,
        context={"resend": True}, only=_counted_resend,
        issue_code=current_app.config["VERIFY_TOKEN_MAX_AGE"])


def _counted_resend(row: OutboxMessage) -> bool:
    """The verification mails the resend throttle counts: all but the sign-up mail."""
    return bool((row.context or {}).get("resend"))


def _verify_mail(row: OutboxMessage) -> Rendered:
    """Verification mail: a link with a token signed now, at send time.

    The token's ``jti`` is derived from the outbox id, so each mail's link is
    single use on its own and any of them verifies the account once. The
    account's current code goes with it (:func:`webapp.auth.codes.current`).
    """
    token = tokens.make_token(VERIFY, {"uid": row.user_id, "email": row.to_address,
                                       "jti": f"verify-{row.id}"})
    hours = current_app.config["VERIFY_TOKEN_MAX_AGE"] // 3600
    return Rendered(subject="Confirm your e-mail address for Onboard",
                    context={"link": external_url("auth.verify", token=token), "hours": hours,
                             "code": codes.current(row.user_id, VERIFY),
                             "code_page": external_url("auth.check_inbox"),
                             "email": row.to_address})


def check_verify_link(token: str) -> User:
    """Read a verification link without using it (a GET of the link, which mail
    scanners make too, must change nothing).

    Args:
        token: the string from the mailed link.

    Returns:
        The account it names; ``user.is_verified`` tells whether it is confirmed
        already (by this link, another one, or a code).

    Raises:
        tokens.TokenError: ``forged`` (bad signature, unknown user or an address
            that changed since) or ``expired`` (older than ``VERIFY_TOKEN_MAX_AGE``).
    """
    return _read_verify_link(token)[0]


def _read_verify_link(token: str) -> tuple[User, dict[str, object]]:
    payload = tokens.read_token(VERIFY, token, current_app.config["VERIFY_TOKEN_MAX_AGE"])
    user = db.session.get(User, payload.get("uid")) if isinstance(payload.get("uid"), int) else None
    if user is None or user.email != payload.get("email"):
        raise tokens.TokenError("forged", "This link is not valid.")
    return user, payload


def verify_email(token: str) -> User:
    """Verify the account named by a verification token, once (the POST of the
    confirm button the link's page shows).

    Args:
        token: the string from the mailed link.

    Returns:
        The verified user.

    Raises:
        tokens.TokenError: as :func:`check_verify_link`, or ``used`` (this link,
            or the account, was verified already).
    """
    user, payload = _read_verify_link(token)
    if user.is_verified or tokens.is_used(str(payload["jti"])):
        raise tokens.TokenError("used", "This link has already been used.")
    tokens.mark_used(VERIFY, str(payload["jti"]))
    _mark_verified(user)
    db.session.commit()
    return user


def _mark_verified(user: User) -> None:
    user.verified_at = utcnow()
    codes.revoke(user.id, VERIFY)


def verify_with_code(email: str, code: str) -> User | None:
    """Verify an account with the 6-digit code of its verification mail.

    The code is checked by :func:`webapp.auth.codes.redeem` (single use,
    expires with the link, ``ACCOUNT_CODE_MAX_ATTEMPTS`` entries per mailed code
    claimed atomically, constant-time comparison, the same work for any address).

    Args:
        email: normalised address (from the sign-up session, or typed).
        code: what the person typed.

    Returns:
        The now verified account, or ``None`` for any failure (one answer).
    """
    user = codes.redeem(email, VERIFY, code)
    if user is None:
        return None
    if not user.is_verified:
        _mark_verified(user)
    db.session.commit()
    return user


def pending_account(user_id: object) -> User | None:
    """The unverified account a sign-up session (or a log-in that proved the
    password) is waiting on, or ``None``."""
    if not isinstance(user_id, int):
        return None
    user = db.session.get(User, user_id)
    return user if user is not None and not user.is_verified else None


@dataclass(frozen=True)
class MailProblem:
    """Why the latest verification mail did not arrive, for the account's holder:
    ``address`` it went to, ``reason`` in plain words, ``suppressed`` when no
    mail goes there until the person asks again or changes the address."""

    address: str
    reason: str
    suppressed: bool


def verification_problem(user: User) -> MailProblem | None:
    """The delivery problem of the account's latest verification mail, if any.

    Shown only to the holder of the password or of the sign-up session (the
    caller's business), never to anyone who merely types an address.

    Returns:
        ``None`` while the latest verification mail to the current address is
        queued or was delivered; otherwise its failure (SMTP 5xx, retries
        given up, suppressed address) or a later bounce report.
    """
    row = db.session.scalar(
        select(OutboxMessage).where(OutboxMessage.user_id == user.id,
                                    OutboxMessage.kind == VERIFY,
                                    OutboxMessage.to_address == user.email)
        .order_by(OutboxMessage.id.desc()).limit(1))
    if row is None or (row.failed_at is None and row.bounced_at is None):
        return None
    hard = bounces.suppressed(user.email)
    bounce = bounces.for_outbox(row.id) or hard
    reason = bounce.reason if bounce is not None else "our mail server could not send it"
    return MailProblem(address=user.email, reason=reason, suppressed=hard is not None)


class WrongPassword(Exception):
    """The password given does not match."""


class AlreadyVerified(Exception):
    """The account is verified: its address changes on the account page, by code."""


class MailThrottled(Exception):
    """A verification mail went to this account too recently (``mail_throttled``)."""


def correct_address(user: User, password: str, new_email: str) -> None:
    """Change an unverified account's address (or try the same one again) and
    send a new verification mail there.

    The person proves the password first (the page is shown only to the sign-up
    session or after a log-in with the right password, but the password is
    asked again: a session left open is not enough to move the account). Trying
    the same address again takes it off the suppression list. The new mail is a
    resend for the throttle (one a minute, five a day), so the form cannot be
    used to flood a mailbox. The old code stops working; links sent to the old
    address stop working (they name it).

    Args:
        user: the unverified account.
        password: its password, as typed.
        new_email: normalised address; the current one means "try again".

    Raises:
        WrongPassword, AlreadyVerified, MailThrottled, EmailTaken: nothing is
            written.
    """
    if not verify_password(user.password_hash, password):
        raise WrongPassword()
    if user.is_verified:
        raise AlreadyVerified()
    if new_email != user.email and find_user(new_email) is not None:
        raise EmailTaken(new_email)
    if mail_throttled(VERIFY, user.id, only=_counted_resend):
        db.session.rollback()
        raise MailThrottled()
    if new_email == user.email:
        bounces.lift(new_email)
    user.email = new_email
    codes.issue(user.id, VERIFY, current_app.config["VERIFY_TOKEN_MAX_AGE"])
    row = outbox.add(VERIFY, new_email, user_id=user.id, context={"resend": True})
    try:
        db.session.commit()
    except IntegrityError as exc:  # a concurrent sign-up took the address
        db.session.rollback()
        raise EmailTaken(new_email) from exc
    outbox.publish([row.id])


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
