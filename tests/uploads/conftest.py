"""Helpers for the upload tests: a verified, logged-in user on a Stack, and the
stores: every upload test runs on SQLite and PostgreSQL with a local folder,
and on PostgreSQL with the SeaweedFS S3 store (``postgresql-s3``)."""
from __future__ import annotations

import io
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import confirm_link, csrf_from, link_from, login, new_email, register
from tests.harness.mail import text_body
from tests.harness.stack import Stack
from tests.harness.wait import wait_until


@pytest.fixture(scope="session", params=["sqlite", "postgresql", "postgresql-s3"])
def stack(request: pytest.FixtureRequest, stack_factory) -> Stack:  # type: ignore[no-untyped-def]
    """The shared stack, once per database backend and store."""
    return stack_factory(request.param)


def stored_keys(stack: Stack, prefix: str) -> set[str]:
    """Keys in the stack's store (folder or bucket) under ``prefix``."""
    from webapp.storage import get_store

    with stack.app.app_context():
        return {o.key for o in get_store().list(prefix)}


def fetch(client: Any, url: str) -> tuple[int, bytes]:
    """GET a media URL as a browser would: an absolute one (the store, a CDN)
    over real HTTP without the site's cookies, a relative one from the web;
    redirects followed. Returns ``(status, body)``."""
    if urlsplit(url).scheme:
        resp = requests.get(url, timeout=10)
        return resp.status_code, resp.content
    resp = client.get(url, follow_redirects=False)
    if resp.status_code in (301, 302, 303, 307):
        return fetch(client, resp.headers["Location"])
    return resp.status_code, resp.data


def verified_client(stack: Stack, prefix: str = "up") -> tuple[Any, str]:
    """A test client logged in as a new, verified user: register, follow the link
    from the real mail, log in. Returns ``(client, email)``."""
    client = stack.client()
    email = new_email(prefix)
    assert register(client, email).status_code == 303
    link = link_from(text_body(stack.smtp.wait_for(email)[0]))
    assert confirm_link(client, link).status_code == 200
    assert login(client, email).status_code == 303
    return client, email


def upload(client: Any, data: bytes, filename: str = "photo.jpg",
           content_type: str = "image/jpeg", **headers: str) -> Any:
    """POST ``data`` as the ``photo`` field of /uploads with a fresh CSRF token."""
    token = csrf_from(client.get("/uploads").data)
    return client.post("/uploads", data={"photo": (io.BytesIO(data), filename, content_type),
                                         "csrf_token": token},
                       content_type="multipart/form-data", headers=headers)


def avatar_upload(client: Any, data: bytes, filename: str = "me.png") -> Any:
    """POST ``data`` as the ``photo`` field of /account/avatar with a fresh CSRF token."""
    token = csrf_from(client.get("/account").data)
    return client.post("/account/avatar", data={"photo": (io.BytesIO(data), filename),
                                                "csrf_token": token},
                       content_type="multipart/form-data")


def status(client: Any, upload_id: int) -> dict[str, Any]:
    resp = client.get(f"/uploads/{upload_id}", headers={"Accept": "application/json"})
    assert resp.status_code == 200, resp.data[:500]
    return resp.get_json()


def wait_finished(client: Any, upload_id: int, timeout: float = 60) -> dict[str, Any]:
    """Poll the JSON status until ``done`` or ``failed``; returns the document."""
    return wait_until(lambda: (d := status(client, upload_id))["status"] in ("done", "failed") and d,
                      timeout, interval=0.2, what=f"upload {upload_id} finished")


def upload_id_from(resp: Any) -> int:
    assert resp.status_code == 303, (resp.status_code, resp.data[:1000])
    path = urlsplit(resp.headers["Location"]).path
    assert path.startswith("/uploads/")
    return int(path.rsplit("/", 1)[1])
