"""Fixtures over real parts (see ``tests/stack.py``).

``stack`` is parametrized over SQLite and PostgreSQL: each backend gets one
stack per session (vhost, SMTP sink, database, worker). Tests keep out of each
other's way by using fresh e-mail addresses (:func:`new_email`), not by wiping
tables.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack import Stack

_STACKS: dict[str, Stack] = {}


@pytest.fixture(scope="session")
def stack_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Returns ``get(backend)``: the session's shared stack for ``"sqlite"`` or
    ``"postgresql"``, started on first use and stopped at session end."""

    def get(backend: str) -> Stack:
        if backend not in _STACKS:
            _STACKS[backend] = Stack(backend, tmp_path_factory.mktemp(backend)).start()
        return _STACKS[backend]

    yield get
    for s in list(_STACKS.values()):
        s.stop()
    _STACKS.clear()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def stack(request: pytest.FixtureRequest, stack_factory) -> Stack:  # type: ignore[no-untyped-def]
    """The shared stack, once per database backend."""
    return stack_factory(request.param)


@pytest.fixture(scope="session")
def sqlite_stack(stack_factory) -> Stack:  # type: ignore[no-untyped-def]
    """The shared SQLite stack, for tests that need one backend only."""
    return stack_factory("sqlite")


@pytest.fixture
def client(stack: Stack):  # type: ignore[no-untyped-def]
    return stack.client()


def new_email(prefix: str = "user") -> str:
    """A fresh address at example.com (email-validator refuses .test/.localhost)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def csrf_from(html: str | bytes) -> str:
    """The first CSRF token in a page."""
    text = html.decode() if isinstance(html, bytes) else html
    m = CSRF_RE.search(text)
    assert m, "no csrf_token in page"
    return m.group(1) or m.group(2)


def link_from(text: str, path: str = "/verify/") -> str:
    """The first URL in ``text`` containing ``path``."""
    m = re.search(r"https?://[^\s\"<>]+" + re.escape(path) + r"[^\s\"<>]+", text)
    assert m, f"no link with {path} in mail"
    return m.group(0)


def confirm_link(client, link: str):  # type: ignore[no-untyped-def]
    """Follow a mailed verification link as a person does: GET the page (which
    changes nothing), then press its confirm button (a POST with the page's CSRF
    token). Returns the POST's response."""
    from urllib.parse import urlsplit

    path = urlsplit(link).path
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    return client.post(path, data={"csrf_token": csrf_from(page.data)})


def register(client, email: str, password: str = "correct horse battery",  # type: ignore[no-untyped-def]
             confirm: str | None = None, **extra: str):
    """GET the form for its CSRF token, then POST a sign-up; returns the response."""
    token = csrf_from(client.get("/register").data)
    data = {"email": email, "password": password,
            "password_confirm": password if confirm is None else confirm,
            "csrf_token": token, **extra}
    return client.post("/register", data=data)


def login(client, email: str, password: str = "correct horse battery"):  # type: ignore[no-untyped-def]
    token = csrf_from(client.get("/login").data)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


@pytest.fixture(scope="session")
def root() -> Path:
    return Path(__file__).resolve().parent.parent
