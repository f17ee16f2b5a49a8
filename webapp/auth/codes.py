"""Short codes mailed to a person: derived from a random salt, checked as an HMAC.

One mechanism for every mailed code: the e-mail-change code
(:class:`~webapp.models.EmailChangeRequest`) and the code that comes with a
verification or password-reset link (:class:`~webapp.models.AccountCode`).

* **Random, stored nowhere.** A row holds a random 128-bit salt; the code is
  ``HMAC-SHA256(SECRET_KEY, purpose:salt)`` reduced to :data:`DIGITS` digits,
  derived by the worker when it builds the mail (:func:`derive`). The row keeps
  only a second HMAC of the code (:func:`digest`), so a copy of the database
  does not reveal codes, and codes are never written to a log.
* **Constant-time comparison** with :func:`hmac.compare_digest` (:func:`matches`).
* **Limited tries, counted atomically.** Each entry first claims one attempt with
  one ``UPDATE … SET attempts = attempts + 1 WHERE attempts < limit RETURNING``,
  so concurrent guesses never get more than ``limit`` comparisons (NIST SP
  800-63B 5.2.2: limit failed attempts on short secrets).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select, update

from webapp.extensions import db
from webapp.models import AccountCode, User, utcnow

#: Length of every mailed code (10**6 values; with 5 tries a guess succeeds
#: with probability 5e-6 per mail).
DIGITS = 6


def _hmac(purpose: str, *parts: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    msg = ":".join(("onboard", purpose, *parts)).encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def new_salt() -> str:
    """A fresh random salt (32 hex characters, :func:`secrets.token_hex`)."""
    return secrets.token_hex(16)


def derive(purpose: str, salt: str) -> str:
    """The code for ``salt``: :data:`DIGITS` decimal digits (leading zeros kept).

    Args:
        purpose: names the HMAC domain (``"email-code"``, ``"verify"``, …).
        salt: the row's ``code_salt``.
    """
    digest = bytes.fromhex(_hmac(purpose, salt))
    return str(int.from_bytes(digest[:8], "big") % 10**DIGITS).zfill(DIGITS)


def digest(purpose: str, salt: str, code: str) -> str:
    """What a row stores to check ``code`` against: an HMAC (64 hex characters)."""
    return _hmac(purpose + "-check", salt, code)


def matches(purpose: str, salt: str, stored: str, typed: str | None) -> bool:
    """Whether ``typed`` (spaces ignored) is the code of ``salt``, compared in
    constant time (:func:`hmac.compare_digest` on the two HMACs)."""
    cleaned = "".join((typed or "").split())
    return hmac.compare_digest(digest(purpose, salt, cleaned), stored)


# --- codes that come with a verification or reset link -------------------------------


def refused_message() -> str:
    """The one answer to a code that cannot be used, whatever the reason (wrong,
    expired, used up, unknown address), so the page tells nothing about accounts."""
    limit = current_app.config["ACCOUNT_CODE_MAX_ATTEMPTS"]
    return (f"That code is not right, or it no longer works (it is used up after {limit} "
            "wrong tries and expires with the link). Check the newest mail, or ask for a new one.")


def issue(user_id: int, purpose: str, max_age: int) -> AccountCode:
    """Give the account a new code for ``purpose`` in the caller's transaction.

    The account's previous code for that purpose is deleted (a new mail needs
    the new code; its wrong tries start again at 0). The caller commits.

    Args:
        user_id: ``users.id``.
        purpose: the mail kind, ``"verify"`` or ``"password_reset"``.
        max_age: seconds the code stays valid, the lifetime of the link it comes
            with (``VERIFY_TOKEN_MAX_AGE``, ``PASSWORD_RESET_MAX_AGE``).

    Returns:
        The new (flushed) row.
    """
    revoke(user_id, purpose)
    salt = new_salt()
    row = AccountCode(user_id=user_id, purpose=purpose, code_salt=salt,
                      code_hash=digest(purpose, salt, derive(purpose, salt)), attempts=0,
                      expires_at=utcnow() + timedelta(seconds=max_age))
    db.session.add(row)
    db.session.flush()
    return row


def revoke(user_id: int, *purposes: str) -> None:
    """Delete the account's open codes for ``purposes`` (in the caller's transaction):
    a verified account, a changed password or address makes them pointless."""
    db.session.execute(delete(AccountCode).where(AccountCode.user_id == user_id,
                                                 AccountCode.purpose.in_(purposes)))


def current(user_id: int | None, purpose: str) -> str | None:
    """The account's open, unexpired code for ``purpose``, for the mail builder;
    ``None`` when there is none (the mail then carries the link only)."""
    if user_id is None:
        return None
    row = db.session.scalar(select(AccountCode).where(
        AccountCode.user_id == user_id, AccountCode.purpose == purpose,
        AccountCode.expires_at > utcnow()))
    return derive(purpose, row.code_salt) if row is not None else None


def redeem(email: str, purpose: str, typed: str | None) -> User | None:
    """Use the code an address's account was mailed for ``purpose``, once.

    The same statements run whether or not the address has an account, an open
    code, or tries left: one ``UPDATE account_codes … WHERE user_id = (SELECT id
    FROM users WHERE email = :email) AND purpose = :purpose AND attempts < limit
    AND expires_at > now RETURNING …`` (the atomic claim), a commit, and one
    HMAC comparison (against a throw-away digest when nothing was claimed). So
    the answer and its cost say nothing about the address (OWASP Forgot Password
    Cheat Sheet), and 20 concurrent guesses get ``ACCOUNT_CODE_MAX_ATTEMPTS``
    comparisons, no more. A right code deletes the row (single use: of two
    concurrent right entries only the one whose DELETE removes the row wins).

    Args:
        email: normalised address.
        purpose: ``"verify"`` or ``"password_reset"``.
        typed: what the person typed (spaces ignored).

    Returns:
        The account when the code was right and is now used up (the row's
        deletion is flushed, the caller commits with its own change), else
        ``None`` (wrong, expired, used up, no code, no account: one answer).
    """
    limit = current_app.config["ACCOUNT_CODE_MAX_ATTEMPTS"]
    user_id = select(User.id).where(User.email == email).scalar_subquery()
    claimed = db.session.execute(
        update(AccountCode)
        .where(AccountCode.user_id == user_id, AccountCode.purpose == purpose,
               AccountCode.attempts < limit, AccountCode.expires_at > utcnow())
        .values(attempts=AccountCode.attempts + 1)
        .returning(AccountCode.id, AccountCode.user_id, AccountCode.code_salt,
                   AccountCode.code_hash)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    db.session.commit()
    if claimed is None:
        matches(purpose, "0" * 32, "0" * 64, typed)  # same work as a real comparison
        return None
    if not matches(purpose, claimed.code_salt, claimed.code_hash, typed):
        return None
    used = db.session.execute(
        delete(AccountCode).where(AccountCode.id == claimed.id)
        .execution_options(synchronize_session=False)).rowcount
    if used != 1:
        db.session.rollback()
        return None
    return db.session.get(User, claimed.user_id)
