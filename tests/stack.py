"""Real parts for tests: a RabbitMQ virtual host, an SMTP sink, a database, a
Celery worker process and the Flask app wired to them.

Each :class:`Stack` gets its own RabbitMQ vhost, so runs (and stacks inside a
run) never see each other's messages, and its own database: a SQLite file or a
fresh PostgreSQL database. The schema is built by ``flask db upgrade`` (the real
migrations), and the worker is a real ``celery worker`` subprocess.
"""
from __future__ import annotations

import email
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import psycopg
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer, Envelope, Session

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CELERY = str(Path(PYTHON).with_name("celery"))
FLASK = str(Path(PYTHON).with_name("flask"))
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_BASE = os.environ.get("TEST_PG_BASE", "postgresql+psycopg://postgres@127.0.0.1:5432/")
RABBIT_HOST = os.environ.get("TEST_RABBIT_HOST", "127.0.0.1:5672")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05,
               what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns a truthy value; ``TimeoutError`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --- SMTP sink -----------------------------------------------------------------------


class SinkHandler:
    """aiosmtpd handler that keeps every accepted message.

    ``mode`` picks the answer to DATA: ``"ok"`` (250), ``"reject"`` (550, a
    permanent failure) or ``"tempfail"`` (451, a transient one).
    """

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.mode = "ok"
        self.refused = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.mode == "reject":
            self.refused += 1
            return "550 5.1.1 Mailbox unavailable"
        if self.mode == "tempfail":
            self.refused += 1
            return "451 4.3.0 Try again later"
        msg = email.message_from_bytes(envelope.original_content or b"")
        with self.lock:
            self.messages.append(msg)
        return "250 OK"


class SMTPSink:
    """A real SMTP server on 127.0.0.1 (aiosmtpd) that tests can read and break."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.handler = SinkHandler()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> SMTPSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[Message]:
        with self.handler.lock:
            return list(self.handler.messages)

    def to(self, address: str) -> list[Message]:
        """Messages whose To header names ``address`` (a raw UTF-8 header, as an
        SMTPUTF8 mail has, is parsed as a ``Header`` object: compare its text)."""
        return [m for m in self.messages if address in str(m.get("To") or "")]

    def wait_for(self, address: str, count: int = 1, timeout: float = 30.0) -> list[Message]:
        """Wait until ``count`` messages to ``address`` arrived; returns them."""
        return wait_until(lambda: (msgs := self.to(address)) and len(msgs) >= count and msgs,
                          timeout, what=f"{count} mail(s) to {address}")


def text_body(msg: Message) -> str:
    """The ``text/plain`` part of a message, decoded."""
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
    raise AssertionError("no text/plain part")


def html_body(msg: Message) -> str:
    """The ``text/html`` part of a message, decoded."""
    for part in msg.walk():
        if part.get_content_type() == "text/html":
            return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
    raise AssertionError("no text/html part")


# --- RabbitMQ vhost ------------------------------------------------------------------


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def create_vhost(name: str) -> str:
    """Create a RabbitMQ vhost with full rights for guest; returns the broker URL."""
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    return f"amqp://guest:guest@{RABBIT_HOST}/{name}"


def delete_vhost(name: str) -> None:
    try:
        rabbitmqctl("delete_vhost", name)
    except Exception:  # best effort at teardown
        pass


# --- databases -----------------------------------------------------------------------


def create_database(backend: str, tmp: Path, name: str) -> str:
    """A new empty database; returns its SQLAlchemy URL."""
    if backend == "sqlite":
        return f"sqlite:///{tmp / (name + '.db')}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_BASE + name


def drop_database(backend: str, name: str) -> None:
    if backend != "postgresql":
        return
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the stack -----------------------------------------------------------------------


@dataclass
class Stack:
    """A database, a vhost, an SMTP sink, a worker and the app, for one backend."""

    backend: str
    tmp: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    name: str = field(default_factory=lambda: "onboard_t_" + uuid.uuid4().hex[:10])
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, worker: bool = True) -> Stack:
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.smtp = SMTPSink().start()
        self.broker_url = create_vhost(self.name)
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
        return self

    def start_worker(self, concurrency: int = 2, queues: str = "mail,images,celery",
                     extra_env: dict[str, str] | None = None,
                     include: str | None = None) -> subprocess.Popen[bytes]:
        """Start a real ``celery worker`` on this stack and wait until it answers ping.

        ``include``: extra task modules (``--include``), e.g. a test's own tasks."""
        node = f"w{len(self.workers)}-{self.name}@%h"
        log = open(self.tmp / f"worker{len(self.workers)}.log", "ab")
        proc = subprocess.Popen(
            [CELERY, "-A", "celery_app", "worker", "-Q", queues, "-c", str(concurrency),
             "-n", node, "--without-mingle", "--without-gossip", "--loglevel=INFO", "-E",
             *(["--include", include] if include else [])],
            cwd=ROOT, env={**self.env, **(extra_env or {})}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.workers.append(proc)
        hostname = node.replace("%h", socket.gethostname())
        wait_until(lambda: proc.poll() is not None or any(
            hostname in reply for reply in (self.celery.control.ping(timeout=0.5) or [])),
            60, what="worker ping")
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited: see {log.name}")
        return proc

    def stop_worker(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
                    timeout: float = 30) -> None:
        """Stop a worker (its whole process group for SIGKILL, as a crash would)."""
        if proc.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if proc in self.workers:
            self.workers.remove(proc)

    def client(self) -> Any:
        """A new Flask test client with its own cookie jar."""
        return self.app.test_client()

    def stop(self) -> None:
        for proc in list(self.workers):
            self.stop_worker(proc)
        self.smtp.stop()
        try:
            from webapp.extensions import db

            with self.app.app_context():
                db.engine.dispose()
        except Exception:
            pass
        drop_database(self.backend, self.name)
        delete_vhost(self.name)


# --- browser tests -------------------------------------------------------------------

#: Debian's Chromium, headless, with no background traffic (the machine has no internet).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def launch_chromium(playwright: Any) -> Any:
    """Launch Debian's Chromium through Playwright (never a downloaded browser)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@contextmanager
def serve_http(app: Any) -> Iterator[str]:
    """Serve a WSGI app over real HTTP on a free loopback port (threaded Werkzeug);
    yields its base URL and stops the server afterwards."""
    from werkzeug.serving import make_server

    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(10)
