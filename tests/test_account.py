"""Password reset and change, e-mail change by code: over the real worker,
RabbitMQ, SMTP sink, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select, update

from tests.account_helpers import (PASSWORD, age_mails, code_from, get_user, mail_with_subject,
                                   outbox_count, post_form, verified_user, wait_idle)
from tests.conftest import csrf_from, link_from, login, new_email
from tests.harness.mail import text_body
from tests.harness.stack import Stack
from webapp.extensions import db
from webapp.models import EmailChangeRequest, OutboxMessage, User, utcnow

RESET_SUBJECT = "Reset your Onboard password"
CODE_SUBJECT = "Your Onboard confirmation code"
NEW_PASSWORD = "a brand new passphrase"


def forgot(client, email: str):  # type: ignore[no-untyped-def]
    return post_form(client, "/password/forgot", {"email": email})


def reset_path(stack: Stack, email: str, count: int = 1) -> str:
    msgs = mail_with_subject(stack, email, RESET_SUBJECT, count)
    link = link_from(text_body(msgs[count - 1]), "/password/reset/")
    assert link.startswith("http://127.0.0.1:8000/password/reset/")  # BASE_URL, not Host
    return urlsplit(link).path


def test_forgot_and_reset_ends_other_sessions(stack: Stack) -> None:
    email = verified_user(stack, "reset")
    other = stack.client()  # logged in before the reset: must be out after it
    assert login(other, email).status_code == 303
    assert other.get("/account").status_code == 200

    client = stack.client()
    known = forgot(client, email)
    unknown_addr = new_email("ghost")
    unknown = forgot(client, unknown_addr)
    assert known.status_code == unknown.status_code == 200
    assert known.data.replace(email.encode(), b"") == unknown.data.replace(unknown_addr.encode(), b"")

    path = reset_path(stack, email)
    page = client.get(path)
    assert page.status_code == 200 and b'id="reset-form"' in page.data
    # Bad input re-renders with a message and changes nothing.
    resp = client.post(path, data={"csrf_token": csrf_from(page.data), "password": NEW_PASSWORD,
                                   "password_confirm": "something else"})
    assert resp.status_code == 400 and b"The passwords do not match." in resp.data
    assert other.get("/account").status_code == 200

    resp = client.post(path, data={"csrf_token": csrf_from(page.data), "password": NEW_PASSWORD,
                                   "password_confirm": NEW_PASSWORD})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/login")
    # The other session is over (its epoch is old).
    resp = other.get("/account")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    assert login(stack.client(), email, PASSWORD).status_code == 400
    fresh = stack.client()
    assert login(fresh, email, NEW_PASSWORD).status_code == 303
    assert fresh.get("/account").status_code == 200
    mail_with_subject(stack, email, "Your Onboard password was changed")

    # The link works once.
    resp = client.get(path)
    assert resp.status_code == 400 and b'data-reason="used"' in resp.data
    assert b'id="forgot-form"' in resp.data
    assert stack.smtp.to(unknown_addr) == []
    assert outbox_count(stack, "password_reset", unknown_addr) == 0


def test_reset_link_expired_forged_and_superseded(stack: Stack) -> None:
    email = verified_user(stack, "resetbad")
    client = stack.client()
    # Forged: garbage, another key, another purpose's salt.
    resp = client.get("/password/reset/not-a-token")
    assert resp.status_code == 400 and b'data-reason="forged"' in resp.data
    user = get_user(stack, email=email)
    assert user is not None
    for key, salt in (("another-key", "onboard.password_reset"),
                      (stack.env["SECRET_KEY"], "onboard.verify")):
        other = URLSafeTimedSerializer(key, salt=salt).dumps(
            {"uid": user.id, "email": email, "epoch": 0, "jti": "x"})
        resp = client.get(f"/password/reset/{other}")
        assert resp.status_code == 400 and b'data-reason="forged"' in resp.data

    forgot(client, email)
    first = reset_path(stack, email, 1)
    age_mails(stack, "password_reset", email, 120)  # past the one-a-minute throttle
    forgot(client, email)
    second = reset_path(stack, email, 2)
    mails_before = outbox_count(stack, "password_reset", email)

    stack.app.config["PASSWORD_RESET_MAX_AGE"] = -1  # every link is now too old
    try:
        resp = client.get(first)
        assert resp.status_code == 400 and b'data-reason="expired"' in resp.data
        resp = client.post(first, data={"csrf_token": csrf_from(resp.data),
                                         "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
        assert resp.status_code == 400 and b'data-reason="expired"' in resp.data
    finally:
        stack.app.config["PASSWORD_RESET_MAX_AGE"] = 3600
    # Following an expired link never sends mail by itself.
    assert outbox_count(stack, "password_reset", email) == mails_before
    assert get_user(stack, email=email).password_hash == user.password_hash  # type: ignore[union-attr]

    # Using the second link kills the first one too (the epoch moved on).
    page = client.get(second)
    resp = client.post(second, data={"csrf_token": csrf_from(page.data), "password": NEW_PASSWORD,
                                     "password_confirm": NEW_PASSWORD})
    assert resp.status_code == 303
    resp = client.get(first)
    assert resp.status_code == 400 and b'data-reason="used"' in resp.data


def test_reset_and_resend_mails_are_throttled_per_account(stack: Stack) -> None:
    email = verified_user(stack, "throttle")
    client = stack.client()
    answers = {forgot(client, email).data for _ in range(3)}
    assert len(answers) == 1  # same answer whether or not a mail went out
    wait_idle(stack)  # the worker decides
    assert outbox_count(stack, "password_reset", email) == 1
    # Five a day: pretend the earlier mails were sent long ago (but today).
    with stack.app.app_context():
        uid = db.session.scalar(select(User.id).where(User.email == email))
        for _ in range(4):
            db.session.add(OutboxMessage(kind="password_reset", to_address=email, user_id=uid,
                                         created_at=utcnow() - timedelta(hours=2),
                                         sent_at=utcnow(), published_at=utcnow()))
        db.session.execute(update(OutboxMessage).where(OutboxMessage.user_id == uid)
                           .values(created_at=utcnow() - timedelta(hours=2)))
        db.session.commit()
    forgot(client, email)
    wait_idle(stack)
    assert outbox_count(stack, "password_reset", email) == 5

    # Verification resend: the sign-up mail does not count, then one a minute.
    from tests.conftest import register
    other = new_email("resend")
    register(client, other)
    token = csrf_from(client.get("/register/done").data)
    for _ in range(3):
        assert client.post("/verify/resend", data={"email": other, "csrf_token": token}).status_code == 200
    wait_idle(stack)
    assert outbox_count(stack, "verify", other) == 2
    assert len(stack.smtp.wait_for(other, count=2)) == 2


def test_change_password_keeps_this_session_ends_others(stack: Stack) -> None:
    email = verified_user(stack, "chpw")
    me, other = stack.client(), stack.client()
    assert login(me, email).status_code == 303
    assert login(other, email).status_code == 303
    data = {"action": "change_password", "current_password": "wrong password",
            "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}
    resp = post_form(me, "/account", data)
    assert resp.status_code == 400 and b"The current password is not right." in resp.data
    assert other.get("/account").status_code == 200

    resp = post_form(me, "/account", {**data, "current_password": PASSWORD})
    assert resp.status_code == 303
    assert me.get("/account").status_code == 200          # re-logged with the new epoch
    assert other.get("/account").status_code == 302       # logged out
    assert login(stack.client(), email, NEW_PASSWORD).status_code == 303
    mail_with_subject(stack, email, "Your Onboard password was changed")


def change_email(client, new: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    return post_form(client, "/account", {"action": "change_email", "new_email": new,
                                          "current_password": password})


def confirm(client, code: str):  # type: ignore[no-untyped-def]
    return post_form(client, "/account", {"action": "confirm_email", "code": code})


def test_change_email_with_code(stack: Stack) -> None:
    email = verified_user(stack, "chmail")
    client = stack.client()
    login(client, email)
    new = new_email("moved")
    resp = change_email(client, new, "wrong password")
    assert resp.status_code == 400 and b"The current password is not right." in resp.data
    assert outbox_count(stack, "email_change_code", new) == 0

    assert change_email(client, new).status_code == 303
    page = client.get("/account")
    assert b'data-testid="pending-email"' in page.data and new.encode() in page.data
    [msg] = mail_with_subject(stack, new, CODE_SUBJECT)
    code = code_from(msg)
    # Only a keyed hash of the code is stored, nowhere the code itself.
    with stack.app.app_context():
        req = db.session.scalar(select(EmailChangeRequest).where(EmailChangeRequest.new_email == new))
        assert req is not None and code not in (req.code_hash, req.code_salt)
        rows = db.session.scalars(select(OutboxMessage).where(OutboxMessage.to_address == new)).all()
        assert all(code not in str(r.context) for r in rows)
    assert get_user(stack, email=email) is not None  # not changed before the code

    wrong = "000000" if code != "000000" else "111111"
    resp = confirm(client, wrong)
    assert resp.status_code == 400 and b"4 tries left" in resp.data
    resp = confirm(client, code)
    assert resp.status_code == 303
    assert get_user(stack, email=email) is None and get_user(stack, email=new) is not None
    notice = mail_with_subject(stack, email, "Your Onboard e-mail address was changed")
    assert new in text_body(notice[0])
    assert b'data-testid="account-email">' + new.encode() in client.get("/account").data
    assert login(stack.client(), new).status_code == 303
    # The code works once.
    assert confirm(client, code).status_code == 400


def test_email_code_lockout_and_expiry(stack: Stack) -> None:
    email = verified_user(stack, "lock")
    client = stack.client()
    login(client, email)
    new = new_email("lock-new")
    change_email(client, new)
    code = code_from(mail_with_subject(stack, new, CODE_SUBJECT)[0])
    wrong = "000000" if code != "000000" else "111111"
    for left in (4, 3, 2, 1):
        resp = confirm(client, wrong)
        assert resp.status_code == 400 and f"{left} tries left".encode() in resp.data
    resp = confirm(client, wrong)
    assert resp.status_code == 400 and b"Too many wrong codes" in resp.data
    resp = confirm(client, code)  # the right code, too late
    assert resp.status_code == 400 and b"Too many wrong codes" in resp.data
    assert get_user(stack, email=email) is not None

    # A new request (a minute later for the throttle) and an expired code.
    stack.app.config["MAIL_THROTTLE_INTERVAL"] = 0
    try:
        assert change_email(client, new).status_code == 303
    finally:
        stack.app.config["MAIL_THROTTLE_INTERVAL"] = 60
    code = code_from(mail_with_subject(stack, new, CODE_SUBJECT, 2)[1])
    with stack.app.app_context():
        db.session.execute(update(EmailChangeRequest).where(EmailChangeRequest.new_email == new)
                           .values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    resp = confirm(client, code)
    assert resp.status_code == 400 and b"This code has expired" in resp.data
    assert get_user(stack, email=email) is not None


def test_email_change_to_taken_address_reveals_nothing(stack: Stack) -> None:
    email = verified_user(stack, "taker")
    taken = verified_user(stack, "taken")
    client = stack.client()
    login(client, email)
    free = new_email("free")
    resp_taken = change_email(client, taken)
    follow_taken = client.get("/account").data
    stack.app.config["MAIL_THROTTLE_INTERVAL"] = 0
    try:
        resp_free = change_email(client, free)
    finally:
        stack.app.config["MAIL_THROTTLE_INTERVAL"] = 60
    follow_free = client.get("/account").data
    assert resp_taken.status_code == resp_free.status_code == 303
    assert (follow_taken.replace(taken.encode(), b"").replace(csrf_from(follow_taken).encode(), b"")
            == follow_free.replace(free.encode(), b"").replace(csrf_from(follow_free).encode(), b""))

    # Back to the taken address: the code is mailed, the change refused at confirm.
    stack.app.config["MAIL_THROTTLE_INTERVAL"] = 0
    try:
        change_email(client, taken)
    finally:
        stack.app.config["MAIL_THROTTLE_INTERVAL"] = 60
    code = code_from(mail_with_subject(stack, taken, CODE_SUBJECT, 2)[1])
    resp = confirm(client, code)
    assert resp.status_code == 400 and b"belongs to another account" in resp.data
    assert get_user(stack, email=email) is not None and get_user(stack, email=taken) is not None
