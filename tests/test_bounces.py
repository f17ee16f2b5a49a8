"""Bounces people can see: a 550 from the real SMTP sink, and a delivery status
notification posted later to ``POST /hooks/bounce`` (or given to ``flask
bounce``), on SQLite and PostgreSQL with the real worker and RabbitMQ."""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select

from tests.account_helpers import PASSWORD, post_form
from tests.bounce_samples import dsn
from tests.conftest import confirm_link, csrf_from, link_from, login, new_email, register
from tests.harness.mail import text_body
from tests.harness.stack import Stack
from tests.harness.wait import wait_until
from webapp.bounces import services as bounces
from webapp.extensions import db
from webapp.models import MailBounce, OutboxMessage, User

SECRET = "test-bounce-hook-secret-0123456789"


def latest_row(stack: Stack, address: str) -> OutboxMessage | None:
    with stack.app.app_context():
        row = db.session.scalar(select(OutboxMessage).where(OutboxMessage.to_address == address)
                                .order_by(OutboxMessage.id.desc()).limit(1))
        if row is not None:
            db.session.expunge(row)
        return row


def wait_row(stack: Stack, address: str, done: str) -> OutboxMessage:
    """Wait until the latest outbox row to ``address`` has ``done`` (``sent_at``, ``failed_at``)."""
    return wait_until(lambda: (r := latest_row(stack, address)) and getattr(r, done) and r,
                      30, what=f"{done} on the mail to {address}")


@contextmanager
def smtp_mode(stack: Stack, mode: str) -> Iterator[None]:
    stack.smtp.handler.mode = mode
    try:
        yield
    finally:
        stack.smtp.handler.mode = "ok"


@contextmanager
def hook_secret(stack: Stack, secret: str) -> Iterator[None]:
    stack.app.config["BOUNCE_HOOK_SECRET"] = secret
    try:
        yield
    finally:
        stack.app.config["BOUNCE_HOOK_SECRET"] = ""


def test_550_is_shown_to_the_sign_up_and_at_log_in_and_a_corrected_address_verifies(
        stack: Stack) -> None:
    client = stack.client()
    wrong = new_email("typo")
    with smtp_mode(stack, "reject"):
        assert register(client, wrong).status_code == 303
        row = wait_row(stack, wrong, "failed_at")
    assert row.sent_at is None and "550" in row.last_error

    page = client.get("/register/done").data.decode()
    assert 'data-testid="mail-problem"' in page, page
    assert f"The mail to <strong>{wrong}</strong> could not be delivered" in page
    assert "there is no mailbox with that address" in page
    assert 'id="address-form"' in page
    with stack.app.app_context():
        assert bounces.suppressed(wrong) is not None  # 5.1.1 is a hard bounce

    # No enumeration: a browser without the sign-up session sees nothing of it,
    # nor does a log-in with the wrong password.
    assert b"mail-problem" not in stack.client().get("/register/done").data
    other = stack.client()
    assert b"mail-problem" not in login(other, wrong, "not the password").data
    # The holder of the password sees it at log-in.
    resp = login(other, wrong)
    assert resp.status_code == 400 and b'data-testid="mail-problem"' in resp.data
    assert b"there is no mailbox with that address" in resp.data

    # Correcting the address needs the password; a wrong one changes nothing.
    resp = post_form(other, "/register/address", {"new_email": new_email("x"), "password": "nope"},
                     page="/register/done")
    assert resp.status_code == 400 and b"The password is not right." in resp.data
    right = new_email("fixed")
    resp = post_form(other, "/register/address", {"new_email": right, "password": PASSWORD},
                     page="/register/done")
    assert resp.status_code == 303, resp.data
    [msg] = stack.smtp.wait_for(right)
    assert b"mail-problem" not in other.get("/register/done").data  # the new mail went out
    assert confirm_link(other, link_from(text_body(msg))).status_code == 200
    with stack.app.app_context():
        user = db.session.scalar(select(User).where(User.email == right))
        assert user is not None and user.is_verified
        assert db.session.scalar(select(User).where(User.email == wrong)) is None
    assert login(stack.client(), right).status_code == 303


def test_try_again_lifts_the_suppression_and_sends(stack: Stack) -> None:
    client = stack.client()
    email = new_email("again")
    with smtp_mode(stack, "reject"):
        register(client, email)
        wait_row(stack, email, "failed_at")
    resp = post_form(client, "/register/address", {"new_email": email, "password": PASSWORD},
                     page="/register/done")
    assert resp.status_code == 303
    stack.smtp.wait_for(email)
    with stack.app.app_context():
        assert bounces.suppressed(email) is None


def test_dsn_to_the_hook_marks_the_row_bounced_and_suppresses_the_next_send(stack: Stack) -> None:
    client = stack.client()
    email = new_email("dsn")
    assert register(client, email).status_code == 303
    stack.smtp.wait_for(email)
    row = wait_row(stack, email, "sent_at")
    report = dsn(email, row.message_id)

    # The hook is off without a secret, and refuses a wrong one; nothing recorded.
    assert client.post("/hooks/bounce", data=report).status_code == 404
    with hook_secret(stack, SECRET):
        for auth in ("", "Bearer wrong-secret", f"Basic {SECRET}"):
            resp = client.post("/hooks/bounce", data=report, headers={"Authorization": auth},
                               content_type="message/rfc822")
            assert resp.status_code == 401
        assert latest_row(stack, email).bounced_at is None
        # Unreadable input: a clear 400, nothing recorded.
        resp = client.post("/hooks/bounce", data=b"Subject: hi\n\nnot a report",
                           headers={"Authorization": f"Bearer {SECRET}"})
        assert resp.status_code == 400
        assert "delivery status" in resp.get_json()["error"]["message"]
        resp = client.post("/hooks/bounce", data=report, content_type="message/rfc822",
                           headers={"Authorization": f"Bearer {SECRET}"})
        assert resp.status_code == 200, resp.data
        assert resp.get_json()["outcomes"] == [
            {"recipient": email, "status": "5.1.1", "outcome": "bounced"}]
        again = client.post("/hooks/bounce", data=report, content_type="message/rfc822",
                            headers={"Authorization": f"Bearer {SECRET}"})
        assert again.get_json()["outcomes"][0]["outcome"] == "duplicate"
    bounced = latest_row(stack, email)
    assert bounced.id == row.id and bounced.bounced_at is not None
    page = client.get("/register/done").data.decode()
    assert "could not be delivered" in page and "there is no mailbox with that address" in page

    # The next mail to the address is not sent: the row fails as suppressed.
    token = csrf_from(client.get("/register/done").data)
    assert client.post("/verify/resend", data={"email": email, "csrf_token": token}).status_code == 200
    failed = wait_until(lambda: (r := latest_row(stack, email)) and r.id != row.id and r.failed_at
                        and r, 30, what="the suppressed resend")
    assert "suppression list" in failed.last_error and failed.attempts == 0
    assert len(stack.smtp.to(email)) == 1


def test_json_report_and_operator_command(stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = stack.client()
    email, other = new_email("json"), new_email("cli")
    register(client, email)
    register(stack.client(), other)
    row = wait_row(stack, email, "sent_at")
    other_row = wait_row(stack, other, "sent_at")
    with hook_secret(stack, SECRET):
        resp = client.post("/hooks/bounce", headers={"Authorization": f"Bearer {SECRET}"},
                           json={"message_id": row.message_id, "recipient": email,
                                 "status": "5.2.2"})
        assert resp.get_json()["outcomes"][0]["outcome"] == "bounced"
    with stack.app.app_context():
        full = db.session.scalar(select(MailBounce).where(MailBounce.outbox_id == row.id))
        assert (full.status, full.hard, full.source) == ("5.2.2", False, "json")
        assert bounces.suppressed(email) is None  # a full mailbox is shown, not suppressed

    path = tmp_path / "bounce.eml"
    path.write_bytes(dsn(other, other_row.message_id))
    runner = stack.app.test_cli_runner()
    result = runner.invoke(args=["bounce", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{other} 5.1.1 bounced"
    assert latest_row(stack, other).bounced_at is not None
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"recipient": other}))
    result = runner.invoke(args=["bounce", "--json", str(bad)])
    assert result.exit_code == 1 and "status" in result.output
