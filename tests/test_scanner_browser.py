"""Mail scanners first, the person second: a link fetched by a scanner (GET and
HEAD, no cookies, as Safe Links or Proofpoint do) still works when the person
opens it in Chromium, for verification and for password reset."""
from __future__ import annotations

import urllib.request
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from tests.account_helpers import PASSWORD, mail_with_subject, post_form
from tests.conftest import link_from, login, new_email, register
from tests.harness.mail import text_body
from tests.harness.stack import Stack
# The live server and Chromium fixtures of the sign-up browser test.
from tests.test_browser_signup import browser, live_url  # noqa: F401
from webapp.extensions import db
from webapp.models import User

pytestmark = pytest.mark.browser


def scan(url: str) -> list[int]:
    """What a mail scanner does with a link: HEAD and GET without cookies,
    following redirects. Returns the status codes."""
    statuses = []
    for method in ("HEAD", "GET", "GET"):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as r:
                r.read()
                statuses.append(r.status)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
    return statuses


def test_verification_link_survives_a_scanner(browser, live_url: str,  # type: ignore[no-untyped-def]
                                              sqlite_stack: Stack) -> None:
    email = new_email("scanned")
    register(sqlite_stack.client(), email)
    path = urlsplit(link_from(text_body(sqlite_stack.smtp.wait_for(email)[0]))).path
    assert scan(live_url + path) == [200, 200, 200]
    with sqlite_stack.app.app_context():
        assert db.session.scalar(select(User.verified_at).where(User.email == email)) is None

    page = browser.new_page()
    page.goto(live_url + path)
    assert "cannot be used" not in page.content()
    page.get_by_role("button", name="Confirm my address").click()
    assert page.get_by_test_id("verified").is_visible()
    with sqlite_stack.app.app_context():
        assert db.session.scalar(select(User.verified_at).where(User.email == email)) is not None
    # The scanner comes back later, the person opens the link again: friendly, no error.
    assert scan(live_url + path) == [200, 200, 200]
    page.goto(live_url + path)
    assert page.get_by_test_id("already-verified").is_visible()
    page.close()


def test_reset_link_survives_a_scanner(browser, live_url: str,  # type: ignore[no-untyped-def]
                                       sqlite_stack: Stack) -> None:
    email = new_email("scanreset")
    register(sqlite_stack.client(), email)
    sqlite_stack.smtp.wait_for(email)
    post_form(sqlite_stack.client(), "/password/forgot", {"email": email})
    msg = mail_with_subject(sqlite_stack, email, "Reset your Onboard password")[0]
    path = urlsplit(link_from(text_body(msg), "/password/reset/")).path
    assert scan(live_url + path) == [200, 200, 200]

    page = browser.new_page()
    page.goto(live_url + path)
    new = "chosen after the scanner"
    page.get_by_label("New password", exact=True).fill(new)
    page.get_by_label("New password again").fill(new)
    page.get_by_role("button", name="Set the new password").click()
    page.wait_for_url("**/login")
    page.close()
    assert login(sqlite_stack.client(), email, PASSWORD).status_code == 400
    assert login(sqlite_stack.client(), email, new).status_code == 303
