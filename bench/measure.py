"""What the benchmarks sample while they run: CPU time of process trees (psutil)
and a queue's depth."""
from __future__ import annotations

import threading
import time

import psutil

from webapp.broker import QueueNotFound, queue_depth


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its live
    descendants (gunicorn's workers, celery's pool). Processes that exited
    meanwhile no longer count, so measure across steady states.

    Raises:
        psutil.NoSuchProcess: ``pid`` itself is gone.
    """
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:  # exited between listing and reading
            continue
        total += t.user + t.system
    return total


def self_cpu() -> float:
    """CPU seconds (user + system) used so far by this process (the client and
    the SMTP sink threads)."""
    t = psutil.Process().cpu_times()
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
