"""Test-client helpers: CSRF tokens, fresh addresses, sign-up and log-in as a
browser does them (GET the form, then POST)."""
from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import urlsplit

PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def new_email(prefix: str = "user") -> str:
    """A fresh address at example.com (email-validator refuses .test/.localhost)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def csrf_from(html: str | bytes) -> str:
    """The first CSRF token in a page; AssertionError if there is none."""
    text = html.decode() if isinstance(html, bytes) else html
    m = CSRF_RE.search(text)
    assert m, "no csrf_token in page"
    return m.group(1) or m.group(2)


def link_from(text: str, path: str = "/verify/") -> str:
    """The first URL in ``text`` containing ``path``; AssertionError if none."""
    m = re.search(r"https?://[^\s\"<>]+" + re.escape(path) + r"[^\s\"<>]+", text)
    assert m, f"no link with {path} in mail"
    return m.group(0)


def confirm_link(client: Any, link: str) -> Any:
    """Follow a mailed verification link as a person does: GET the page (which
    changes nothing), then press its confirm button (a POST with the page's CSRF
    token). Returns the POST's response."""
    path = urlsplit(link).path
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    return client.post(path, data={"csrf_token": csrf_from(page.data)})


def register(client: Any, email: str, password: str = PASSWORD,
             confirm: str | None = None, **extra: str) -> Any:
    """GET the form for its CSRF token, then POST a sign-up; returns the response."""
    token = csrf_from(client.get("/register").data)
    data = {"email": email, "password": password,
            "password_confirm": password if confirm is None else confirm,
            "csrf_token": token, **extra}
    return client.post("/register", data=data)


def login(client: Any, email: str, password: str = PASSWORD) -> Any:
    """GET the log-in form for its CSRF token, then POST; returns the response."""
    token = csrf_from(client.get("/login").data)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def post_form(client: Any, path: str, data: dict[str, str], page: str | None = None,
              **kw: Any) -> Any:
    """GET ``page`` (default ``path``) for a CSRF token, then POST ``data``."""
    token = csrf_from(client.get(page or path).data)
    return client.post(path, data={"csrf_token": token, **data}, **kw)
