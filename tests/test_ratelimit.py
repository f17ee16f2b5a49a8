"""Rate limits (Flask-Limiter) on sign-up, log-in, resend, forgot, reset and code
entry: a 429 page or JSON with Retry-After, memory and real Redis storage.

Pure web behaviour: each test builds fast apps (no broker, no worker) with
limits on; the Redis test uses the real Redis on 127.0.0.1:6379.
"""
from __future__ import annotations

import re
import uuid

import redis

from tests.harness.fastapp import add_verified_user
from tests.harness.forms import PASSWORD, csrf_from, login, new_email, post_form

REDIS_URL = "redis://127.0.0.1:6379/0"
ONE = "2 per minute"  # tight limits so a test needs few requests


def limits(**extra: str) -> dict[str, object]:
    return {"RATELIMIT_ENABLED": True, "RATELIMIT_SIGNUP": ONE, "RATELIMIT_LOGIN": ONE,
            "RATELIMIT_MAIL": ONE, "RATELIMIT_RESET": ONE, "RATELIMIT_CODE": ONE,
            "RATELIMIT_KEY_PREFIX": "t-" + uuid.uuid4().hex[:8], **extra}


def assert_429_page(resp) -> None:  # type: ignore[no-untyped-def]
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) > 0
    assert re.search(rb"Too many requests\. Wait \d+ seconds? and try again\.", resp.data)
    assert resp.mimetype == "text/html"


def test_login_limit_page_json_and_get_not_counted(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(**limits())
    client = app.test_client()
    for _ in range(5):
        assert client.get("/login").status_code == 200  # showing the form is free
    email = new_email("rl")
    assert login(client, email, "wrong password!").status_code == 400
    assert login(client, email, "wrong password!").status_code == 400
    resp = login(client, email, "wrong password!")
    assert_429_page(resp)
    token = csrf_from(client.get("/login").data)
    resp = client.post("/login", data={"email": email, "password": "x", "csrf_token": token},
                       headers={"Accept": "application/json"})
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 0
    error = resp.get_json()["error"]
    assert error["status"] == 429 and error["code"] == "rate_limited"
    assert re.fullmatch(r"Too many requests\. Wait \d+ seconds? and try again\.", error["message"])
    # Security headers are on the 429 too.
    assert resp.headers["X-Frame-Options"] == "DENY"


def test_each_endpoint_is_limited(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(**limits(RATELIMIT_LOGIN="20 per minute"))
    email = new_email("rlall")
    add_verified_user(app, email, PASSWORD)

    def two_then_429(path: str, data: dict[str, str], client=None, page: str | None = None):  # type: ignore[no-untyped-def]
        client = client or app.test_client()
        for _ in range(2):
            assert post_form(client, path, data, page).status_code != 429, path
        assert_429_page(post_form(client, path, data, page))

    two_then_429("/register", {"email": new_email("rlreg"), "password": "short",
                               "password_confirm": "short"})
    two_then_429("/verify/resend", {"email": new_email("rlres")}, page="/register/done")
    two_then_429("/password/forgot", {"email": new_email("rlfgt")})
    two_then_429("/password/reset/forged-token", {"password": "x", "password_confirm": "x"},
                 page="/password/forgot")
    client = app.test_client()
    assert login(client, email).status_code == 303
    two_then_429("/account", {"action": "confirm_email", "code": "123456"}, client=client)


def test_apps_with_limits_off_stay_unlimited(make_app) -> None:  # type: ignore[no-untyped-def]
    """The limiter object is module-level; an app built with limits off is not
    limited even while another app in the process has them on."""
    unlimited = make_app(RATELIMIT_LOGIN=ONE)  # would bite if limits were on
    limited = make_app(**limits())
    client = unlimited.test_client()
    email = new_email("nolimit")
    codes = {login(client, email, "wrong password!").status_code for _ in range(4)}
    assert codes == {400}
    # ...while the app built with limits on does limit.
    client = limited.test_client()
    codes = [login(client, email, "wrong password!").status_code for _ in range(3)]
    assert codes == [400, 400, 429]


def test_redis_storage(make_app) -> None:  # type: ignore[no-untyped-def]
    r = redis.Redis.from_url(REDIS_URL)
    r.ping()
    prefix = "onboard-test-" + uuid.uuid4().hex[:10]
    try:
        app = make_app(**limits(RATELIMIT_STORAGE_URI=REDIS_URL, RATELIMIT_KEY_PREFIX=prefix))
        client = app.test_client()
        assert not list(r.scan_iter(f"*{prefix}*"))
        token = csrf_from(client.get("/password/forgot").data)
        for _ in range(2):
            assert client.post("/password/forgot", data={"email": new_email("rd"),
                                                         "csrf_token": token}).status_code == 200
        keys = list(r.scan_iter(f"*{prefix}*"))
        assert keys, "no rate-limit key in Redis"
        assert any(b"forgot_password" in k for k in keys)
        assert [int(r.get(k)) for k in keys if r.type(k) == b"string"] == [2] * len(
            [k for k in keys if r.type(k) == b"string"])
        assert all(0 < r.ttl(k) <= 60 for k in keys)
        resp = client.post("/password/forgot", data={"email": new_email("rd"), "csrf_token": token})
        assert_429_page(resp)
        # A second app (another gunicorn worker, say) on the same Redis shares the count.
        app2 = make_app(**limits(RATELIMIT_STORAGE_URI=REDIS_URL, RATELIMIT_KEY_PREFIX=prefix))
        client = app2.test_client()
        token = csrf_from(client.get("/password/forgot").data)
        resp = client.post("/password/forgot", data={"email": new_email("rd"), "csrf_token": token})
        assert_429_page(resp)
    finally:
        for key in r.scan_iter(f"*{prefix}*"):
            r.delete(key)
