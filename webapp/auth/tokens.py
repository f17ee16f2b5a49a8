"""Signed, expiring, single-use tokens (itsdangerous).

Each purpose signs with its own salt, so a token made for one purpose (say a
password reset) is refused for another (say verification). A token carries a
``jti``; using it inserts that ``jti`` into ``used_tokens``, whose primary key
makes a second use fail even when two requests race.
"""
from __future__ import annotations

from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.exc import IntegrityError

from webapp.extensions import db
from webapp.models import UsedToken

SALT_PREFIX = "onboard."


class TokenError(Exception):
    """A token that cannot be used. ``reason`` is one of ``forged``, ``expired``,
    ``used``; the message is fit to show a person."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT_PREFIX + purpose)


def make_token(purpose: str, payload: dict[str, Any]) -> str:
    """Sign ``payload`` for ``purpose``.

    Args:
        purpose: short name such as ``"verify"``; selects the salt.
        payload: JSON-serialisable dict; must hold a ``"jti"`` (str) that is unique
            per token, used to record single use.

    Returns:
        A URL-safe string (the payload is signed, not encrypted: put no secrets in it).
    """
    if "jti" not in payload:
        raise ValueError("token payload needs a 'jti'")
    return _serializer(purpose).dumps(payload)


def read_token(purpose: str, token: str, max_age: int) -> dict[str, Any]:
    """Check signature and age; does not check or record use.

    Args:
        purpose: the purpose it was made for.
        token: the string from the link.
        max_age: seconds the token stays valid after it was signed.

    Returns:
        The payload dict.

    Raises:
        TokenError: ``expired`` when older than ``max_age``; ``forged`` when the
            signature, salt or shape is wrong.
    """
    try:
        payload = _serializer(purpose).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise TokenError("expired", "This link has expired.") from exc
    except BadSignature as exc:
        raise TokenError("forged", "This link is not valid.") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("jti"), str):
        raise TokenError("forged", "This link is not valid.")
    return payload


def is_used(jti: str) -> bool:
    """Whether a token with this ``jti`` was already used."""
    return db.session.get(UsedToken, jti) is not None


def mark_used(purpose: str, jti: str) -> None:
    """Record the single use of ``jti`` inside the caller's transaction.

    Raises:
        TokenError: ``used`` when the ``jti`` was already recorded (the caller's
            transaction is rolled back to before this call).
    """
    try:
        with db.session.begin_nested():
            db.session.add(UsedToken(jti=jti, purpose=purpose))
    except IntegrityError as exc:
        raise TokenError("used", "This link has already been used.") from exc
