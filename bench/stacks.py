"""Real stacks for the benchmarks: :class:`tests.harness.stack.Stack` under a
temporary directory, removed afterwards."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tests.harness.stack import Stack


def start_stack(backend: str, worker: bool = True, env: dict[str, str] | None = None) -> Stack:
    """A started :class:`Stack` (vhost on the shared RabbitMQ, SMTP sink,
    database ``backend``, and a worker unless ``worker=False``)."""
    tmp = Path(tempfile.mkdtemp(prefix="onboard-bench-"))
    return Stack(backend, tmp, env_overrides=env or {}).start(worker=worker)


def stop_stack(stack: Stack) -> None:
    """Stop everything the stack started and remove its directory."""
    stack.stop()
    shutil.rmtree(stack.tmp, ignore_errors=True)
