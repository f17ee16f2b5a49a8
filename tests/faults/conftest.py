"""Fixtures for fault tests: a private RabbitMQ node the tests may stop and
start, stacks wired to it, celery beat, and Jepsen-style counts.

The private node runs on free ports with its own data directory, so outages never
touch the shared broker on 5672. Full-size scenarios are marked ``slow`` and
skipped unless ``-m slow`` is given (or ``RUN_SLOW=1``).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.stack import CELERY, ROOT, Stack, free_port, wait_until

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``slow`` fault tests unless asked for with ``-m slow`` or RUN_SLOW=1."""
    if os.environ.get("RUN_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow (or RUN_SLOW=1)")
    here = Path(__file__).resolve().parent
    for item in items:
        if "slow" in item.keywords and here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


def _tool(name: str) -> str:
    """The RabbitMQ script itself, not Debian's wrapper that switches to the
    rabbitmq user (it would not see our private directory)."""
    path = RABBIT_BIN / name
    return str(path) if path.exists() else name


class RabbitNode:
    """A RabbitMQ node of our own: start, stop the broker app (an outage), stop.

    ``stop_app`` closes the AMQP listener and every connection (clients see
    "connection refused"), but keeps the Erlang node, so ``start_app`` brings the
    broker back in about a second with its durable queues and messages.
    """

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="onboard-rmq-"))
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"onboard-fault-{uuid.uuid4().hex[:8]}@localhost"
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            "log.console = false\n")
        (self.dir / "enabled_plugins").write_text("[].\n")
        self.env = {
            **os.environ,
            "HOME": str(self.dir),  # the Erlang cookie lives here, for server and CLI
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "rabbit.pid"),
        }
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def ctl(self, *args: str, timeout: float = 60) -> str:
        out = subprocess.run([_tool("rabbitmqctl"), "-q", "-n", self.node, *args],
                             env=self.env, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {out.stdout} {out.stderr}")
        return out.stdout

    def start(self) -> RabbitNode:
        log = open(self.dir / "server.out", "ab")
        self.proc = subprocess.Popen([_tool("rabbitmq-server")], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        # The node registers with epmd a moment after start; until then
        # await_startup fails at once, so poll with ping first.
        wait_until(lambda: self.proc.poll() is not None or _ok(self.ctl, "ping"), 90,
                   interval=0.5, what=f"{self.node} to answer ping")
        if self.proc.poll() is not None:
            raise RuntimeError(f"rabbitmq-server exited: see {self.dir / 'server.out'}")
        self.ctl("await_startup", "--timeout", "90", timeout=120)
        self.wait_port(True)
        return self

    def wait_port(self, open_: bool, timeout: float = 30) -> None:
        def check() -> bool:
            with socket.socket() as s:
                s.settimeout(0.5)
                return (s.connect_ex(("127.0.0.1", self.port)) == 0) == open_
        wait_until(check, timeout, interval=0.1, what=f"port {self.port} open={open_}")

    def outage_begin(self) -> None:
        self.ctl("stop_app")
        self.wait_port(False)

    def outage_end(self) -> None:
        self.ctl("start_app")
        self.wait_port(True)

    def memory_alarmed(self) -> bool:
        """True while the node has a memory alarm (``rabbit_alarm:get_alarms()``)."""
        return "memory" in self.ctl("eval", "rabbit_alarm:get_alarms().")

    @contextlib.contextmanager
    def memory_alarm(self) -> Iterator[None]:
        """Hold a memory alarm on this node: RabbitMQ keeps accepting connections
        but blocks every publishing one, so no publisher confirm comes. The
        watermark is set back to RabbitMQ's default (0.4) on the way out, and
        the alarm is cleared before this returns."""
        self.ctl("set_vm_memory_high_watermark", "absolute", "1")
        wait_until(self.memory_alarmed, 15, interval=0.1, what="memory alarm raised")
        try:
            yield
        finally:
            self.ctl("set_vm_memory_high_watermark", "0.4")
            wait_until(lambda: not self.memory_alarmed(), 15, interval=0.1,
                       what="memory alarm cleared")

    def vhost(self, name: str) -> str:
        self.ctl("add_vhost", name)
        self.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{name}"

    def queue_lengths(self, vhost: str) -> dict[str, int]:
        out = self.ctl("list_queues", "-p", vhost, "name", "messages", "--no-table-headers")
        return {name: int(n) for name, n in (line.split() for line in out.splitlines() if line.strip())}

    def stop(self) -> None:
        try:
            self.ctl("stop", timeout=60)
        except Exception:  # noqa: BLE001
            pass
        if getattr(self, "proc", None) is not None:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def rabbit() -> Iterator[RabbitNode]:
    """A private RabbitMQ node for the whole fault-test session."""
    node = RabbitNode().start()
    yield node
    node.stop()


@dataclass
class FaultStack(Stack):
    """A :class:`~tests.stack.Stack` on the private node (its own vhost there),
    plus a real ``celery beat`` running the outbox relay."""

    rabbit: Any = None
    beats: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, worker: bool = True) -> FaultStack:  # type: ignore[override]
        import tests.stack as stack_module

        vhost_url = self.rabbit.vhost(self.name)
        original = stack_module.create_vhost
        stack_module.create_vhost = lambda _name: vhost_url  # type: ignore[assignment]
        try:
            super().start(worker=worker)
        finally:
            stack_module.create_vhost = original  # type: ignore[assignment]
        return self

    def start_beat(self) -> subprocess.Popen[bytes]:
        """Start ``celery beat`` (relay every ``OUTBOX_RELAY_INTERVAL`` s)."""
        log = open(self.tmp / f"beat{len(self.beats)}.log", "ab")
        proc = subprocess.Popen(
            [CELERY, "-A", "celery_app", "beat", "--loglevel=INFO",
             "-s", str(self.tmp / f"beat-schedule-{len(self.beats)}")],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.beats.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.beats:
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
        self.beats.clear()
        import tests.stack as stack_module

        original = stack_module.delete_vhost
        stack_module.delete_vhost = lambda name: _quiet(self.rabbit.ctl, "delete_vhost", name)  # type: ignore[assignment]
        try:
            super().stop()
        finally:
            stack_module.delete_vhost = original  # type: ignore[assignment]


def _ok(fn: Any, *args: Any) -> bool:
    try:
        fn(*args, timeout=10)
        return True
    except Exception:  # noqa: BLE001
        return False


def _quiet(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - teardown is best effort
        pass


#: Fast settings for fault tests: relay every second, short retries.
FAULT_ENV = {
    "OUTBOX_RELAY_INTERVAL": "1",
    "OUTBOX_RELAY_AFTER": "1",
    "OUTBOX_PUBLISH_PAUSE": "2",
    "MAIL_RETRY_BACKOFF_MAX": "2",
    "MAIL_MAX_RETRIES": "60",
    "MAIL_CLAIM_TIMEOUT": "30",
    "CELERY_BROKER_CONNECTION_TIMEOUT": "2",
}


@pytest.fixture
def fault_stack(request: pytest.FixtureRequest, rabbit: RabbitNode,
                tmp_path: Path) -> Iterator[Any]:
    """``make(backend, env=..., worker=True)``: FaultStacks, stopped after the test."""
    made: list[FaultStack] = []

    def make(backend: str = "sqlite", env: dict[str, str] | None = None,
             worker: bool = True) -> FaultStack:
        s = FaultStack(backend, tmp_path / f"{backend}{len(made)}",
                       env_overrides={**FAULT_ENV, **(env or {})}, rabbit=rabbit)
        made.append(s)
        return s.start(worker=worker)

    yield make
    for s in made:
        s.stop()


@dataclass
class Counts:
    """Jepsen-style tally of a fault test, printed and asserted on."""

    name: str
    attempted: int = 0
    answered: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    tallied: bool = False

    def tally(self, message_ids: list[str], expected_ids: set[str]) -> Counts:
        """Count mails at the sink by Message-ID against the expected ones."""
        seen = Counter(message_ids)
        self.delivered = len(set(seen) & expected_ids)
        self.lost = len(expected_ids - set(seen))
        self.duplicated = sum(n - 1 for mid, n in seen.items() if mid in expected_ids and n > 1)
        self.tallied = True
        return self

    def report(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.extra.items())
        mails = (f" delivered={self.delivered} lost={self.lost} duplicated={self.duplicated}"
                 if self.tallied else "")
        line = (f"[{self.name}] attempted={self.attempted} answered={self.answered}{mails}"
                + (f" {extra}" if extra else ""))
        print("\n" + line)
        REPORTED.append(line)
        return line


#: Every count line of this run, repeated at the end of pytest's output.
REPORTED: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Show the Jepsen-style counts in the summary (pytest captures test output)."""
    if REPORTED:
        terminalreporter.section("fault counts")
        for line in REPORTED:
            terminalreporter.write_line(line)


def message_ids(stack: Stack) -> list[str]:
    """Message-ID headers of every mail the stack's SMTP sink accepted."""
    return [str(m["Message-ID"]) for m in stack.smtp.messages]


def elapsed(start: float) -> float:
    return round(time.monotonic() - start, 2)
