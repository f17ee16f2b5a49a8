"""The production start-up check: the one rule every process applies.

``create_app`` runs :func:`check` (web, worker, beat, CLI) and so does
``flowerconfig.py`` before Flower starts.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webapp.config.settings import DEV_SECRET

#: Shortest ``SECRET_KEY`` accepted: 32 characters, what
#: ``python -c "import secrets; print(secrets.token_hex(16))"`` prints.
MIN_SECRET_LENGTH = 32
#: Shortest Flower password accepted (OWASP ASVS 4.0, 2.1.1: at least 12 characters).
MIN_FLOWER_PASSWORD_LENGTH = 12
#: Secrets and passwords printed in Onboard's code and docs (lower case), public
#: by definition: the dev ``SECRET_KEY``, ``make run``'s Flower login
#: ``admin:onboard`` and the placeholders of the docs' examples.
KNOWN_VALUES = frozenset({DEV_SECRET, "onboard", "change-me", "changeme", "secret",
                          "password", "long-random-password", "pass", "admin"})
#: Placeholder words: a value containing one was copied from an example.
PLACEHOLDER_WORDS = ("change-me", "changeme", "change_me")


class UnsafeProductionConfig(RuntimeError):
    """``ONBOARD_ENV=production`` with settings that must not reach users."""


def _known(value: str) -> bool:
    lowered = value.lower()
    return lowered in KNOWN_VALUES or any(word in lowered for word in PLACEHOLDER_WORDS)


def secret_key_problems(secret: str | None) -> list[str]:
    """What is wrong with ``SECRET_KEY`` for production (empty list: nothing).

    Refused: unset, shorter than :data:`MIN_SECRET_LENGTH`, a value from the
    code or docs (:data:`KNOWN_VALUES`, :data:`PLACEHOLDER_WORDS`).
    """
    if not secret:
        return ["SECRET_KEY must be set"]
    if _known(secret):
        return ["SECRET_KEY is a published value (the dev default or a docs placeholder)"]
    if len(secret) < MIN_SECRET_LENGTH:
        return [f"SECRET_KEY is {len(secret)} characters; at least {MIN_SECRET_LENGTH} are "
                "needed (python -c \"import secrets; print(secrets.token_hex())\")"]
    return []


def flower_auth_problems(basic_auth: str | None) -> list[str]:
    """What is wrong with ``FLOWER_BASIC_AUTH`` (``user:password[,user:password…]``).

    Refused: unset, an entry without a user or a password, a published
    password (``make run``'s ``onboard``, the docs' examples), a password shorter
    than :data:`MIN_FLOWER_PASSWORD_LENGTH`. Passwords are never echoed.
    """
    entries = [e.strip() for e in (basic_auth or "").split(",") if e.strip()]
    if not entries:
        return ["FLOWER_BASIC_AUTH must be set (user:password)"]
    problems = []
    for n, entry in enumerate(entries, 1):
        user, sep, password = entry.partition(":")
        if not (user and sep and password):
            problems.append(f"FLOWER_BASIC_AUTH entry {n} is not user:password")
        elif _known(password):
            problems.append(f"FLOWER_BASIC_AUTH entry {n} ({user}) has a published "
                            "password (the make run default or a docs example)")
        elif len(password) < MIN_FLOWER_PASSWORD_LENGTH:
            problems.append(f"FLOWER_BASIC_AUTH entry {n} ({user}) has a password shorter "
                            f"than {MIN_FLOWER_PASSWORD_LENGTH} characters")
    return problems


def check(config: Mapping[str, Any]) -> None:
    """Fail fast on unsafe production settings; any other ``ENV_NAME`` passes.

    Args:
        config: a Flask config (``from_env`` keys): ``ENV_NAME``, ``SECRET_KEY``,
            ``FLOWER_BASIC_AUTH``, ``BASE_URL``, ``RATELIMIT_STORAGE_URI``,
            ``WEB_CONCURRENCY``.

    Raises:
        UnsafeProductionConfig: (a ``RuntimeError``) listing every problem: a weak
            or published ``SECRET_KEY`` (:func:`secret_key_problems`), a missing
            or weak ``FLOWER_BASIC_AUTH`` (:func:`flower_auth_problems`), a
            ``BASE_URL`` that is not https, or ``RATELIMIT_STORAGE_URI=memory://``
            with ``WEB_CONCURRENCY`` > 1 (each gunicorn worker counts on its own,
            so N workers let N times a limit through).
    """
    if config["ENV_NAME"] != "production":
        return
    problems = [*secret_key_problems(config["SECRET_KEY"]),
                *flower_auth_problems(config["FLOWER_BASIC_AUTH"])]
    if not str(config["BASE_URL"]).startswith("https://"):
        problems.append("BASE_URL must be https")
    if (str(config["RATELIMIT_STORAGE_URI"]).startswith("memory://")
            and config["WEB_CONCURRENCY"] > 1):
        problems.append(f"RATELIMIT_STORAGE_URI=memory:// counts per process but "
                        f"WEB_CONCURRENCY={config['WEB_CONCURRENCY']}: use Redis "
                        "(redis://host:6379/0)")
    if problems:
        raise UnsafeProductionConfig("Unsafe production configuration: " + "; ".join(problems))
