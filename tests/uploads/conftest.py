"""Helpers for the upload tests: a verified, logged-in user on a Stack."""
from __future__ import annotations

import io
from typing import Any
from urllib.parse import urlsplit

from tests.conftest import confirm_link, csrf_from, link_from, login, new_email, register
from tests.stack import Stack, text_body, wait_until


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
