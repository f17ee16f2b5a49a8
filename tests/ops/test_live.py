"""celery beat, Flower, /metrics and /healthz against an own Stack (SQLite).

This module builds its own :class:`Stack` (own vhost, database, worker) because
it stops that stack's worker; the shared stack is never touched. Tests run in
file order: Flower and beat need the worker, the last health test stops it.
"""
from __future__ import annotations

import re
import runpy
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from tests.ops.test_procfiles import procfile_command
from tests.harness.paths import CELERY, ROOT
from tests.harness.procs import Proc
from tests.harness.stack import Stack
from tests.harness.wait import free_port, wait_until
from webapp import config as config_module
from webapp import create_app
from webapp.extensions import db
from webapp.models import UsedToken, utcnow

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def ops_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("ops_live")
    stack = Stack("sqlite", tmp, env_overrides={
        "BEAT_TEST_INTERVAL": "1",
        # Each /healthz call below must see the stack as it is now.
        "HEALTH_CACHE_SECONDS": "0",
    }).start()
    yield stack
    stack.stop()


# --- Flower ------------------------------------------------------------------------


def test_flower_requires_auth_and_lists_worker(ops_stack: Stack) -> None:
    """Flower as the Procfile starts it: FLOWER_PORT decides its port; its REST
    calls need the login; its own /metrics counts the worker's tasks."""
    port = free_port()
    env = {**ops_stack.env, "FLOWER_BASIC_AUTH": "ops:s3cret-pass", "FLOWER_PORT": str(port),
           "FLOWER_DB": str(ops_stack.tmp / "flower")}
    proc = Proc(procfile_command("Procfile", "flower"), ops_stack.tmp / "flower.log", env)
    base = f"http://127.0.0.1:{port}"

    def get(path: str, auth: tuple[str, str] | None = None) -> requests.Response | None:
        try:
            return requests.get(base + path, auth=auth, timeout=2)
        except requests.ConnectionError:
            assert proc.alive(), proc.log_text()
            return None

    try:
        wait_until(lambda: get("/healthcheck"), 60, interval=0.2, what="flower up")
        assert get("/api/workers").status_code == 401
        assert get("/api/workers", ("ops", "wrong")).status_code == 401
        assert get("/", ("ops", "wrong")).status_code == 401
        auth = ("ops", "s3cret-pass")
        workers = wait_until(lambda: (r := get("/api/workers?refresh=1", auth)) is not None
                             and r.status_code == 200 and r.json(), 30, interval=0.5,
                             what="worker in /api/workers")
        assert any(name.startswith("w0-" + ops_stack.name) for name in workers)
        # A task through the worker shows up in /api/tasks and /api/task/info/<id>.
        result = ops_stack.celery.send_task("webapp.tasks.periodic.purge_tokens")
        wait_until(lambda: (r := get(f"/api/task/info/{result.id}", auth)) is not None
                   and r.status_code == 200 and r.json().get("state") == "SUCCESS", 30,
                   interval=0.5, what="task state in flower")
        tasks = get("/api/tasks?limit=10", auth)
        assert tasks.status_code == 200 and result.id in tasks.json()
        queues = get("/api/queues/length", auth)
        print("flower /api/queues/length:", queues.status_code, queues.text[:200])
        assert queues.status_code == 200
        types = get("/api/task/types", auth)  # task names Flower has seen so far
        assert types.status_code == 200 and "webapp.tasks.periodic.purge_tokens" in types.text
        # Flower's own /metrics needs no login (documented): hence address=127.0.0.1.
        # It carries the task counters and run times (docs/operations.md).
        flower_metrics = get("/metrics")
        assert flower_metrics.status_code == 200
        text = flower_metrics.text
        task = "webapp.tasks.periodic.purge_tokens"
        assert metric(text, "flower_events_total", task=task, type="task-succeeded") >= 1
        assert metric(text, "flower_task_runtime_seconds_count", task=task) >= 1
    finally:
        proc.stop()


def test_registered_tasks_listed_by_celery_inspect(ops_stack: Stack) -> None:
    """docs/operations.md's way to list every registered task (Flower's
    /api/task/types shows only the ones it has seen)."""
    proc = subprocess.run([CELERY, "-A", "celery_app", "inspect", "registered", "--timeout", "5"],
                          cwd=ROOT, env=ops_stack.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for task in ("webapp.tasks.mail.send_mail", "webapp.tasks.images.process_image",
                 "webapp.tasks.periodic.backup_database"):
        assert task in proc.stdout


def test_flowerconfig_refuses_production_without_auth(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    monkeypatch.setenv("INSTANCE_DIR", str(tmp_path))
    for name, value in {"ONBOARD_ENV": "production", "BASE_URL": "https://onboard.example",
                        "SECRET_KEY": "a-real-secret-for-this-test-0123456789",
                        "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    with pytest.raises(SystemExit, match="FLOWER_BASIC_AUTH"):
        runpy.run_path(str(ROOT / "flowerconfig.py"))
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "a:b-long-password,c:d-long-password")
    conf = runpy.run_path(str(ROOT / "flowerconfig.py"))
    assert conf["basic_auth"] == ["a:b-long-password", "c:d-long-password"]
    assert conf["address"] == "127.0.0.1"
    assert conf["max_tasks"] == 10000 and conf["persistent"] is True


def test_flower_process_exits_in_production_without_auth(ops_stack: Stack) -> None:
    env = {**ops_stack.env, "ONBOARD_ENV": "production", "BASE_URL": "https://onboard.example",
           "SECRET_KEY": "a-real-secret-for-this-test-0123456789",
           "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0"}
    env.pop("FLOWER_BASIC_AUTH", None)
    proc = subprocess.run([CELERY, "-A", "celery_app", "flower", "--conf=flowerconfig.py",
                           f"--port={free_port()}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    assert "FLOWER_BASIC_AUTH" in proc.stdout + proc.stderr


# --- celery beat --------------------------------------------------------------------


def test_beat_runs_job(ops_stack: Stack) -> None:
    jti = "beat-" + uuid.uuid4().hex
    with ops_stack.app.app_context():
        db.session.add(UsedToken(jti=jti, purpose="verify", used_at=utcnow() - timedelta(days=30)))
        db.session.commit()
    proc = Proc([CELERY, "-A", "celery_app", "beat", "--loglevel=INFO"],
                ops_stack.tmp / "beat.log", ops_stack.env)

    def purged() -> bool:
        assert proc.alive(), proc.log_text()
        with ops_stack.app.app_context():
            gone = db.session.scalar(select(UsedToken).where(UsedToken.jti == jti)) is None
            db.session.rollback()
            return gone

    try:
        wait_until(purged, 60, interval=0.2, what="beat-driven purge")
    finally:
        proc.stop()
    log = (ops_stack.tmp / "beat.log").read_text()
    assert "Sending due task beat-test (webapp.tasks.periodic.purge_tokens)" in log
    # The schedule state lives under instance/ (shelve files celerybeat-schedule*).
    assert list(Path(ops_stack.env["INSTANCE_DIR"]).glob("celerybeat-schedule*"))
    # Service log lines inside a task carry [task_name(task_id)].
    worker_log = (ops_stack.tmp / "worker0.log").read_text()
    assert re.search(r"\[webapp\.tasks\.periodic\.purge_tokens\([0-9a-f-]{36}\)\] "
                     r"webapp\.ops\.purge: purged 1 used token", worker_log), worker_log[-2000:]


# --- /metrics -------------------------------------------------------------------------


def metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics(ops_stack: Stack) -> None:
    client = ops_stack.client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403
    resp = client.get("/metrics")  # the test client is 127.0.0.1
    assert resp.status_code == 200
    text = resp.get_data(as_text=True)
    assert metric(text, "onboard_broker_up") == 1.0
    assert metric(text, "onboard_queue_consumers", queue="celery") >= 1
    assert metric(text, "onboard_queue_messages", queue="mail") is not None
    assert metric(text, "onboard_outbox_messages", state="sent") is not None

    ops_stack.app.config["METRICS_TOKEN"] = "tok-" + uuid.uuid4().hex
    try:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        ok = client.get("/metrics", headers={"Authorization": "Bearer " + ops_stack.app.config["METRICS_TOKEN"]},
                        environ_base={"REMOTE_ADDR": "203.0.113.9"})
        assert ok.status_code == 200
    finally:
        ops_stack.app.config["METRICS_TOKEN"] = ""


def test_metrics_report_an_unreachable_broker(ops_stack: Stack) -> None:
    """A dead broker answers the scrape with onboard_broker_up 0 and no queue
    gauges (an outage never reads as empty queues); the database figures stay."""
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    app = create_app({**config_module.from_env({**ops_stack.env, "CELERY_BROKER_URL": dead}),
                      "TESTING": True})
    try:
        resp = app.test_client().get("/metrics")
        text = resp.get_data(as_text=True)
        assert resp.status_code == 200
        assert metric(text, "onboard_broker_up") == 0.0
        assert metric(text, "onboard_queue_messages") is None
        assert metric(text, "onboard_outbox_messages", state="sent") is not None
    finally:
        ops_stack.celery.set_default()
        with app.app_context():
            db.engine.dispose()


# --- /healthz -------------------------------------------------------------------------


def test_healthz_ok(ops_stack: Stack) -> None:
    resp = ops_stack.client().get("/healthz")
    body = resp.get_json()
    assert resp.status_code == 200, body
    assert body["status"] == "ok" and set(body["checks"]) == {"database", "broker", "workers", "store"}
    assert all(c["ok"] for c in body["checks"].values())


def test_healthz_dead_broker(ops_stack: Stack) -> None:
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    app = create_app({**config_module.from_env({**ops_stack.env, "CELERY_BROKER_URL": dead}),
                      "TESTING": True})
    try:
        started = time.monotonic()
        resp = app.test_client().get("/healthz")
        print(f"/healthz with a dead broker answered in {time.monotonic() - started:.2f} s")
        body = resp.get_json()
        assert resp.status_code == 503 and body["status"] == "degraded"
        assert body["checks"]["database"]["ok"] is True
        assert body["checks"]["broker"]["ok"] is False and body["checks"]["workers"]["ok"] is False
    finally:
        ops_stack.celery.set_default()
        with app.app_context():
            db.engine.dispose()


PUBLIC = {"REMOTE_ADDR": "203.0.113.9"}


def test_healthz_details_only_for_operators(ops_stack: Stack) -> None:
    """A public caller sees ok/failed per check and nothing else, even when a check
    fails with a message naming hosts and ports; loopback or the METRICS_TOKEN
    bearer see the details."""
    port = free_port()
    dead = f"amqp://guest:guest@127.0.0.1:{port}/secret-vhost"
    app = create_app({**config_module.from_env({**ops_stack.env, "CELERY_BROKER_URL": dead}),
                      "TESTING": True})
    try:
        client = app.test_client()
        public = client.get("/healthz", environ_base=PUBLIC)
        assert public.status_code == 503
        assert public.get_json() == {"status": "degraded", "checks": {
            "database": {"ok": True}, "broker": {"ok": False}, "workers": {"ok": False},
            "store": {"ok": True}}}
        assert str(port) not in public.get_data(as_text=True)

        local = client.get("/healthz").get_json()  # the test client is 127.0.0.1
        assert local["checks"]["broker"]["detail"] and local["checks"]["database"]["detail"]

        app.config["METRICS_TOKEN"] = token = "tok-" + uuid.uuid4().hex
        auth = {"Authorization": f"Bearer {token}"}
        with_token = client.get("/healthz", headers=auth, environ_base=PUBLIC).get_json()
        assert with_token["checks"]["broker"]["ok"] is False
        assert with_token["checks"]["broker"]["detail"]
        # With a token set, loopback alone is not enough (a local proxy looks loopback).
        assert "detail" not in client.get("/healthz").get_json()["checks"]["broker"]
        wrong = {"Authorization": "Bearer nope"}
        assert "detail" not in client.get("/healthz", headers=wrong,
                                          environ_base=PUBLIC).get_json()["checks"]["database"]
    finally:
        ops_stack.celery.set_default()
        with app.app_context():
            db.engine.dispose()


def test_healthz_concurrent_callers_share_one_check_run(ops_stack: Stack,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """64 callers at once within one cache period: one run of the checks, and every
    caller gets its answer."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from webapp import health

    runs: list[float] = []
    real = health.run_checks

    def counted(app):  # type: ignore[no-untyped-def]
        runs.append(time.monotonic())
        return real(app)

    monkeypatch.setattr(health, "run_checks", counted)
    app = create_app({**config_module.from_env({**ops_stack.env, "HEALTH_CACHE_SECONDS": "60"}),
                      "TESTING": True})
    start = threading.Barrier(64)

    def call(_: int) -> tuple[int, str]:
        client = app.test_client()
        start.wait(30)
        resp = client.get("/healthz", environ_base=PUBLIC)
        return resp.status_code, resp.get_data(as_text=True)

    try:
        with ThreadPoolExecutor(64) as pool:
            answers = list(pool.map(call, range(64)))
    finally:
        ops_stack.celery.set_default()
        with app.app_context():
            db.engine.dispose()
    print(f"64 concurrent /healthz calls: {len(runs)} check run(s)")
    assert len(runs) == 1
    assert {code for code, _ in answers} == {200}
    assert len({body for _, body in answers}) == 1


def test_healthz_ping_returns_at_the_first_worker_reply(ops_stack: Stack) -> None:
    """The worker check does not wait out its timeout once a worker has answered."""
    from webapp.health import check_workers

    started = time.monotonic()
    detail = check_workers(ops_stack.app, timeout=20.0)
    took = time.monotonic() - started
    print(f"worker ping with a 20 s timeout answered in {took:.2f} s: {detail}")
    assert detail.startswith("w0-" + ops_stack.name)
    assert took < 10.0  # half the timeout: the reply, not the deadline, ended the wait


def test_healthz_worker_stopped(ops_stack: Stack) -> None:
    for proc in list(ops_stack.workers):
        ops_stack.stop_worker(proc)
    resp = ops_stack.client().get("/healthz")
    body = resp.get_json()
    assert resp.status_code == 503 and body["status"] == "degraded", body
    assert body["checks"]["broker"]["ok"] is True and body["checks"]["database"]["ok"] is True
    assert body["checks"]["workers"]["ok"] is False
    # With no consumer, queued tasks show as queue depth in /metrics.
    for _ in range(3):
        ops_stack.celery.send_task("webapp.tasks.periodic.purge_tokens")
    text = ops_stack.client().get("/metrics").get_data(as_text=True)
    assert metric(text, "onboard_queue_messages", queue="celery") >= 3
    assert metric(text, "onboard_queue_consumers", queue="celery") == 0
