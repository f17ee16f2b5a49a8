"""The sign-up captcha in headless Chromium under the real CSP: the picture
loads, the refresh button (static/captcha.js) swaps it, and no CSP violation is
reported on the sign-up and account pages."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.account_helpers import PASSWORD, own_app
from tests.conftest import new_email
from tests.harness.browser import launch_chromium, serve_http
from tests.harness.stack import Stack
from tests.harness.wait import wait_until

pytestmark = pytest.mark.browser


@pytest.fixture
def live(sqlite_stack: Stack) -> Iterator[tuple[str, Any]]:
    with own_app(sqlite_stack, REGISTRATION_CAPTCHA=True) as app, serve_http(app) as url:
        yield url, app


def console_errors(page: Any) -> list[str]:
    """A list that fills with the page's console errors: CSP violations and script
    errors show there (the favicon's 404 is not ours to judge)."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error"
            and not (m.location or {}).get("url", "").endswith("/favicon.ico") else None)
    return problems


def test_captcha_refresh_in_browser(live: tuple[str, Any]) -> None:
    from playwright.sync_api import expect, sync_playwright

    from webapp.auth import captcha

    base, app = live
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            problems = console_errors(page)
            page.goto(base + "/register")
            img = page.locator("#captcha-image")
            first = img.get_attribute("src")
            # Polled from Python: page-side wait_for_function would need eval,
            # which this CSP rightly forbids.
            wait_until(lambda: img.evaluate("el => el.complete && el.naturalWidth") == 240, 10,
                       what="captcha picture")
            email = new_email("browser")
            page.fill("#email", email)  # a reload (no JS) would lose this
            page.click("#captcha-refresh")
            expect(img).not_to_have_attribute("src", first or "")
            wait_until(lambda: img.evaluate("el => el.complete && el.naturalWidth") == 240, 10,
                       what="new captcha picture")
            assert page.url == base + "/register"
            expect(page.locator("#email")).to_have_value(email)  # refreshed without a reload
            second = img.get_attribute("src") or ""
            assert page.locator("#captcha-audio").get_attribute("href", timeout=1000).endswith(
                second.rsplit("=", 1)[1])
            # Sign up with the refreshed challenge.
            with app.app_context():
                digits = captcha.answer_for(second.rsplit("=", 1)[1])
            page.fill("#password", PASSWORD)
            page.fill("#password_confirm", PASSWORD)
            page.fill("#captcha input", digits)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/register/done")
            assert problems == [], problems  # CSP violations are console errors
        finally:
            browser.close()


def test_account_pages_clean_under_csp(live: tuple[str, Any], sqlite_stack: Stack) -> None:
    """Log in, open the account pages and the forgot-password page in Chromium:
    no CSP violation or script error on any of them."""
    from playwright.sync_api import expect, sync_playwright

    from tests.account_helpers import verified_user

    base, _app = live
    email = verified_user(sqlite_stack, "browser-acct")
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            problems = console_errors(page)
            page.goto(base + "/password/forgot")
            expect(page.locator("#forgot-form")).to_be_visible()
            page.goto(base + "/login")
            page.fill("#email", email)
            page.fill("#password", PASSWORD)
            page.click("form.card button[type=submit]")
            page.wait_for_url(base + "/")
            page.click("text=Account")
            page.wait_for_url(base + "/account")
            expect(page.locator("[data-testid=account-email]")).to_have_text(email)
            expect(page.locator("#change-password-form")).to_be_visible()
            assert problems == [], problems
        finally:
            browser.close()
