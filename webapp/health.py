"""``GET /healthz``: are the database, the broker, the store and at least one
worker there?

Answers ``{"status": "ok"|"degraded", "checks": {"database", "broker",
"workers", "store"}}`` with 200 or 503. Operators (a loopback client, or the
``METRICS_TOKEN`` bearer when one is set: the rule of ``/metrics``) see each
check as ``{"ok": bool, "detail": str}``; anyone else sees ``{"ok": bool}``
only, since a failure's detail names database hosts, roles, vhosts, buckets and
worker hostnames (OWASP Error Handling Cheat Sheet: no internals to the public).

Cost: the checks run at most once per ``HEALTH_CACHE_SECONDS`` (default 5 s) per
process, one run at a time; every caller in between gets the cached answer, so
a crowd of probes costs one database query, one broker connection, one
store request (a HEAD on the bucket) and one worker ping per period. While a run is under way, callers get the previous
answer at once instead of waiting for it (only the very first run is waited
for). Each check has its own timeout (``HEALTH_TIMEOUT`` seconds) and the
database and store checks run in parallel with the broker ones, so a run takes at most
about ``2 * HEALTH_TIMEOUT`` + 1 s even when RabbitMQ or the database hangs;
the worker ping returns as soon as the first worker answers. The worker ping is
skipped when the broker is down. ``bench/healthz_load.py`` measures ``/login``
with and without 64 concurrent ``/healthz`` callers.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from sqlalchemy import text

from webapp.extensions import db
from webapp.metrics import operator_access

bp = Blueprint("health", __name__)

Checks = dict[str, dict[str, Any]]


def check_database(app: Flask) -> str:
    """Run ``SELECT 1``; returns a detail string, raises on failure."""
    with app.app_context():
        try:
            db.session.execute(text("SELECT 1"))
        finally:
            db.session.remove()
    return "SELECT 1 answered"


def check_store(app: Flask) -> str:
    """The store answers: a HEAD on the bucket, or the local folder is writable
    (:meth:`webapp.storage.Store.check`); raises ``StoreUnavailable`` otherwise."""
    from webapp.storage import get_store

    with app.app_context():
        return get_store().check()


def check_broker(app: Flask, timeout: float) -> str:
    """Open (and close) a broker connection within ``timeout`` seconds."""
    celery = app.extensions["celery"]
    with celery.connection_for_write(connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
    return "connected"


def check_workers(app: Flask, timeout: float) -> str:
    """Broadcast ``ping`` and return as soon as the first worker answers.

    Args:
        app: the Flask app (its Celery app pings).
        timeout: longest wait for a first reply, seconds.

    Returns:
        ``"<hostname> answered ping"``.

    Raises:
        RuntimeError: no worker answered within ``timeout``.
    """
    # limit=1: kombu stops collecting replies at the first one instead of
    # listening for the whole timeout (which made every call take 1.03 s).
    replies = app.extensions["celery"].control.ping(timeout=timeout, limit=1) or []
    names = sorted(name for reply in replies for name in reply)
    if not names:
        raise RuntimeError(f"no worker answered ping within {timeout} s")
    return f"{names[0]} answered ping"


def _result(future: Any, timeout: float) -> dict[str, Any]:
    try:
        return {"ok": True, "detail": future.result(timeout=timeout)}
    except FutureTimeout:
        return {"ok": False, "detail": f"timed out after {timeout:.1f} s"}
    except Exception as exc:  # any failure is "not healthy", with its reason
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"[:300]}


def run_checks(app: Flask) -> Checks:
    """Run the four checks with their timeouts; returns ``{name: {"ok", "detail"}}``."""
    timeout = app.config["HEALTH_TIMEOUT"]
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="healthz")
    try:
        started = time.monotonic()
        database = pool.submit(check_database, app)
        store = pool.submit(check_store, app)
        broker = _result(pool.submit(check_broker, app, timeout), timeout + 0.5)
        if broker["ok"]:
            workers = _result(pool.submit(check_workers, app, timeout), timeout + 0.5)
        else:
            workers = {"ok": False, "detail": "not checked: broker unreachable"}
        left = max(0.1, 2 * timeout + 1.0 - (time.monotonic() - started))
        return {"database": _result(database, left), "broker": broker, "workers": workers,
                "store": _result(store, max(0.1, 2 * timeout + 1.0 - (time.monotonic() - started)))}
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a hung check must not hold the answer


class HealthCache:
    """The last :func:`run_checks` answer of one app in this process, and its age.

    Thread-safe; one per app (``app.extensions["health"]``), so test apps and
    gunicorn workers each keep their own.
    """

    def __init__(self) -> None:
        self._run_lock = threading.Lock()  # one run at a time
        self._checks: Checks | None = None
        self._at = 0.0  # time.monotonic() when _checks was computed

    def get(self, app: Flask) -> Checks:
        """The checks, run only when the cached answer is older than
        ``HEALTH_CACHE_SECONDS`` (seconds; 0 runs them on every call).

        While another thread runs them, the previous answer is returned at once;
        with no previous answer the caller waits for that run and shares it.
        """
        max_age = app.config["HEALTH_CACHE_SECONDS"]
        if self._fresh(max_age):
            return self._checks  # type: ignore[return-value]
        if not self._run_lock.acquire(blocking=self._checks is None):
            return self._checks  # type: ignore[return-value]
        try:
            if not self._fresh(max_age):  # another caller may have run them meanwhile
                checks = run_checks(app)
                self._checks, self._at = checks, time.monotonic()
            return self._checks  # type: ignore[return-value]
        finally:
            self._run_lock.release()

    def _fresh(self, max_age: float) -> bool:
        return self._checks is not None and time.monotonic() - self._at < max_age


@bp.record_once
def _install_cache(state: Any) -> None:
    state.app.extensions["health"] = HealthCache()


def public_view(checks: Checks) -> Checks:
    """``checks`` without the details: ``{name: {"ok": bool}}``, for callers
    that are not operators."""
    return {name: {"ok": bool(check["ok"])} for name, check in checks.items()}


@bp.get("/healthz")
def healthz() -> Any:
    """200 ``{"status": "ok", ...}`` when every check passed, else 503 ``"degraded"``.

    Details only for operators (loopback or ``METRICS_TOKEN``); answers from the
    per-process cache (see the module docstring).
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    checks = app.extensions["health"].get(app)
    ok = all(c["ok"] for c in checks.values())
    if not operator_access():
        checks = public_view(checks)
    response = jsonify(status="ok" if ok else "degraded", checks=checks)
    response.headers["Cache-Control"] = "no-store"
    return response, 200 if ok else 503
