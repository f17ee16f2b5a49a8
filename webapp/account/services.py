"""Account lifecycle rules: password reset and change, e-mail change.

Like :mod:`webapp.auth.services`, every function that writes commits its own
transaction and publishes the mails it queued after the commit (the outbox).
Nothing here tells a caller whether an address has an account unless the caller
already proved they own that account (no account enumeration, OWASP Forgot
Password and Authentication Cheat Sheets).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from webapp import outbox
from webapp.auth import codes, mail_requests, tokens
from webapp.auth.passwords import hash_password, verify_password
from webapp.auth.services import VERIFY, WrongPassword, find_user
from webapp.extensions import db
from webapp.mail import Rendered
from webapp.models import EmailChangeRequest, OutboxMessage, User, utcnow
from webapp.ratelimit import mail_throttled
from webapp.urls import external_url

RESET = "password_reset"
PASSWORD_CHANGED = "password_changed"
EMAIL_CODE = "email_change_code"
EMAIL_CHANGED = "email_changed"


# --- password reset ------------------------------------------------------------------


def request_password_reset(email: str) -> None:
    """Ask for a reset mail to ``email``; the web side of "forgot password".

    Publishes :func:`webapp.tasks.account.password_reset` for any address, known
    or not, and runs no SQL, so the answer time tells nothing (see
    :mod:`webapp.auth.mail_requests`); the worker runs :func:`send_password_reset`.

    Args:
        email: normalised address.
    """
    from webapp.tasks import account as tasks  # it imports this module

    mail_requests.submit(tasks.password_reset, email, send_password_reset)


def send_password_reset(email: str, request_id: str) -> str:
    """Queue a reset mail for the account with this address, if there is one.

    Nothing happens for an unknown address, or when the per-account throttle
    (:func:`webapp.ratelimit.mail_throttled`: one a minute, five a day) says no.

    Args:
        email: normalised address.
        request_id: the request's id (idempotency key, see
            :func:`webapp.auth.mail_requests.queue_for_account`).

    Returns:
        The outcome of :func:`~webapp.auth.mail_requests.queue_for_account`.
    """
    return mail_requests.queue_for_account(
        RESET, email, request_id,
        issue_code=current_app.config["PASSWORD_RESET_MAX_AGE"])


def _reset_mail(row: OutboxMessage) -> Rendered:
    """Reset mail: a link signed now, at send time, that names the user, the
    address and the session epoch; it expires after ``PASSWORD_RESET_MAX_AGE``
    seconds, works once (``jti``), and dies when the password changes (epoch)."""
    user = db.session.get(User, row.user_id) if row.user_id is not None else None
    epoch = user.session_epoch if user is not None else -1
    token = tokens.make_token(RESET, {"uid": row.user_id, "email": row.to_address,
                                      "epoch": epoch, "jti": f"reset-{row.id}"})
    minutes = current_app.config["PASSWORD_RESET_MAX_AGE"] // 60
    return Rendered(subject="Reset your Onboard password",
                    context={"link": external_url("account.reset_password", token=token),
                             "code": codes.current(row.user_id, RESET),
                             "code_page": external_url("account.forgot_password"),
                             "minutes": minutes, "email": row.to_address})


def check_reset_token(token: str) -> tuple[User, dict[str, object]]:
    """Check a reset token without using it (to show the form).

    Returns:
        The user and the token payload.

    Raises:
        tokens.TokenError: ``forged``, ``expired`` (older than
            ``PASSWORD_RESET_MAX_AGE`` seconds) or ``used`` (this link was used,
            or the password changed since it was sent).
    """
    payload = tokens.read_token(RESET, token, current_app.config["PASSWORD_RESET_MAX_AGE"])
    user = db.session.get(User, payload.get("uid")) if isinstance(payload.get("uid"), int) else None
    if user is None or user.email != payload.get("email"):
        raise tokens.TokenError("forged", "This link is not valid.")
    if tokens.is_used(payload["jti"]) or user.session_epoch != payload.get("epoch"):
        raise tokens.TokenError("used", "This link has already been used.")
    return user, payload


def reset_password(token: str, new_password: str) -> User:
    """Set a new password with a reset token, once.

    Ends every session of the user (``session_epoch`` + 1), which also kills
    every other reset link sent before. A reset proves the mailbox is the
    user's, so an unverified account becomes verified. A notice is mailed.

    Raises:
        tokens.TokenError: as :func:`check_reset_token`; nothing is written.
    """
    user, payload = check_reset_token(token)
    tokens.mark_used(RESET, str(payload["jti"]))
    _set_password(user, new_password)
    if user.verified_at is None:
        user.verified_at = utcnow()
        codes.revoke(user.id, VERIFY)
    row = outbox.add(PASSWORD_CHANGED, user.email, user_id=user.id)
    db.session.commit()
    outbox.publish([row.id])
    return user


def redeem_reset_code(email: str, code: str) -> str | None:
    """Trade the code of a reset mail for a reset link's token (the code typed on
    the page after ``/password/forgot`` leads to the same new-password form).

    The code is checked by :func:`webapp.auth.codes.redeem`: same statements and
    same answer whether or not the address has an account, at most
    ``ACCOUNT_CODE_MAX_ATTEMPTS`` entries per mailed code, single use, expires
    with the link (``PASSWORD_RESET_MAX_AGE``). The token it returns is an
    ordinary reset token (``jti = resetcode-<uuid>``, the current session epoch),
    so everything :func:`reset_password` enforces holds for it too.

    Args:
        email: normalised address typed on (or carried over from) the forgot page.
        code: what the person typed.

    Returns:
        The token for ``/password/reset/<token>``, or ``None`` for any failure.
    """
    user = codes.redeem(email, RESET, code)
    if user is None:
        return None
    db.session.commit()  # the code is used up
    return tokens.make_token(RESET, {"uid": user.id, "email": user.email,
                                     "epoch": user.session_epoch,
                                     "jti": f"resetcode-{uuid.uuid4().hex}"})


def _set_password(user: User, new_password: str) -> None:
    user.password_hash = hash_password(new_password)
    user.session_epoch = (user.session_epoch or 0) + 1
    # Reset links die with the epoch; their codes die with them.
    codes.revoke(user.id, RESET)


# --- password change -----------------------------------------------------------------


def change_password(user: User, current_password: str, new_password: str) -> None:
    """Change the password of a logged-in user who knows the current one.

    Ends every session of the user (``session_epoch`` + 1); the caller logs the
    current session in again with the new epoch. A notice is mailed.

    Raises:
        WrongPassword: ``current_password`` is wrong; nothing is written.
    """
    if not verify_password(user.password_hash, current_password):
        raise WrongPassword()
    _set_password(user, new_password)
    row = outbox.add(PASSWORD_CHANGED, user.email, user_id=user.id)
    db.session.commit()
    outbox.publish([row.id])


def _password_changed_mail(row: OutboxMessage) -> Rendered:
    """Notice that the password changed, with a link to reset it if it was not them."""
    return Rendered(subject="Your Onboard password was changed",
                    context={"forgot_link": external_url("account.forgot_password"),
                             "email": row.to_address})


# --- e-mail change -------------------------------------------------------------------


#: HMAC domain of e-mail-change codes (see :mod:`webapp.auth.codes`).
EMAIL_CODE_PURPOSE = "email-code"


def code_for(request: EmailChangeRequest) -> str:
    """The 6-digit code of a request, derived from its salt
    (:func:`webapp.auth.codes.derive`; the worker calls this at send time, it is
    never stored)."""
    return codes.derive(EMAIL_CODE_PURPOSE, request.code_salt)


class EmailChangeThrottled(Exception):
    """A code was mailed for this account too recently (see ``mail_throttled``)."""


def request_email_change(user: User, password: str, new_email: str) -> EmailChangeRequest:
    """Start an e-mail change: mail a code to the new address.

    Choice for an address that already has an account: the code is mailed
    anyway and the change is refused only at confirmation, to whoever holds the
    code (the owner of that mailbox, who knows it has an account). The page
    answers the same either way, so the form cannot probe for accounts.

    Args:
        user: the logged-in user.
        password: the current password (a stolen session alone cannot move the
            account to another mailbox).
        new_email: normalised new address, different from the current one.

    Returns:
        The new request (any older open request of the user is deleted).

    Raises:
        WrongPassword: nothing is written.
        EmailChangeThrottled: a code went out less than ``MAIL_THROTTLE_INTERVAL``
            seconds ago, or ``MAIL_THROTTLE_PER_DAY`` today.
    """
    if not verify_password(user.password_hash, password):
        raise WrongPassword()
    if mail_throttled(EMAIL_CODE, user.id):
        db.session.rollback()
        raise EmailChangeThrottled()
    db.session.execute(delete(EmailChangeRequest).where(EmailChangeRequest.user_id == user.id))
    salt = codes.new_salt()
    request = EmailChangeRequest(
        user_id=user.id, new_email=new_email, code_salt=salt, code_hash="", attempts=0,
        expires_at=utcnow() + timedelta(seconds=current_app.config["EMAIL_CHANGE_CODE_MAX_AGE"]))
    request.code_hash = codes.digest(EMAIL_CODE_PURPOSE, salt, code_for(request))
    db.session.add(request)
    db.session.flush()
    row = outbox.add(EMAIL_CODE, new_email, user_id=user.id, context={"request_id": request.id})
    db.session.commit()
    outbox.publish([row.id])
    return request


def _email_code_mail(row: OutboxMessage) -> Rendered:
    """Code mail to the new address; the code is derived now from the request's
    salt. A request deleted meanwhile (replaced) gives a mail saying so."""
    request = db.session.get(EmailChangeRequest, row.context.get("request_id"))
    code = code_for(request) if request is not None else None
    minutes = current_app.config["EMAIL_CHANGE_CODE_MAX_AGE"] // 60
    return Rendered(subject="Your Onboard confirmation code",
                    context={"code": code, "minutes": minutes, "email": row.to_address,
                             "account_link": external_url("account.account")})


def open_request(user: User) -> EmailChangeRequest | None:
    """The user's pending e-mail change, if any (expired or locked ones included,
    so the page can say why a code no longer works)."""
    return db.session.scalar(select(EmailChangeRequest).where(
        EmailChangeRequest.user_id == user.id, EmailChangeRequest.confirmed_at.is_(None)))


class CodeError(Exception):
    """A code that cannot be used; ``reason`` is ``none``, ``expired``, ``locked``,
    ``wrong`` or ``taken``; the message is fit to show."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def confirm_email_change(user: User, code: str) -> str:
    """Change the user's address if ``code`` matches their open request.

    The code is compared as an HMAC in constant time (``hmac.compare_digest``).
    Each entry counts: it claims one attempt with ``UPDATE … SET attempts =
    attempts + 1 WHERE attempts < EMAIL_CHANGE_MAX_ATTEMPTS RETURNING attempts``
    before the code is compared, so however many requests arrive at once at
    most ``EMAIL_CHANGE_MAX_ATTEMPTS`` codes are ever compared; then the request
    is locked (NIST SP 800-63B: limit failed attempts on short codes). A notice
    goes to the old address.

    Returns:
        The old address.

    Raises:
        CodeError: see its reasons; a wrong code only increments ``attempts``
            (committed).
    """
    cfg = current_app.config
    limit = cfg["EMAIL_CHANGE_MAX_ATTEMPTS"]
    request = open_request(user)
    if request is None:
        raise CodeError("none", "There is no pending address change. Start again below.")
    if request.expires_at <= utcnow():
        raise CodeError("expired", "This code has expired. Ask for a new code below.")
    # Claim one attempt before comparing, in one atomic UPDATE: concurrent
    # requests each get their own count, and none is compared past the limit.
    claimed = db.session.execute(
        update(EmailChangeRequest)
        .where(EmailChangeRequest.id == request.id, EmailChangeRequest.attempts < limit)
        .values(attempts=EmailChangeRequest.attempts + 1)
        .returning(EmailChangeRequest.attempts)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    db.session.commit()
    if claimed is None:
        raise CodeError("locked", "Too many wrong codes. Ask for a new code below.")
    if not codes.matches(EMAIL_CODE_PURPOSE, request.code_salt, request.code_hash, code):
        left = limit - claimed
        if left <= 0:
            raise CodeError("locked", "Too many wrong codes. Ask for a new code below.")
        raise CodeError("wrong", f"The code is not right. {left} tries left.")
    if find_user(request.new_email) is not None:
        db.session.delete(request)
        db.session.commit()
        raise CodeError("taken", "That address belongs to another account, so it cannot be "
                                 "used. Nothing was changed.")
    old = user.email
    user.email = request.new_email
    request.confirmed_at = utcnow()
    row = outbox.add(EMAIL_CHANGED, old, user_id=user.id, context={"new_email": request.new_email})
    try:
        db.session.commit()
    except IntegrityError as exc:  # someone took the address a moment ago
        db.session.rollback()
        raise CodeError("taken", "That address belongs to another account, so it cannot be "
                                 "used. Nothing was changed.") from exc
    outbox.publish([row.id])
    return old


def _email_changed_mail(row: OutboxMessage) -> Rendered:
    """Notice to the old address that the account moved to a new one."""
    return Rendered(subject="Your Onboard e-mail address was changed",
                    context={"email": row.to_address, "new_email": row.context.get("new_email"),
                             "forgot_link": external_url("account.forgot_password")})


@dataclass(frozen=True)
class PendingChange:
    """What the account page shows about an open e-mail change."""

    new_email: str
    expired: bool
    locked: bool


def pending_change(user: User) -> PendingChange | None:
    """The open e-mail change of ``user`` for display, or ``None``."""
    request = open_request(user)
    if request is None:
        return None
    return PendingChange(new_email=request.new_email, expired=request.expires_at <= utcnow(),
                         locked=request.attempts >= current_app.config["EMAIL_CHANGE_MAX_ATTEMPTS"])
