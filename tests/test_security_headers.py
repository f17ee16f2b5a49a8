"""Security headers on every page, cookie flags from BASE_URL, and templates
that a CSP without inline script can serve (pure web behaviour: the fast app)."""
from __future__ import annotations

import re
from pathlib import Path

from tests.harness.fastapp import add_verified_user
from tests.harness.forms import PASSWORD, login, new_email
from webapp import config as config_module
from webapp.security import CSP

TEMPLATES = Path(__file__).resolve().parent.parent / "webapp" / "templates"


def assert_headers(resp) -> None:  # type: ignore[no-untyped-def]
    csp = resp.headers["Content-Security-Policy"]
    assert csp == CSP
    assert "default-src 'self'" in csp and "img-src 'self' data:" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Referrer-Policy"] == "same-origin"


def test_headers_on_every_kind_of_page(app, client) -> None:  # type: ignore[no-untyped-def]
    email = new_email("hdr")
    add_verified_user(app, email, PASSWORD)
    pages = ["/", "/register", "/login", "/password/forgot", "/password/reset/forged",
             "/verify/forged", "/no-such-page", "/static/site.css"]
    for path in pages:
        resp = client.get(path)
        assert_headers(resp)
    assert_headers(client.get("/no-such-page", headers={"Accept": "application/json"}))
    assert_headers(client.post("/login", data={}))  # CSRF error page
    login(client, email)
    assert_headers(client.get("/account"))
    assert "Strict-Transport-Security" not in client.get("/").headers  # http BASE_URL


def test_cookie_flags_follow_base_url(client, make_app) -> None:  # type: ignore[no-untyped-def]
    # http (dev): HttpOnly and SameSite=Lax, not Secure (the browser would drop it).
    cookie = client.get("/login").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    # https: the config itself turns Secure on (no override in the test).

    settings = config_module.from_env({"BASE_URL": "https://onboard.example.com"})
    assert settings["SESSION_COOKIE_SECURE"] and settings["REMEMBER_COOKIE_SECURE"]
    app = make_app(**{k: settings[k] for k in ("BASE_URL", "SESSION_COOKIE_SECURE",
                                               "REMEMBER_COOKIE_SECURE")})
    resp = app.test_client().get("/login", base_url="https://onboard.example.com")
    cookie = resp.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert_headers(resp)


def test_page_templates_have_no_inline_script_or_style() -> None:
    """The CSP forbids inline script and style; mail templates are not pages."""
    inline_script = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
    handler = re.compile(r"\son[a-z]+\s*=", re.I)
    style_attr = re.compile(r"\sstyle\s*=", re.I)
    style_tag = re.compile(r"<style\b", re.I)
    offenders = []
    for path in TEMPLATES.rglob("*.html"):
        if "email" in path.relative_to(TEMPLATES).parts:
            continue
        text = path.read_text()
        for rx in (inline_script, handler, style_attr, style_tag, re.compile(r"javascript:", re.I)):
            if rx.search(text):
                offenders.append(f"{path.relative_to(TEMPLATES)}: {rx.pattern}")
    assert offenders == []
