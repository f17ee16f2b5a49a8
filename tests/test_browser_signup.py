"""A person in headless Chromium: sign up → read the mail → follow the link → log in.

Drives the real pages served over HTTP by the SQLite stack's app, with the real
worker sending the mail through RabbitMQ to the SMTP sink.
"""
from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.conftest import link_from, new_email
from tests.harness.browser import launch_chromium, serve_http
from tests.harness.mail import text_body
from tests.harness.stack import Stack

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def live_url(sqlite_stack: Stack) -> Iterator[str]:
    """The stack's app on a real HTTP server on 127.0.0.1."""
    with serve_http(sqlite_stack.app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch_chromium(pw)
        yield b
        b.close()


def test_signup_to_logged_in_in_chromium(browser, live_url: str, sqlite_stack: Stack,  # type: ignore[no-untyped-def]
                                         tmp_path) -> None:
    page = browser.new_page()
    email, password = new_email("browser"), "a long browser password"

    page.goto(live_url + "/")
    page.get_by_role("link", name="Sign up").first.click()
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password again").fill("mismatch " + password)
    page.get_by_role("button", name="Create account").click()
    # Bad input: the form comes back with the message and the typed address.
    assert page.get_by_text("The passwords do not match.").is_visible()
    assert page.get_by_label("E-mail").input_value() == email

    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password again").fill(password)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url("**/register/done")
    assert page.get_by_test_id("check-inbox").is_visible()

    link = link_from(text_body(sqlite_stack.smtp.wait_for(email)[0]))
    page.goto(live_url + urlsplit(link).path)
    page.get_by_role("button", name="Confirm my address").click()
    assert page.get_by_test_id("verified").is_visible()

    page.get_by_role("link", name="Log in").last.click()
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live_url + "/")
    assert page.get_by_test_id("welcome").inner_text().startswith(f"Welcome, {email}")
    page.screenshot(path=str(tmp_path / "logged-in.png"))
    page.close()
