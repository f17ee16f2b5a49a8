"""Sign-up → mail → verify → log in, over a real worker, RabbitMQ, SMTP and DB;
the form's own answers (bad input, wrong password) on the fast app."""
from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import func, select

from tests.conftest import confirm_link, csrf_from, link_from, login, new_email, register
from tests.harness.mail import html_body, text_body
from tests.harness.stack import Stack
from webapp.extensions import db
from webapp.models import OutboxMessage, User


def count_users(app, email: str) -> int:  # type: ignore[no-untyped-def]
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User).where(User.email == email))


def test_signup_verify_login(stack: Stack) -> None:
    client = stack.client()
    email = new_email("flow")
    resp = register(client, email.upper().replace("@EXAMPLE.COM", "@Example.com"))
    assert resp.status_code == 303
    assert resp.headers["Location"].endswith("/register/done")
    assert b"Check your inbox" in client.get(resp.headers["Location"]).data

    [msg] = stack.smtp.wait_for(email)
    assert msg["Subject"] == "Confirm your e-mail address for Onboard"
    assert msg["Message-ID"].startswith("<outbox-")
    text, html = text_body(msg), html_body(msg)
    link = link_from(text)
    assert link.startswith("http://127.0.0.1:8000/verify/")  # from BASE_URL
    assert link in html

    # Not verified yet: log-in refused with the reason and a resend form.
    resp = login(client, email)
    assert resp.status_code == 400
    assert b"not verified yet" in resp.data and b'id="resend-form"' in resp.data

    path = urlsplit(link).path
    resp = client.get(path)  # reading the link changes nothing: a confirm button
    assert resp.status_code == 200 and b"Confirm my address" in resp.data
    with stack.app.app_context():
        assert db.session.scalar(select(User.verified_at).where(User.email == email)) is None
    resp = confirm_link(client, link)
    assert resp.status_code == 200 and b"is confirmed" in resp.data
    with stack.app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        assert user is not None and user.verified_at is not None
        row = db.session.scalar(select(OutboxMessage).where(OutboxMessage.user_id == user.id))
        assert row.sent_at is not None and row.published_at is not None and row.attempts == 1

    # The same link again: a friendly "already confirmed, log in", not an error.
    resp = client.get(path)
    assert resp.status_code == 200 and b'data-testid="already-verified"' in resp.data

    resp = login(client, email)
    assert resp.status_code == 303
    home = client.get("/")
    assert email.encode() in home.data and b"You are logged in" in home.data

    # Log-out is a POST with CSRF.
    token = csrf_from(home.data)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert b"You are logged in" not in client.get("/").data


def test_forged_and_expired_links(stack: Stack) -> None:
    client = stack.client()
    resp = client.get("/verify/not-a-real-token")
    assert resp.status_code == 400 and b'data-reason="forged"' in resp.data

    email = new_email("expire")
    register(client, email)
    link = link_from(text_body(stack.smtp.wait_for(email)[0]))
    stack.app.config["VERIFY_TOKEN_MAX_AGE"] = -1  # every token is now too old
    try:
        resp = client.get(urlsplit(link).path)
    finally:
        stack.app.config["VERIFY_TOKEN_MAX_AGE"] = 24 * 3600
    assert resp.status_code == 400 and b'data-reason="expired"' in resp.data
    with stack.app.app_context():
        assert db.session.scalar(select(User.verified_at).where(User.email == email)) is None

    # A token signed for another purpose (or with another key) is refused.
    from itsdangerous import URLSafeTimedSerializer
    other = URLSafeTimedSerializer("another-key", salt="onboard.verify").dumps(
        {"uid": 1, "email": email, "jti": "x"})
    assert client.get(f"/verify/{other}").status_code == 400


def test_resend_same_answer_for_unknown_address(stack: Stack) -> None:
    client = stack.client()
    email = new_email("resend")
    register(client, email)
    stack.smtp.wait_for(email)
    token = csrf_from(client.get("/register/done").data)
    known = client.post("/verify/resend", data={"email": email, "csrf_token": token})
    unknown_addr = new_email("nobody")
    unknown = client.post("/verify/resend", data={"email": unknown_addr, "csrf_token": token})
    assert known.status_code == unknown.status_code == 200
    assert known.data.replace(email.encode(), b"") == unknown.data.replace(unknown_addr.encode(), b"")
    msgs = stack.smtp.wait_for(email, count=2)
    assert len({m["Message-ID"] for m in msgs}) == 2
    # Either link verifies the account; the second mail's link works.
    resp = confirm_link(client, link_from(text_body(msgs[1])))
    assert resp.status_code == 200 and b'data-testid="verified"' in resp.data
    assert stack.smtp.to(unknown_addr) == []


def test_bad_input_rerenders_and_writes_nothing(app, client) -> None:  # type: ignore[no-untyped-def]
    cases = [
        ({"email": ""}, b"Enter your e-mail address."),
        ({"email": "not-an-address"}, b"An email address must have an @-sign"),
        ({"password": "short", "password_confirm": "short"}, b"Use 8 to 128 characters."),
        ({"password_confirm": "something else"}, b"The passwords do not match."),
        ({"password": "", "password_confirm": ""}, b"Enter a password."),
    ]
    for change, message in cases:
        email = new_email("bad")
        data = {"email": email, "password": "correct horse battery",
                "password_confirm": "correct horse battery",
                "csrf_token": csrf_from(client.get("/register").data), **change}
        resp = client.post("/register", data=data)
        assert resp.status_code == 400, change
        assert message in resp.data, (change, resp.data[:2000])
        assert b'<form method="post" action="/register"' in resp.data
        assert count_users(app, email) == 0

    # Missing CSRF token.
    email = new_email("nocsrf")
    resp = client.post("/register", data={"email": email, "password": "correct horse battery",
                                          "password_confirm": "correct horse battery"})
    assert resp.status_code == 400 and b"form has expired" in resp.data
    assert count_users(app, email) == 0

    # Duplicate address: re-rendered with a message, still one user, one mail.
    email = new_email("dup")
    assert register(client, email).status_code == 303
    resp = register(client, email.replace("dup", "DUP"))
    assert resp.status_code == 400 and b"exists already" in resp.data
    assert count_users(app, email) == 1
    with app.app_context():
        n = db.session.scalar(select(func.count()).select_from(OutboxMessage)
                              .where(OutboxMessage.to_address == email))
    assert n == 1


def test_wrong_password_and_unknown_address_same_answer(client) -> None:  # type: ignore[no-untyped-def]
    email = new_email("pw")
    register(client, email)
    wrong = login(client, email, "wrong password!")
    unknown = login(client, new_email("ghost"), "wrong password!")
    assert wrong.status_code == unknown.status_code == 400
    assert b"Wrong e-mail address or password." in wrong.data
    assert b"Wrong e-mail address or password." in unknown.data
