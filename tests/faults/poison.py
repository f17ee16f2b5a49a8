"""A test-only task that kills its own worker process, as the kernel's OOM killer
or a crash in native code (libvips, a C extension) would. Loaded into a test
worker with ``--include tests.faults.poison``; never part of the site."""
from __future__ import annotations

import os
import signal

from celery import shared_task


@shared_task(name="tests.faults.poison.die", acks_late=True, reject_on_worker_lost=True)
def die(log_path: str) -> None:
    """Append one line to ``log_path`` (one per delivery), then SIGKILL this pool
    process. ``acks_late`` + ``reject_on_worker_lost`` as ``send_mail`` has them:
    the broker gets the message back after every death."""
    with open(log_path, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    os.kill(os.getpid(), signal.SIGKILL)
