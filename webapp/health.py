"""``GET /healthz``: is the database, the broker and at least one worker there?

Answers ``{"status": "ok"|"degraded", "checks": {"database", "broker",
"workers"}}`` with 200 or 503; each check is ``{"ok": bool, "detail": str}``.
Every check has its own timeout (``HEALTH_TIMEOUT`` seconds) and the database
check runs in parallel with the broker ones, so the answer comes within about
``2 * HEALTH_TIMEOUT`` + overhead (under 3 s by default) even when RabbitMQ or
the database hangs. The worker ping is skipped when the broker is down.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from sqlalchemy import text

from webapp.extensions import db

bp = Blueprint("health", __name__)


def check_database(app: Flask) -> str:
    """Run ``SELECT 1``; returns a detail string, raises on failure."""
    with app.app_context():
        try:
            db.session.execute(text("SELECT 1"))
        finally:
            db.session.remove()
    return "SELECT 1 answered"


def check_broker(app: Flask, timeout: float) -> str:
    """Open (and close) a broker connection within ``timeout`` seconds."""
    celery = app.extensions["celery"]
    with celery.connection_for_write(connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
    return "connected"


def check_workers(app: Flask, timeout: float) -> str:
    """``control.ping``; raises ``RuntimeError`` when no worker answers."""
    replies = app.extensions["celery"].control.ping(timeout=timeout) or []
    names = sorted(name for reply in replies for name in reply)
    if not names:
        raise RuntimeError(f"no worker answered ping within {timeout} s")
    return f"{len(names)} worker(s): " + ", ".join(names)


def _result(future: Any, timeout: float) -> dict[str, Any]:
    try:
        return {"ok": True, "detail": future.result(timeout=timeout)}
    except FutureTimeout:
        return {"ok": False, "detail": f"timed out after {timeout:.1f} s"}
    except Exception as exc:  # any failure is "not healthy", with its reason
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"[:300]}


def run_checks(app: Flask) -> dict[str, dict[str, Any]]:
    """Run the three checks with their timeouts; returns ``{name: {"ok", "detail"}}``."""
    timeout = app.config["HEALTH_TIMEOUT"]
    pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="healthz")
    try:
        started = time.monotonic()
        database = pool.submit(check_database, app)
        broker = _result(pool.submit(check_broker, app, timeout), timeout + 0.5)
        if broker["ok"]:
            workers = _result(pool.submit(check_workers, app, timeout), timeout + 0.5)
        else:
            workers = {"ok": False, "detail": "not checked: broker unreachable"}
        left = max(0.1, 2 * timeout + 1.0 - (time.monotonic() - started))
        return {"database": _result(database, left), "broker": broker, "workers": workers}
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a hung check must not hold the answer


@bp.get("/healthz")
def healthz() -> Any:
    """200 ``{"status": "ok", ...}`` when every check passed, else 503 ``"degraded"``."""
    checks = run_checks(current_app._get_current_object())  # type: ignore[attr-defined]
    ok = all(c["ok"] for c in checks.values())
    return jsonify(status="ok" if ok else "degraded", checks=checks), 200 if ok else 503
