"""A private RabbitMQ node that tests may stop and start without touching the
shared broker on 5672: free ports, its own data directory and Erlang cookie."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.harness.broker import Broker
from tests.harness.procs import Proc, run_group
from tests.harness.wait import free_port, port_open, wait_until

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def _tool(name: str) -> str:
    """The RabbitMQ script itself, not Debian's wrapper that switches to the
    rabbitmq user (it would not see our private directory)."""
    path = RABBIT_BIN / name
    return str(path) if path.exists() else name


class RabbitNode(Broker):
    """A RabbitMQ node of our own: start, stop the broker app (an outage), stop.

    ``stop_app`` closes the AMQP listener and every connection (clients see
    "connection refused"), but keeps the Erlang node, so ``start_app`` brings the
    broker back in about a second with its durable queues and messages.

    Attributes:
        port: the AMQP port on 127.0.0.1.
        url: the default vhost's AMQP URL.
    """

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="onboard-rmq-"))
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.dist_port = free_port()
        self.node = f"onboard-fault-{uuid.uuid4().hex[:8]}@localhost"
        self.proc: Proc | None = None
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
        self.url = self.vhost_url("/")

    def ctl(self, *args: str, timeout: float = 60) -> str:
        out = run_group([_tool("rabbitmqctl"), "-q", "-n", self.node, *args], self.env, timeout)
        if out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {out.stdout} {out.stderr}")
        return out.stdout

    def start(self) -> RabbitNode:
        """Start the node and wait until it accepts AMQP connections.

        Raises:
            RuntimeError: the server exited (its output is in ``server.out``).
            TimeoutError: no answer within 90 s.
        """
        self.proc = Proc([_tool("rabbitmq-server")], self.dir / "server.out", self.env,
                         cwd=self.dir)
        # The node registers with epmd a moment after start; until then
        # await_startup fails at once, so poll with ping first.
        wait_until(lambda: not self.proc.alive() or self._answers_ping(), 90,
                   interval=0.5, what=f"{self.node} to answer ping")
        self.proc.check_alive("rabbitmq-server")
        self.ctl("await_startup", "--timeout", "90", timeout=120)
        self.wait_port(True)
        return self

    def _answers_ping(self) -> bool:
        try:
            self.ctl("ping", timeout=10)
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def wait_port(self, open_: bool, timeout: float = 30) -> None:
        """Wait until the AMQP port is open (``open_``) or closed."""
        wait_until(lambda: port_open(self.port) == open_, timeout, interval=0.1,
                   what=f"port {self.port} open={open_}")

    def outage_begin(self) -> None:
        """Stop the broker app: the listener closes, clients are refused."""
        self.ctl("stop_app")
        self.wait_port(False)

    def outage_end(self) -> None:
        """Start the broker app again and wait for its port."""
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
        the alarm is cleared before this returns.

        Raises:
            TimeoutError: the alarm was not raised (or cleared) within 15 s.
        """
        self.ctl("set_vm_memory_high_watermark", "absolute", "1")
        wait_until(self.memory_alarmed, 15, interval=0.1, what="memory alarm raised")
        try:
            yield
        finally:
            self.ctl("set_vm_memory_high_watermark", "0.4")
            wait_until(lambda: not self.memory_alarmed(), 15, interval=0.1,
                       what="memory alarm cleared")

    def vhost(self, name: str) -> str:
        """Create vhost ``name``; its URL (same as :meth:`create_vhost`)."""
        return self.create_vhost(name)

    def stop(self) -> None:
        """Stop the node (``rabbitmqctl stop``, then the process group) and remove
        its directory."""
        try:
            self.ctl("stop", timeout=60)
        except Exception:  # noqa: BLE001 - already down
            pass
        if self.proc is not None:
            self.proc.stop(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)
