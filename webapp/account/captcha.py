"""Image (and audio) captcha for sign-up, drawn locally with the ``captcha`` package.

A challenge is a random nonce kept in the session; its answer (6 digits) is
derived from the nonce with an HMAC keyed by ``SECRET_KEY``, so the client-side
session cookie (signed, not encrypted) never reveals it, and the server needs no
store to draw the image or the audio later. Digits only, because the bundled
audio voices are digits (the audio is the accessible alternative to the image).

Single use: checking pops the nonce from the session whatever the outcome, and a
correct answer records ``captcha-<nonce>`` in ``used_tokens`` so a saved cookie
cannot be replayed. A challenge also expires after :data:`MAX_AGE` seconds.
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
    return {"image_url": url_for("account.captcha_image", n=nonce),
            "audio_url": url_for("account.captcha_audio", n=nonce),
            "refresh_url": url_for("account.captcha_new")}


def image_png(nonce: str) -> bytes:
    """PNG bytes (240 × 80 pixels) showing the answer of ``nonce``."""
    return _image.generate(answer_for(nonce), format="png").getvalue()


def audio_wav(nonce: str) -> bytes:
    """WAV bytes speaking the answer of ``nonce`` digit by digit, over noise."""
    return bytes(_audio.generate(answer_for(nonce)))


def check(answer: str | None) -> bool:
    """Check an answer against the session's challenge and use the challenge up.

    Whatever the outcome the challenge is removed from the session; a wrong or
    late answer writes nothing to the database, a right one records the nonce in
    ``used_tokens`` (committed) so the same cookie cannot pass twice.

    Args:
        answer: what the person typed; spaces are ignored.

    Returns:
        ``True`` only for the right answer to an open, unexpired, unused challenge.
    """
    data = session.pop(SESSION_KEY, None)
    if not isinstance(data, dict) or not isinstance(data.get("n"), str):
        return False
    typed = "".join((answer or "").split())
    expected = answer_for(data["n"])
    right = hmac.compare_digest(typed.encode(), expected.encode())
    if not right or time.time() - int(data.get("t", 0)) > MAX_AGE:
        return False
    try:
        tokens.mark_used(PURPOSE, f"captcha-{data['n']}")
    except tokens.TokenError:
        db.session.rollback()
        return False
    db.session.commit()
    return True
