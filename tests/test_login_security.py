"""Log-in redirects and log-out: pure web behaviour, on the fast app (its
database built by the real migrations)."""
from __future__ import annotations

import pytest

from tests.harness.fastapp import add_verified_user
from tests.harness.forms import PASSWORD, csrf_from, new_email
from webapp.auth.redirects import local_path

# Targets that leave the site to a browser: a tab/LF/CR is removed by browsers
# (WHATWG URL), a backslash is read as a slash, and schemes or hosts go elsewhere.
LEAVING = ["/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "\t//evil.example",
           "//evil.example", "///evil.example", "/\\evil.example", "\\\\evil.example",
           "/\t\\evil.example", "https://evil.example", "http:evil.example", "https:/evil.example",
           "javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,x", " //evil.example",
           "evil.example", "/\x00/evil.example", "/\x7f"]


@pytest.mark.parametrize("target", LEAVING)
def test_local_path_refuses_targets_off_site(target: str) -> None:
    assert local_path(target) is None


@pytest.mark.parametrize("target, kept", [
    ("/account", "/account"),
    ("/uploads/3?x=1#top", "/uploads/3?x=1#top"),
    ("/%2F%2Fevil.example", "/%2F%2Fevil.example"),  # a path here: escapes are not decoded
    ("/acc\tount", "/account"),
    ("", None), (None, None),
])
def test_local_path_keeps_paths_on_site(target: str | None, kept: str | None) -> None:
    assert local_path(target) == kept


def _login(client, email: str, query: str):  # type: ignore[no-untyped-def]
    token = csrf_from(client.get("/login").data)
    return client.post("/login" + query, data={"email": email, "password": PASSWORD,
                                               "csrf_token": token})


@pytest.mark.parametrize("query", [
    "?next=/%09/evil.example", "?next=/%0A/evil.example", "?next=/%0D%0A/evil.example",
    "?next=%2F%2Fevil.example", "?next=/%5Cevil.example", "?next=%5C%5Cevil.example",
    "?next=https://evil.example", "?next=https:evil.example", "?next=javascript:alert(1)",
    "?next=/%0D%0ASet-Cookie:%20x=1",
])
def test_login_never_redirects_off_site_nor_fails(app, client, query: str) -> None:  # type: ignore[no-untyped-def]
    """Every bad ``next`` logs in and lands on a local page: never a 500, never
    a ``Location`` another host could be read from, never a header line break."""
    email = new_email("next")
    add_verified_user(app, email, PASSWORD)
    resp = _login(client, email, query)
    assert resp.status_code == 303, resp.data[:500]
    location = resp.headers["Location"]
    assert location.startswith("/") and not location.startswith("//"), location
    assert not any(c in location for c in "\t\r\n\\"), location
    assert not any(c.startswith("x=") for c in resp.headers.getlist("Set-Cookie"))
    assert client.get("/account").status_code == 200


def test_login_follows_a_local_next(app, client) -> None:  # type: ignore[no-untyped-def]
    email = new_email("nextok")
    add_verified_user(app, email, PASSWORD)
    resp = client.get("/account")
    assert resp.status_code == 302 and "next=" in resp.headers["Location"]
    resp = _login(client, email, "?next=/account")
    assert resp.status_code == 303 and resp.headers["Location"] == "/account"


def test_logout_ends_a_copied_session(app, client) -> None:  # type: ignore[no-untyped-def]
    email = new_email("logout")
    add_verified_user(app, email, PASSWORD)
    assert _login(client, email, "").status_code == 303
    assert client.get("/account").status_code == 200
    with client.session_transaction() as sess:
        saved = dict(sess)  # a copy of the cookie, taken before log-out
    other = app.test_client()  # another device, logged in too
    assert _login(other, email, "").status_code == 303

    token = csrf_from(client.get("/").data)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/account").status_code == 302
    with client.session_transaction() as sess:
        sess.clear()
        sess.update(saved)
    resp = client.get("/account")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    assert other.get("/account").status_code == 302  # log-out ends every session
    fresh = app.test_client()
    assert _login(fresh, email, "").status_code == 303  # logging in again works
    assert fresh.get("/account").status_code == 200
