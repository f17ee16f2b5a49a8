"""The real stack for one test session or benchmark: a RabbitMQ virtual host, an
SMTP sink, a database, Celery worker and beat processes, and the Flask app wired
to them.

Each :class:`Stack` gets its own vhost on its broker (the shared RabbitMQ, or a
private :class:`~tests.harness.rabbit.RabbitNode` given as ``broker``), so runs
never see each other's messages, and its own database: a SQLite file or a fresh
PostgreSQL database. The schema is built by ``flask db upgrade`` (the real
migrations, in a subprocess as the release step runs it), and workers are real
``celery worker`` processes.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.broker import SHARED, Broker
from tests.harness.databases import create_database, drop_database
from tests.harness.mail import SMTPSink
from tests.harness.paths import CELERY, FLASK, ROOT
from tests.harness.procs import Proc
from tests.harness.wait import wait_until


@dataclass
class Stack:
    """A database, a vhost, an SMTP sink, workers and the app, for one backend.

    Args:
        backend: ``"sqlite"`` or ``"postgresql"``.
        tmp: folder for the SQLite file, instance folder, media and process logs.
        env_overrides: environment variables on top of the stack's own (strings).
        broker: makes and deletes the vhost (:data:`tests.harness.broker.SHARED`
            by default).
    """

    backend: str
    tmp: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    broker: Broker = SHARED
    name: str = field(default_factory=lambda: "onboard_t_" + uuid.uuid4().hex[:10])
    workers: list[Proc] = field(default_factory=list)
    beats: list[Proc] = field(default_factory=list)

    def start(self, worker: bool = True) -> Stack:
        """Make the vhost, database (migrated), SMTP sink and app; start one
        worker unless ``worker=False``.

        Raises:
            subprocess.CalledProcessError: the migrations failed.
            RuntimeError, TimeoutError: the worker did not come up.
        """
        self.tmp.mkdir(parents=True, exist_ok=True)
        try:
            self._start(worker)
        except BaseException:
            self.stop()  # a half-made stack leaves no vhost, database or process behind
            raise
        return self

    def _start(self, worker: bool) -> None:
        self.smtp = SMTPSink().start()
        # Named before it exists: a create that times out may still have made it.
        self.broker_url = self.broker.vhost_url(self.name)
        self.broker.create_vhost(self.name)
        self.db_url = create_database(self.backend, self.tmp, self.name)
        self.env = {
            **os.environ,
            "ONBOARD_ENV": "test",
            "SECRET_KEY": "test-secret-" + self.name,
            "DATABASE_URL": self.db_url,
            "CELERY_BROKER_URL": self.broker_url,
            "CELERY_RESULT_BACKEND": "db+" + self.db_url,
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(self.smtp.port),
            "MAIL_TIMEOUT": "5",
            "MAIL_RETRY_BACKOFF_MAX": "1",
            "BASE_URL": "http://127.0.0.1:8000",
            "INSTANCE_DIR": str(self.tmp / "instance"),
            "MEDIA_ROOT": str(self.tmp / "media"),
            "REGISTRATION_CAPTCHA": "false",
            "RATELIMIT_ENABLED": "false",
            "OUTBOX_RELAY_AFTER": "1",
            "PYTHONPATH": str(ROOT),
            **self.env_overrides,
        }
        subprocess.run([FLASK, "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=self.env,
                       check=True, capture_output=True, timeout=120)
        from webapp import config as config_module
        from webapp import create_app

        self.app = create_app({**config_module.from_env(self.env), "TESTING": True,
                               "RATELIMIT_ENABLED": False})
        self.celery = self.app.extensions["celery"]
        if worker:
            self.start_worker()

    def start_worker(self, concurrency: int = 2, queues: str = "mail,images,celery",
                     extra_env: dict[str, str] | None = None, include: str | None = None,
                     pool: str = "prefork", app: str = "celery_app", events: bool = True,
                     loglevel: str = "INFO", prefix: str = "w") -> Proc:
        """Start a real ``celery worker`` on this stack and wait until it answers ping.

        Args:
            concurrency: ``-c``; queues: ``-Q`` (comma-separated).
            include: extra task modules (``--include``), e.g. a test's own tasks.
            pool, app, events: ``-P``, ``-A`` and ``-E`` (benchmarks vary them).
            prefix: node name prefix; the node is ``<prefix><n>-<stack name>@<host>``.

        Returns:
            The worker; ``proc.node`` is its full node name. Its log is
            ``tmp/worker<n>.log``.

        Raises:
            RuntimeError: the worker exited; TimeoutError: no ping answer in 60 s.
        """
        n = len(self.workers)
        node = f"{prefix}{n}-{self.name}@{socket.gethostname()}"
        args = [CELERY, "-A", app, "worker", "-Q", queues, "-c", str(concurrency), "-P", pool,
                "-n", node, "--without-mingle", "--without-gossip", f"--loglevel={loglevel}",
                *(["-E"] if events else []), *(["--include", include] if include else [])]
        proc = Proc(args, self.tmp / f"worker{n}.log", {**self.env, **(extra_env or {})})
        proc.node = node  # type: ignore[attr-defined]
        self.workers.append(proc)
        wait_until(lambda: not proc.alive() or any(
            node in reply for reply in (self.celery.control.ping(timeout=0.5) or [])),
            60, what="worker ping")
        proc.check_alive("celery worker")
        return proc

    def stop_worker(self, proc: Proc, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Stop a worker: SIGTERM is a warm shutdown; SIGKILL hits its whole
        process group at once, as a crash would."""
        proc.stop(sig, timeout)
        if proc in self.workers:
            self.workers.remove(proc)

    def start_beat(self) -> Proc:
        """Start ``celery beat`` on this stack (its schedule file under ``tmp``)."""
        n = len(self.beats)
        proc = Proc([CELERY, "-A", "celery_app", "beat", "--loglevel=INFO",
                     "-s", str(self.tmp / f"beat-schedule-{n}")],
                    self.tmp / f"beat{n}.log", self.env)
        self.beats.append(proc)
        return proc

    def client(self) -> Any:
        """A new Flask test client with its own cookie jar."""
        return self.app.test_client()

    def stop(self) -> None:
        """Stop beat and workers, the SMTP sink; drop the database and vhost.
        Safe on a stack that failed half-way through :meth:`start`."""
        for proc in [*self.beats, *self.workers]:
            proc.stop(timeout=30)
        self.beats.clear()
        self.workers.clear()
        if getattr(self, "smtp", None) is not None:
            self.smtp.stop()
        if getattr(self, "app", None) is not None:
            from webapp.extensions import db

            with self.app.app_context():
                db.engine.dispose()
        try:
            drop_database(self.backend, self.name)
        except Exception:  # noqa: BLE001 - teardown is best effort
            pass
        self.broker.delete_vhost(self.name)
