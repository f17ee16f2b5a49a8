"""The 6-digit code that comes with verification and reset links, typed on the
real pages: with and without the sign-up session, single use, the same answer
for any address, and the wrong-code limit under 20 concurrent tries (real HTTP,
real worker, SQLite and PostgreSQL)."""
from __future__ import annotations

import requests
from sqlalchemy import select

from tests.account_helpers import PASSWORD, code_from, mail_with_subject, post_form
from tests.conftest import csrf_from, login, new_email, register
from tests.harness.browser import serve_http
from tests.harness.stack import Stack
from tests.test_account_races import at_once
from webapp.extensions import db
from webapp.models import AccountCode, User

VERIFY_SUBJECT = "Confirm your e-mail address for Onboard"
RESET_SUBJECT = "Reset your Onboard password"


def verified_at(stack: Stack, email: str) -> object:
    with stack.app.app_context():
        return db.session.scalar(select(User.verified_at).where(User.email == email))


def wrong_code(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def test_code_on_check_inbox_verifies_with_the_session(stack: Stack) -> None:
    client = stack.client()
    email = new_email("code")
    register(client, email)
    code = code_from(mail_with_subject(stack, email, VERIFY_SUBJECT)[0])
    page = client.get("/register/done").data
    assert b'name="code"' in page and b'id="code-email"' not in page  # the session knows the account
    resp = post_form(client, "/verify/code", {"code": wrong_code(code)}, page="/register/done")
    assert resp.status_code == 400 and b"That code is not right" in resp.data
    assert verified_at(stack, email) is None
    resp = post_form(client, "/verify/code", {"code": f"{code[:3]} {code[3:]}"},
                     page="/register/done")
    assert resp.status_code == 200 and b'data-testid="verified"' in resp.data
    assert verified_at(stack, email) is not None
    assert login(client, email).status_code == 303


def test_code_on_another_device_needs_the_address_and_works_once(stack: Stack) -> None:
    email = new_email("phone")
    register(stack.client(), email)
    code = code_from(mail_with_subject(stack, email, VERIFY_SUBJECT)[0])
    laptop = stack.client()
    page = laptop.get("/register/done").data
    assert b'id="code-email"' in page  # no session: the form asks for the address
    unknown = post_form(laptop, "/verify/code", {"email": new_email("nobody"), "code": code},
                        page="/register/done")
    wrong = post_form(laptop, "/verify/code", {"email": email, "code": wrong_code(code)},
                      page="/register/done")
    # One answer for an unknown address and a wrong code (no enumeration).
    assert unknown.status_code == wrong.status_code == 400
    assert (unknown.data.count(b"That code is not right") == wrong.data.count(b"That code is not right")
            == 1)
    resp = post_form(laptop, "/verify/code", {"email": email, "code": code}, page="/register/done")
    assert resp.status_code == 200 and b'data-testid="verified"' in resp.data
    again = post_form(stack.client(), "/verify/code", {"email": email, "code": code},
                      page="/register/done")
    assert again.status_code == 400  # single use
    with stack.app.app_context():
        uid = db.session.scalar(select(User.id).where(User.email == email))
        assert db.session.scalar(select(AccountCode).where(AccountCode.user_id == uid)) is None


def test_reset_code_leads_to_the_new_password_form(stack: Stack) -> None:
    email = new_email("resetcode")
    register(stack.client(), email)
    mail_with_subject(stack, email, VERIFY_SUBJECT)
    client = stack.client()
    sent = post_form(client, "/password/forgot", {"email": email})
    assert sent.status_code == 200 and b'id="reset-code-form"' in sent.data
    code = code_from(mail_with_subject(stack, email, RESET_SUBJECT)[0])
    token = csrf_from(sent.data)
    bad = client.post("/password/code", data={"email": email, "code": wrong_code(code),
                                               "csrf_token": token})
    assert bad.status_code == 400 and b"That code is not right" in bad.data
    resp = client.post("/password/code", data={"email": email, "code": code, "csrf_token": token})
    assert resp.status_code == 303 and "/password/reset/" in resp.headers["Location"]
    form = client.get(resp.headers["Location"])
    assert form.status_code == 200 and b'id="reset-form"' in form.data
    new = "a brand new password"
    done = client.post(resp.headers["Location"], data={
        "password": new, "password_confirm": new, "csrf_token": csrf_from(form.data)})
    assert done.status_code == 303 and done.headers["Location"].endswith("/login")
    assert login(stack.client(), email, new).status_code == 303  # the reset verified it too
    # The code was used: a second entry fails.
    again = client.post("/password/code", data={"email": email, "code": code, "csrf_token": token})
    assert again.status_code == 400


def test_wrong_code_limit_holds_under_20_concurrent_tries(stack: Stack) -> None:
    email = new_email("race-verify")
    register(stack.client(), email)
    code = code_from(mail_with_subject(stack, email, VERIFY_SUBJECT)[0])
    limit = stack.app.config["ACCOUNT_CODE_MAX_ATTEMPTS"]
    with serve_http(stack.app) as base:
        s = requests.Session()
        token = csrf_from(s.get(base + "/register/done", timeout=30).text)
        cookies = s.cookies.get_dict()

        def guess(_i: int) -> requests.Response:
            return requests.post(base + "/verify/code", cookies=cookies, timeout=60,
                                 data={"email": email, "code": wrong_code(code),
                                       "csrf_token": token})

        answers = at_once(20, guess)
        statuses = [a.status_code if isinstance(a, requests.Response) else repr(a) for a in answers]
        assert statuses == [400] * 20, statuses
        with stack.app.app_context():
            uid = db.session.scalar(select(User.id).where(User.email == email))
            attempts = db.session.scalar(select(AccountCode.attempts)
                                         .where(AccountCode.user_id == uid))
        print(f"{stack.backend}: 20 concurrent wrong codes → attempts counted {attempts} "
              f"(limit {limit})")
        assert attempts == limit
        # The right code, now: used up; a new mail brings a new code that works.
        right = requests.post(base + "/verify/code", cookies=cookies, timeout=60,
                              data={"email": email, "code": code, "csrf_token": token})
        assert right.status_code == 400 and verified_at(stack, email) is None
        resend = requests.post(base + "/verify/resend", cookies=cookies, timeout=60,
                               data={"email": email, "csrf_token": token})
        assert resend.status_code == 200
        fresh = code_from(mail_with_subject(stack, email, VERIFY_SUBJECT, count=2)[-1])
        ok = requests.post(base + "/verify/code", cookies=cookies, timeout=60,
                           data={"email": email, "code": fresh, "csrf_token": token})
        assert ok.status_code == 200 and verified_at(stack, email) is not None
