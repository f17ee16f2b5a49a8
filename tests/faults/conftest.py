"""Fixtures for fault tests: a private RabbitMQ node the tests may stop and
start (:class:`tests.harness.rabbit.RabbitNode`), stacks whose broker is that
node, and the Jepsen-style counts in pytest's summary
(:mod:`tests.harness.counts`).

The private node runs on free ports with its own data directory, so outages never
touch the shared broker on 5672. Full-size scenarios are marked ``slow`` and
skipped unless ``-m slow`` is given (or ``RUN_SLOW=1``).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.counts import REPORTED
from tests.harness.rabbit import RabbitNode
from tests.harness.stack import Stack

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``slow`` fault tests unless asked for with ``-m slow`` or RUN_SLOW=1."""
    if os.environ.get("RUN_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow (or RUN_SLOW=1)")
    here = Path(__file__).resolve().parent
    for item in items:
        if "slow" in item.keywords and here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Show the Jepsen-style counts in the summary (pytest captures test output)."""
    if REPORTED:
        terminalreporter.section("fault counts")
        for line in REPORTED:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def rabbit() -> Iterator[RabbitNode]:
    """A private RabbitMQ node for the whole fault-test session."""
    node = RabbitNode().start()
    yield node
    node.stop()


@pytest.fixture
def fault_stack(rabbit: RabbitNode, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """``make(backend="sqlite", env=None, worker=True)``: a started
    :class:`~tests.harness.stack.Stack` whose broker is the private node (its own
    vhost there) with :data:`FAULT_ENV` and ``env`` on top; every stack made is
    stopped after the test (its beat and workers first)."""
    made: list[Stack] = []

    def make(backend: str = "sqlite", env: dict[str, str] | None = None,
             worker: bool = True) -> Stack:
        s = Stack(backend, tmp_path / f"{backend}{len(made)}",
                  env_overrides={**FAULT_ENV, **(env or {})}, broker=rabbit)
        made.append(s)
        return s.start(worker=worker)

    yield make
    for s in made:
        s.stop()
