"""Image (and audio) captcha for sign-up, drawn locally with the ``captcha`` package.

A challenge is a random nonce kept in the session; its answer (6 digits) is
derived from the nonce with an HMAC keyed by ``SECRET_KEY``, so the client-side
session cookie (signed, not encrypted) never reveals it, and the server needs no
store to draw the image or the audio later. Digits only, because the bundled
audio voices are digits (the audio is the accessible alternative to the image).

One answer per challenge, enforced on the server: checking pops the nonce from
the session and records ``captcha-<nonce>`` in ``used_tokens`` before comparing,
whatever the outcome, so a saved copy of the cookie cannot buy a second guess.
One drawing per challenge and medium: the image and the audio of a nonce are
drawn once each (``captcha-img-<nonce>``, ``captcha-wav-<nonce>``); asking
again starts a new challenge with new digits, so drawings with fresh noise
cannot be collected and voted on by OCR. A challenge also expires after
:data:`MAX_AGE` seconds; ``purge_tokens`` deletes the records later.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from captcha.audio import AudioCaptcha
from captcha.image import ImageCaptcha
from flask import current_app, session, url_for

from webapp.auth import tokens
from webapp.extensions import db

SESSION_KEY = "captcha"
LENGTH = 6
#: Seconds a challenge stays answerable.
MAX_AGE = 600
PURPOSE = "captcha"

_image = ImageCaptcha(width=240, height=80)
_audio = AudioCaptcha()


def enabled() -> bool:
    """Whether sign-up asks for a captcha (``REGISTRATION_CAPTCHA``, on by default)."""
    return bool(current_app.config["REGISTRATION_CAPTCHA"])


def answer_for(nonce: str) -> str:
    """The answer of challenge ``nonce``: ``LENGTH`` digits from
    HMAC-SHA256(SECRET_KEY, nonce)."""
    key = current_app.config["SECRET_KEY"].encode()
    digest = hmac.new(key, b"onboard.captcha:" + nonce.encode(), hashlib.sha256).digest()
    return str(int.from_bytes(digest[:8], "big") % 10**LENGTH).zfill(LENGTH)


def new_challenge() -> str:
    """Start a new challenge in the session (replacing any other); returns its nonce."""
    nonce = secrets.token_urlsafe(16)
    session[SESSION_KEY] = {"n": nonce, "t": int(time.time())}
    return nonce


def current_nonce() -> str | None:
    """The nonce of the session's open challenge, or ``None``."""
    data = session.get(SESSION_KEY)
    return data.get("n") if isinstance(data, dict) else None


def template_context() -> dict[str, Any]:
    """Start a challenge and return what ``auth/_captcha.html`` needs:
    ``image_url``, ``audio_url``, ``refresh_url``."""
    nonce = new_challenge()
    return {"image_url": url_for("auth.captcha_image", n=nonce),
            "audio_url": url_for("auth.captcha_audio", n=nonce),
            "refresh_url": url_for("auth.captcha_new")}


def draw(nonce: str, medium: str) -> str:
    """Record one drawing of challenge ``nonce`` as ``medium``; the nonce to draw.

    The first drawing of a challenge in a medium is allowed; a second one starts
    a new challenge in the session (new digits) and draws that instead.

    Args:
        nonce: the session's open challenge (checked by the caller).
        medium: ``"img"`` or ``"wav"``.

    Returns:
        ``nonce``, or the new challenge's nonce on a redraw.
    """
    try:
        tokens.mark_used(PURPOSE, f"captcha-{medium}-{nonce}")
    except tokens.TokenError:
        db.session.rollback()
        nonce = new_challenge()
        tokens.mark_used(PURPOSE, f"captcha-{medium}-{nonce}")  # a fresh random nonce
    db.session.commit()
    return nonce


def image_png(nonce: str) -> bytes:
    """PNG bytes (240 × 80 pixels) showing the answer of ``nonce``."""
    return _image.generate(answer_for(nonce), format="png").getvalue()


def audio_wav(nonce: str) -> bytes:
    """WAV bytes speaking the answer of ``nonce`` digit by digit, over noise."""
    return bytes(_audio.generate(answer_for(nonce)))


def check(answer: str | None) -> bool:
    """Check an answer against the session's challenge and use the challenge up.

    The challenge is removed from the session and recorded as answered in
    ``used_tokens`` (committed) before the answer is compared, so each
    challenge gets one answer however often a saved cookie is replayed.

    Args:
        answer: what the person typed; spaces are ignored; ``None`` only uses
            the challenge up.

    Returns:
        ``True`` only for the right answer to an open, unexpired, unanswered
        challenge.
    """
    data = session.pop(SESSION_KEY, None)
    if not isinstance(data, dict) or not isinstance(data.get("n"), str):
        return False
    try:
        tokens.mark_used(PURPOSE, f"captcha-{data['n']}")
    except tokens.TokenError:
        db.session.rollback()
        return False
    db.session.commit()
    typed = "".join((answer or "").split())
    right = hmac.compare_digest(typed.encode(), answer_for(data["n"]).encode())
    return right and time.time() - int(data.get("t", 0)) <= MAX_AGE
