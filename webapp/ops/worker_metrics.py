"""Task metrics counted inside Celery workers (Celery signals → prometheus-client).

Why here: tasks run in the worker's pool processes, which the web process
cannot see. Each worker node writes prometheus-client *multiprocess* files
(one per pool process) into ``WORKER_METRICS_DIR/<node name>/``, wiped when the
node starts. They are exposed two ways:

* the web's ``/metrics`` merges every node folder it can read (one host, or a
  shared folder), see :mod:`webapp.metrics`;
* with ``WORKER_METRICS_PORT`` set, the worker's main process also serves them
  itself on ``127.0.0.1:<port>/metrics`` (``prometheus_client.start_http_server``)
  for a Prometheus on the worker's host.

Metrics: ``onboard_tasks_total{task,state}`` (state ``succeeded|failed|retried``)
and ``onboard_task_runtime_seconds{task}`` (a histogram; image processing time is
``task="webapp.tasks.images.process_image"``).

This module is in Celery's ``imports``, so its signal handlers are connected in
every worker before ``worker_init`` fires.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from celery import signals

log = logging.getLogger(__name__)

TASKS: Any = None
RUNTIME: Any = None
_started: dict[str, float] = {}


def node_dir(base: str, hostname: str) -> Path:
    """The metrics folder of one worker node (its name made filesystem-safe)."""
    return Path(base) / re.sub(r"[^A-Za-z0-9_.@-]", "_", hostname)


def setup(base: str, hostname: str, port: int = 0) -> Path:
    """Switch prometheus-client to multiprocess values and create the task metrics.

    Must run in the worker's main process before the pool forks (``worker_init``),
    so every pool process inherits the multiprocess value class; each process then
    writes its own ``*_<pid>.db`` file.

    Args:
        base: ``WORKER_METRICS_DIR``.
        hostname: the worker node name (``w1@host``).
        port: when > 0, also serve the node's metrics on ``127.0.0.1:port``.

    Returns:
        The node's metrics folder.
    """
    global TASKS, RUNTIME
    from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server, values
    from prometheus_client.multiprocess import MultiProcessCollector

    folder = node_dir(base, hostname)
    shutil.rmtree(folder, ignore_errors=True)  # a restarted node starts from zero
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    values.ValueClass = values.MultiProcessValue()
    TASKS = Counter("onboard_tasks", "Celery tasks finished, by task name and outcome.",
                    ["task", "state"], registry=None)
    RUNTIME = Histogram("onboard_task_runtime_seconds", "Celery task run time in seconds.",
                        ["task"], registry=None,
                        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
    if port > 0:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(folder))
        start_http_server(port, addr="127.0.0.1", registry=registry)
        log.info("worker metrics on http://127.0.0.1:%d/metrics", port)
    return folder


@signals.worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    from webapp.config import from_env

    cfg = from_env()
    try:
        setup(cfg["WORKER_METRICS_DIR"], getattr(sender, "hostname", None) or f"pid{os.getpid()}",
              cfg["WORKER_METRICS_PORT"])
    except Exception:  # metrics must never stop the worker
        log.exception("worker metrics disabled")


@signals.task_prerun.connect
def _on_prerun(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _started[task_id] = time.monotonic()


@signals.task_postrun.connect
def _on_postrun(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
    start = _started.pop(task_id or "", None)
    if RUNTIME is not None and start is not None and sender is not None:
        RUNTIME.labels(sender.name).observe(time.monotonic() - start)


def _count(sender: Any, state: str) -> None:
    if TASKS is not None and sender is not None:
        TASKS.labels(getattr(sender, "name", str(sender)), state).inc()


@signals.task_success.connect
def _on_success(sender: Any = None, **_: Any) -> None:
    _count(sender, "succeeded")


@signals.task_failure.connect
def _on_failure(sender: Any = None, **_: Any) -> None:
    _count(sender, "failed")


@signals.task_retry.connect
def _on_retry(sender: Any = None, **_: Any) -> None:
    _count(sender, "retried")
