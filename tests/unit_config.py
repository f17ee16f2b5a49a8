"""Overrides for unit tests of logic only (no broker is touched by them):
``create_app(TEST_CONFIG)``."""
from __future__ import annotations

from typing import Any

TEST_CONFIG: dict[str, Any] = {
    "TESTING": True,
    "SECRET_KEY": "test-secret",
    "SQLALCHEMY_DATABASE_URI": "sqlite://",
    "REGISTRATION_CAPTCHA": False,
    "RATELIMIT_ENABLED": False,
}
