"""celery beat with RedBeat (``REDBEAT_REDIS_URL``): no schedule file on the beat's
disk, one active beat holding the lock, a standby on another 'host' taking over."""
from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from tests.harness.paths import CELERY
from tests.harness.procs import Proc
from tests.harness.stack import Stack
from tests.harness.wait import wait_until
from webapp.extensions import db
from webapp.models import UsedToken, utcnow

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def beat_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prefix = f"onboard-test:{uuid.uuid4().hex[:8]}"
    stack = Stack("sqlite", tmp_path_factory.mktemp("redbeat"), env_overrides={
        "BEAT_TEST_INTERVAL": "1", "REDBEAT_REDIS_URL": REDIS_URL,
        "REDBEAT_KEY_PREFIX": prefix, "REDBEAT_LOCK_TIMEOUT": "10"}).start()
    try:
        yield stack
    finally:
        stack.stop()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(prefix + "*"):
            client.delete(key)


def start_beat(stack: Stack, host: Path) -> Proc:
    """celery beat with its own empty INSTANCE_DIR, as on a fresh container."""
    (host / "instance").mkdir(parents=True)
    return Proc([CELERY, "-A", "celery_app", "beat", "--loglevel=INFO"], host / "beat.log",
                {**stack.env, "INSTANCE_DIR": str(host / "instance")})


def stale_token(stack: Stack) -> str:
    jti = "redbeat-" + uuid.uuid4().hex
    with stack.app.app_context():
        db.session.add(UsedToken(jti=jti, purpose="verify", used_at=utcnow() - timedelta(days=30)))
        db.session.commit()
    return jti


def purged(stack: Stack, jti: str) -> bool:
    with stack.app.app_context():
        gone = db.session.scalar(select(UsedToken).where(UsedToken.jti == jti)) is None
        db.session.rollback()
        return gone


def test_schedule_in_redis_and_standby_takes_over(beat_stack: Stack, tmp_path: Path) -> None:
    prefix = beat_stack.env["REDBEAT_KEY_PREFIX"]
    first = start_beat(beat_stack, tmp_path / "host-a")
    second = None
    try:
        jti = stale_token(beat_stack)
        wait_until(lambda: purged(beat_stack, jti), 60, interval=0.2, what="beat-driven purge")
        # The schedule and the lock are in Redis; the beat's disk has no schedule file.
        keys = {k.decode() for k in redis.Redis.from_url(REDIS_URL).scan_iter(prefix + "*")}
        assert prefix + ":lock" in keys and prefix + "beat-test" in keys, keys
        assert not list((tmp_path / "host-a").rglob("celerybeat-schedule*"))

        # A second beat on another host waits for the lock and sends nothing.
        second = start_beat(beat_stack, tmp_path / "host-b")
        wait_until(lambda: "beat: Starting" in (tmp_path / "host-b/beat.log").read_text(), 30,
                   what="standby beat started")
        first.stop(signal.SIGTERM, timeout=30)  # releases the lock on the way out
        jti = stale_token(beat_stack)
        wait_until(lambda: purged(beat_stack, jti), 60, interval=0.2, what="standby took over")
        log_b = (tmp_path / "host-b/beat.log").read_text()
        assert "Sending due task beat-test" in log_b, log_b[-2000:]
        assert second.alive()
        assert not list((tmp_path / "host-b").rglob("celerybeat-schedule*"))
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.kill()
