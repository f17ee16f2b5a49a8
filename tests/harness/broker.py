"""RabbitMQ vhosts for tests: each stack gets its own, so runs never see each
other's messages.

A broker object makes and deletes vhosts and lists queue lengths through
``rabbitmqctl``; :class:`SharedBroker` is the machine's RabbitMQ (port 5672),
:class:`tests.harness.rabbit.RabbitNode` a private node with the same methods.
"""
from __future__ import annotations

import os

from tests.harness.procs import run_group


class Broker:
    """What a :class:`~tests.harness.stack.Stack` needs from RabbitMQ.

    Subclasses give :meth:`ctl` (run ``rabbitmqctl``) and :attr:`host`
    (``host:port`` of the AMQP listener).
    """

    host: str

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """Run ``rabbitmqctl -q args``; its stdout. RuntimeError on failure."""
        raise NotImplementedError

    def vhost_url(self, vhost: str) -> str:
        """The AMQP URL of ``vhost`` (guest/guest)."""
        return f"amqp://guest:guest@{self.host}/{vhost}"

    def create_vhost(self, name: str) -> str:
        """Create vhost ``name`` with full rights for guest; returns its URL."""
        self.ctl("add_vhost", name)
        self.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        return self.vhost_url(name)

    def delete_vhost(self, name: str) -> None:
        """Delete vhost ``name`` and its queues; best effort (teardown)."""
        try:
            self.ctl("delete_vhost", name)
        except Exception:  # noqa: BLE001 - a stopped node or a gone vhost
            pass

    def queue_lengths(self, vhost: str) -> dict[str, int]:
        """Ready + unacked messages per queue of ``vhost``."""
        out = self.ctl("list_queues", "-p", vhost, "name", "messages", "--no-table-headers")
        return {name: int(n) for name, n in (line.split() for line in out.splitlines()
                                              if line.strip())}


class SharedBroker(Broker):
    """The machine's RabbitMQ (``TEST_RABBIT_HOST``, default 127.0.0.1:5672)."""

    def __init__(self, host: str | None = None) -> None:
        self.host = host or os.environ.get("TEST_RABBIT_HOST", "127.0.0.1:5672")

    def ctl(self, *args: str, timeout: float = 60) -> str:
        out = run_group(["rabbitmqctl", "-q", *args], timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {out.stdout} {out.stderr}")
        return out.stdout


#: The shared broker every stack uses unless given another.
SHARED = SharedBroker()
