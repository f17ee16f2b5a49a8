"""Limits that must hold when requests arrive at once: the e-mail code's wrong
attempts and the per-account mail throttle. Real concurrent HTTP requests
(threads) against the app served by Werkzeug's threaded server, on SQLite and
PostgreSQL, with the real worker, RabbitMQ and SMTP sink."""
from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import requests

from tests.account_helpers import (PASSWORD, code_from, mail_with_subject, outbox_count,
                                   verified_user, wait_idle)
from tests.conftest import csrf_from, new_email
from tests.harness.browser import serve_http
from tests.harness.stack import Stack

CODE_SUBJECT = "Your Onboard confirmation code"


def at_once(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run ``fn(i)`` in ``n`` threads released together; returns the results."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:  # kept, so the test shows it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def logged_in(base: str, email: str) -> tuple[requests.Session, str]:
    """A session logged in over HTTP and the CSRF token of its ``/account`` page."""
    s = requests.Session()
    token = csrf_from(s.get(base + "/login", timeout=30).text)
    resp = s.post(base + "/login", data={"email": email, "password": PASSWORD,
                                         "csrf_token": token}, allow_redirects=False, timeout=30)
    assert resp.status_code == 303
    return s, csrf_from(s.get(base + "/account", timeout=30).text)


def test_email_code_limit_holds_under_40_concurrent_wrong_codes(stack: Stack) -> None:
    email = verified_user(stack, "race-code")
    new = new_email("race-code-new")
    limit = stack.app.config["EMAIL_CHANGE_MAX_ATTEMPTS"]
    with serve_http(stack.app) as base:
        session, token = logged_in(base, email)
        resp = session.post(base + "/account", data={"action": "change_email", "new_email": new,
                                                     "current_password": PASSWORD,
                                                     "csrf_token": token}, allow_redirects=False)
        assert resp.status_code == 303
        code = code_from(mail_with_subject(stack, new, CODE_SUBJECT)[0])
        wrong = "000000" if code != "000000" else "111111"
        cookies = session.cookies.get_dict()

        def guess(_i: int) -> requests.Response:
            return requests.post(base + "/account", cookies=cookies, timeout=60,
                                 data={"action": "confirm_email", "code": wrong, "csrf_token": token})

        answers = at_once(40, guess)
        statuses = [a.status_code if isinstance(a, requests.Response) else repr(a) for a in answers]
        assert statuses == [400] * 40, statuses
        checked = sum(b"tries left" in a.content for a in answers)
        locked = sum(b"Too many wrong codes. Ask" in a.content for a in answers)
        print(f"{stack.backend}: 40 concurrent wrong codes: {checked} answered 'tries left', "
              f"{locked} 'locked' (limit {limit})")
        # limit - 1 answers say how many tries are left, the limit-th locks.
        assert checked == limit - 1 and locked == 40 - checked
        # The right code, now: locked.
        resp = requests.post(base + "/account", cookies=cookies, timeout=60,
                             data={"action": "confirm_email", "code": code, "csrf_token": token})
        assert resp.status_code == 400 and b"Too many wrong codes. Ask" in resp.content


def test_forgot_throttle_holds_under_16_concurrent_requests(stack: Stack) -> None:
    email = verified_user(stack, "race-forgot")
    with serve_http(stack.app) as base:
        clients = []
        for _ in range(16):
            s = requests.Session()
            clients.append((s, csrf_from(s.get(base + "/password/forgot", timeout=30).text)))

        def forgot(i: int) -> int:
            s, token = clients[i]
            return s.post(base + "/password/forgot", data={"email": email, "csrf_token": token},
                          timeout=60).status_code

        assert at_once(16, forgot) == [200] * 16
    mail_with_subject(stack, email, "Reset your Onboard password")
    wait_idle(stack)
    assert outbox_count(stack, "password_reset", email) == 1
    assert len([m for m in stack.smtp.to(email) if "Reset" in m["Subject"]]) == 1


def test_throttle_lock_lets_one_of_16_concurrent_workers_through(stack: Stack) -> None:
    """The worker side alone: 16 threads run the reset service at once, as 16
    worker processes would; exactly one queues a mail."""
    from webapp.account.services import send_password_reset

    email = verified_user(stack, "race-lock")

    def run(_i: int) -> str:
        with stack.app.app_context():
            return send_password_reset(email, uuid.uuid4().hex)

    results = at_once(16, run)
    assert sorted(map(str, results)) == ["queued"] + ["throttled"] * 15, results
    assert outbox_count(stack, "password_reset", email) == 1


def test_email_code_throttle_holds_under_16_concurrent_requests(stack: Stack) -> None:
    email = verified_user(stack, "race-chmail")
    with serve_http(stack.app) as base:
        session, token = logged_in(base, email)
        cookies = session.cookies.get_dict()
        new = new_email("race-chmail-new")

        def change(_i: int) -> int:
            return requests.post(base + "/account", cookies=cookies, allow_redirects=False,
                                 timeout=60, data={"action": "change_email", "new_email": new,
                                                   "current_password": PASSWORD,
                                                   "csrf_token": token}).status_code

        statuses = at_once(16, change)
    assert sorted(statuses) == [303] + [400] * 15, statuses
    assert outbox_count(stack, "email_change_code", new) == 1
