"""Shared parts of the benchmark scripts.

Every script brings up real parts on loopback through :class:`tests.stack.Stack`
(a RabbitMQ vhost, an aiosmtpd sink, a database, Celery workers) plus gunicorn
for the web, measures, and prints:

* human-readable lines (figures, ratios against a baseline from the same run,
  PASS/FAIL per target, which processes ran), and
* one last line ``BENCH_JSON {...}`` that :mod:`bench.run_all` and the smoke test
  parse: ``{"name", "figures": {str: float}, "targets": [...], "processes": str,
  "notes": [str], "skipped": str | null}``.

Ratios matter more than absolute times: these machines are shared and drift.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # scripts run as ``python bench/x.py``
    sys.path.insert(0, str(ROOT))

from aiosmtpd.smtp import SMTP as SMTPServer, Envelope, Session  # noqa: E402

from tests.harness.mail import SinkHandler  # noqa: E402

from tests.harness.paths import CELERY, PYTHON  # noqa: E402

from tests.harness.stack import Stack  # noqa: E402

from tests.harness.wait import free_port, wait_until  # noqa: E402
from webapp.broker import QueueNotFound, queue_depth  # noqa: E402

GUNICORN = str(Path(PYTHON).with_name("gunicorn"))
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')
PASSWORD = "correct horse battery"
# aiosmtpd logs every SMTP command at INFO: thousands of lines per run.
logging.getLogger("mail.log").setLevel(logging.WARNING)


# --- arguments and results ------------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    """The common command line: ``--quick`` (tiny run for the smoke test) and
    ``--db sqlite|postgresql`` (default PostgreSQL, the production database)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny run (smoke test), seconds not minutes")
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql",
                   help="database backend of the stack (default: postgresql)")
    return p


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: list[float]) -> float:
    return percentile(values, 50)


@dataclass
class Report:
    """Figures, targets and notes of one benchmark; printed as text and JSON."""

    name: str
    figures: dict[str, float] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)
    skipped: str | None = None

    def figure(self, key: str, value: float, unit: str = "") -> None:
        """Record and print one figure (ms, /s, × ...)."""
        self.figures[key] = round(float(value), 3)
        print(f"  {key:<48} {value:>12.2f} {unit}", flush=True)

    def target(self, label: str, ok: bool, detail: str) -> None:
        """Record and print a target's PASS/FAIL with the figures behind it."""
        self.targets.append({"target": label, "pass": bool(ok), "detail": detail})
        print(f"  {'PASS' if ok else 'FAIL'}: {label} ({detail})", flush=True)

    def process(self, text: str) -> None:
        self.processes.append(text)
        print(f"  process: {text}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def emit(self) -> None:
        print("BENCH_JSON " + json.dumps({
            "name": self.name, "figures": self.figures, "targets": self.targets,
            "processes": "; ".join(self.processes), "notes": self.notes,
            "skipped": self.skipped}), flush=True)


# --- SMTP sinks -----------------------------------------------------------------------


class TimedSinkHandler(SinkHandler):
    """The test stack's sink handler plus the acceptance time of each recipient
    (``time.monotonic()`` of this process) and an optional delay before the 250
    answer (``delay`` seconds, ``asyncio.sleep`` so other sessions go on)."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.accepted_at: dict[str, float] = {}

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        answer = await super().handle_DATA(server, session, envelope)
        now = time.monotonic()
        if answer.startswith("250"):
            with self.lock:
                for rcpt in envelope.rcpt_tos:
                    self.accepted_at.setdefault(rcpt.lower(), now)
        return answer

    def count(self) -> int:
        with self.lock:
            return len(self.messages)


def timed_sink(stack: Stack, delay: float = 0.0) -> TimedSinkHandler:
    """Swap the stack's SMTP handler for a :class:`TimedSinkHandler`.

    aiosmtpd's controller builds one ``SMTP(handler)`` per connection, so new
    connections use the new handler.
    """
    handler = TimedSinkHandler(delay)
    stack.smtp.controller.handler = handler
    stack.smtp.handler = handler
    return handler


def slow_sink(delay: float) -> tuple[Any, TimedSinkHandler, int]:
    """A separate aiosmtpd server answering DATA after ``delay`` seconds.

    Returns ``(controller, handler, port)``; call ``controller.stop()`` when done.
    """
    from aiosmtpd.controller import Controller

    handler = TimedSinkHandler(delay)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, handler, port


# --- processes ------------------------------------------------------------------------


def start_stack(backend: str, worker: bool = True, env: dict[str, str] | None = None) -> Stack:
    """A :class:`tests.stack.Stack` under a temporary directory (vhost, sink, db,
    and a worker unless ``worker=False``)."""
    tmp = Path(tempfile.mkdtemp(prefix="onboard-bench-"))
    stack = Stack(backend, tmp, env_overrides=env or {})
    stack.start(worker=worker)
    return stack


def stop_stack(stack: Stack) -> None:
    stack.stop()
    shutil.rmtree(stack.tmp, ignore_errors=True)


class Gunicorn:
    """``gunicorn -w 2 -k gthread --threads 8 <app>`` on a free loopback port."""

    def __init__(self, app: str, env: dict[str, str], log: Path, workers: int = 2,
                 threads: int = 8, ready_path: str = "/register") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app, self.workers, self.threads = app, workers, threads
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(
            [GUNICORN, "-w", str(workers), "-k", "gthread", "--threads", str(threads),
             "-b", f"127.0.0.1:{self.port}", "--timeout", "120", app],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: self.proc.poll() is not None or self._answers(ready_path), 60,
                   interval=0.2, what=f"gunicorn {app}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"gunicorn {app} exited: see {log}")
        # Both workers import the app; warm each one up so the first measured
        # request does not pay for imports.
        for _ in range(4 * workers):
            self._answers(ready_path)

    def _answers(self, path: str) -> bool:
        import requests

        try:
            requests.get(self.url + path, timeout=5)
            return True
        except requests.RequestException:
            return False

    def describe(self) -> str:
        return f"gunicorn {self.app} -w {self.workers} -k gthread --threads {self.threads}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


def start_worker(stack: Stack, *, queues: str, concurrency: int = 2, pool: str = "prefork",
                 app: str = "celery_app", include: str | None = None, events: bool = True,
                 extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start a ``celery worker`` subprocess on ``stack`` and wait for its ping.

    Like ``Stack.start_worker`` but with the pool, the app module, ``--include``
    and ``-E`` chosen by the benchmark. Returns ``(process, hostname)``; stop it
    with ``stack.stop_worker(process)``.
    """
    node = f"bench{len(stack.workers)}-{stack.name}@{socket.gethostname()}"
    cmd = [CELERY, "-A", app, "worker", "-Q", queues, "-c", str(concurrency), "-P", pool,
           "-n", node, "--without-mingle", "--without-gossip", "--loglevel=WARNING"]
    if include:
        cmd += ["--include", include]
    if events:
        cmd.append("-E")
    log = open(stack.tmp / f"bench-worker{len(stack.workers)}.log", "ab")
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**stack.env, **(extra_env or {})}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    stack.workers.append(proc)
    wait_until(lambda: proc.poll() is not None or any(
        node in reply for reply in (stack.celery.control.ping(timeout=0.5) or [])),
        60, what="worker ping")
    if proc.poll() is not None:
        raise RuntimeError(f"worker exited: see {log.name}")
    return proc, node


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of process
    group ``pgid`` (gunicorn and celery run in their own sessions, so their
    group is their pid), read from ``/proc/<pid>/stat``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state ppid pgrp ...
            total += int(fields[11]) + int(fields[12])  # utime stime
    return total / tick


def self_cpu() -> float:
    """CPU seconds used so far by this process (the client and the SMTP sink)."""
    t = os.times()
    return t.user + t.system


class DepthSampler(threading.Thread):
    """Samples a queue's ready messages every ``interval`` seconds on its own
    connection (:func:`webapp.broker.queue_depth`); a queue not declared yet
    counts as 0. A broker error ends the sampling and is raised by :meth:`stop`."""

    def __init__(self, broker_url: str, queue: str, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.broker_url, self.queue, self.interval = broker_url, queue, interval
        self.samples: list[tuple[float, int]] = []
        self.error: BaseException | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        from kombu import Connection

        try:
            with Connection(self.broker_url) as conn:
                while not self.stopped.is_set():
                    try:
                        n = queue_depth(conn, self.queue).messages
                    except QueueNotFound:
                        n = 0
                    self.samples.append((time.monotonic(), n))
                    self.stopped.wait(self.interval)
        except Exception as exc:  # noqa: BLE001  (re-raised in stop())
            self.error = exc

    def stop(self) -> list[int]:
        """Stop sampling; the samples (messages), oldest first.

        Raises:
            Exception: the broker error that ended the sampling early.
        """
        self.stopped.set()
        self.join(5)
        if self.error is not None:
            raise self.error
        return [n for _t, n in self.samples]


# --- HTTP clients -------------------------------------------------------------------


def csrf_from(html: str) -> str:
    m = CSRF_RE.search(html)
    if not m:
        raise RuntimeError("no csrf_token in page")
    return m.group(1) or m.group(2)


def sign_up(base_url: str, email: str, path: str = "/register") -> tuple[float, int, float]:
    """One sign-up as a browser does it: GET the form (CSRF cookie and token),
    then POST. Returns ``(post_seconds, status, answered_at)`` where
    ``answered_at`` is ``time.monotonic()`` when the POST's answer arrived."""
    import requests

    with requests.Session() as s:
        page = s.get(base_url + path, timeout=30)
        token = csrf_from(page.text)
        data = {"email": email, "password": PASSWORD, "password_confirm": PASSWORD,
                "csrf_token": token}
        t0 = time.perf_counter()
        resp = s.post(base_url + path, data=data, allow_redirects=False, timeout=60)
        t1 = time.perf_counter()
        return t1 - t0, resp.status_code, time.monotonic()


# --- the machine ----------------------------------------------------------------------


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "?"


def machine_info() -> dict[str, str]:
    """nproc, CPU model, load, and versions of the parts measured."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "load average (1/5/15 min)": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "os": platform.platform(),
        "python": platform.python_version(),
    }
    for pkg in ("flask", "celery", "kombu", "gunicorn", "sqlalchemy", "psycopg", "argon2-cffi",
                "flask-limiter", "flower", "aiosmtpd"):
        info[pkg] = _version(pkg)
    try:
        out = subprocess.run(["rabbitmqctl", "-q", "version"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
        info["rabbitmq"] = out or "?"
    except Exception:
        info["rabbitmq"] = "?"
    try:
        import psycopg

        from tests.harness.databases import PG_ADMIN_URL

        with psycopg.connect(PG_ADMIN_URL) as conn:
            info["postgresql"] = conn.execute("show server_version").fetchone()[0]
    except Exception:
        info["postgresql"] = "?"
    return info


def header(title: str, args: argparse.Namespace) -> None:
    print(f"== {title} ({'quick' if args.quick else 'full'} mode, database {args.db}, "
          f"{len(os.sched_getaffinity(0))} cores, load {os.getloadavg()[0]:.2f}) ==", flush=True)
