"""Browser test: log in, upload a photo, watch its page turn to ``done`` live.

Real Chromium (Playwright) against the Stack's app served over HTTP by Werkzeug,
with the Stack's real worker and RabbitMQ. The worker's consumer of the
``images`` queue is paused (Celery remote control) until the page shows
``pending``, so the test sees the page change without a reload.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.browser import launch_chromium, serve_http

from tests.harness.stack import Stack

from tests.harness.wait import wait_until
from tests.uploads import samples
from tests.uploads.conftest import verified_client

@pytest.fixture
def live_url(sqlite_stack: Stack) -> Iterator[str]:
    with serve_http(sqlite_stack.app) as url:
        yield url


@pytest.mark.browser
def test_upload_page_updates_live(sqlite_stack: Stack, live_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    stack = sqlite_stack
    _, email = verified_client(stack, "browser")  # registered and verified via the real mail
    photo = tmp_path / "holiday.jpg"
    photo.write_bytes(samples.camera_jpeg(900, 600, orientation=6))

    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(live_url + "/login")
            page.fill("input[name=email]", email)
            page.fill("input[name=password]", "correct horse battery")
            page.click("button[type=submit]")
            page.wait_for_url(live_url + "/")
            page.goto(live_url + "/uploads")

            paused = stack.celery.control.cancel_consumer("images", reply=True, timeout=5)
            assert paused and all("ok" in next(iter(r.values())) for r in paused), paused
            try:
                page.set_input_files("input[name=photo]", str(photo))
                page.click("#upload-form button[type=submit]")
                page.wait_for_url("**/uploads/*")
                status = page.get_by_test_id("status")
                expect(status).to_have_text("pending")
                page.evaluate("window.__sameDocument = true")  # lost on any reload
            finally:
                stack.celery.control.add_consumer("images", reply=True, timeout=5)

            expect(status).to_have_text("done", timeout=60_000)
            assert page.evaluate("window.__sameDocument") is True
            img = page.get_by_test_id("display-img")
            expect(img).to_be_visible()
            wait_until(lambda: page.evaluate(
                "document.querySelector('[data-testid=display-img]').naturalWidth") == 600,
                10, what="display image loaded")
            expect(page.locator("tr[data-name=display_webp]")).to_contain_text("600×900 px")
            assert "holiday" not in page.content()
            assert errors == []
        finally:
            browser.close()
