"""Unit tests of logic only (no broker, no worker): passwords, tokens, proxies.

Configuration has its own file, ``tests/test_config.py``."""
from __future__ import annotations

import pytest
from argon2 import extract_parameters
from argon2.low_level import Type

from tests.unit_config import TEST_CONFIG
from webapp import create_app
from webapp.auth import passwords, tokens
from webapp.extensions import db


def test_password_hash_is_argon2id_with_owasp_parameters() -> None:
    h = passwords.hash_password("correct horse battery")
    params = extract_parameters(h)
    assert params.type is Type.ID
    assert params.memory_cost >= 19 * 1024 and params.time_cost >= 2
    assert passwords.verify_password(h, "correct horse battery")
    assert not passwords.verify_password(h, "wrong")
    assert not passwords.verify_password(None, "anything")
    assert h != passwords.hash_password("correct horse battery")  # salted


@pytest.fixture
def app_ctx(app):  # type: ignore[no-untyped-def]
    """The fast app (schema by the migrations) with its app context pushed."""
    with app.app_context():
        yield app


def test_tokens_purpose_expiry_and_single_use(app_ctx) -> None:  # type: ignore[no-untyped-def]
    t = tokens.make_token("verify", {"uid": 1, "jti": "j-1"})
    assert tokens.read_token("verify", t, 60)["uid"] == 1
    with pytest.raises(tokens.TokenError) as exc:
        tokens.read_token("reset", t, 60)  # another purpose's salt
    assert exc.value.reason == "forged"
    with pytest.raises(tokens.TokenError) as exc:
        tokens.read_token("verify", t, -1)
    assert exc.value.reason == "expired"
    with pytest.raises(tokens.TokenError):
        tokens.read_token("verify", t[:-2] + "xx", 60)
    with pytest.raises(ValueError):
        tokens.make_token("verify", {"uid": 1})

    tokens.mark_used("verify", "j-1")
    db.session.commit()
    assert tokens.is_used("j-1")
    with pytest.raises(tokens.TokenError) as exc:
        tokens.mark_used("verify", "j-1")
    assert exc.value.reason == "used"


def test_external_url_uses_base_url_not_host(app) -> None:  # type: ignore[no-untyped-def]
    from webapp.urls import external_url

    app.config["BASE_URL"] = "https://onboard.example.com/app"
    with app.test_request_context("/", headers={"Host": "evil.example.net"}):
        url = external_url("auth.verify", token="abc")
    assert url == "https://onboard.example.com/app/verify/abc"


def test_proxy_fix_only_when_configured() -> None:
    from flask import request

    seen = []
    for n in (0, 1):
        app = create_app({**TEST_CONFIG, "PROXY_FIX": n})

        @app.get("/_ip")
        def ip() -> str:
            seen.append(request.remote_addr)
            return "ok"

        app.test_client().get("/_ip", headers={"X-Forwarded-For": "203.0.113.9"},
                              environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert seen == ["127.0.0.1", "203.0.113.9"]
