"""Publish-after-commit: send one task per committed row, never letting a page hang.

The mail outbox (:mod:`webapp.outbox`, task ``send_mail``) and uploads
(:mod:`webapp.uploads.services`, task ``process_image``) commit a row first and
then call :func:`publish_after_commit` with the row ids, their task and how to
mark the rows published. Whatever the broker does, the caller gets an answer
within ``OUTBOX_PUBLISH_TIMEOUT`` seconds per row; a row not published is left for
its relay (run by celery beat), which calls this function again later.

Why a helper thread: RabbitMQ under a memory or disk alarm accepts connections
but blocks publishers, so no publisher confirm ever comes, and kombu's publish
(and its clean-up) can then wait with no time-out of its own: a publish made on
the request's own thread holds the page for as long as the alarm lasts
(measured: ``POST /uploads`` took 90 s under a 90 s alarm). The time-out is
checked by ``tests/faults/test_publish_blocked.py``.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from celery import Task
from flask import current_app

from webapp.extensions import db

log = logging.getLogger(__name__)

_pause_lock = threading.Lock()


def _pause_state() -> dict[str, float]:
    """Per app (so per process in production): after a failed publish, don't
    try again before the monotonic time ``until``. Mail and images share it:
    they share the broker."""
    return current_app.extensions.setdefault("publish_pause", {"until": 0.0})


def broker_paused() -> bool:
    """True while this app skips publishing after a broker failure.

    Returns:
        True for ``OUTBOX_PUBLISH_PAUSE`` seconds after a publish failed or timed
        out in this app (any task), else False.
    """
    return time.monotonic() < _pause_state()["until"]


def _pause_after_failure() -> None:
    """Skip publishing in this app for ``OUTBOX_PUBLISH_PAUSE`` seconds."""
    with _pause_lock:
        _pause_state()["until"] = time.monotonic() + current_app.config["OUTBOX_PUBLISH_PAUSE"]


def _executor() -> ThreadPoolExecutor:
    """This app's publishing thread, made per process (a forked worker child
    must not inherit an executor whose thread stayed in the parent)."""
    key = f"publisher_{os.getpid()}"
    executor = current_app.extensions.get(key)
    if executor is None:
        executor = current_app.extensions[key] = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="publish")
    return executor


def _send_all(task: Task, ids: list[int], done: list[int], wait: float) -> None:
    for row_id in ids:
        # retry=False: answer the page now; the relay retries later.
        task.apply_async(args=[row_id], retry=False, timeout=wait, confirm_timeout=wait)
        done.append(row_id)


def publish_after_commit(task: Task, ids: Iterable[int],
                         mark_published: Callable[[list[int]], object] | None, *,
                         what: str,
                         mark_missed: Callable[[list[int]], object] | None = None) -> list[int]:
    """Publish ``task(id)`` for each committed row, then mark those rows published.

    Call only after the commit that wrote the rows. Each publish waits for the
    broker's confirm (``confirm_publish``) but never retries (``retry=False``);
    the whole call gives up after ``OUTBOX_PUBLISH_TIMEOUT`` seconds without one
    more confirm (for one row, the longest a page waits). A failure or time-out
    is logged, not raised, so a page never fails because the broker is down: the
    rows stay unpublished for the caller's relay. After a failure this app skips
    publishing for ``OUTBOX_PUBLISH_PAUSE`` seconds (see :func:`broker_paused`),
    so a dead broker costs one time-out, not one per page.

    Args:
        task: the Celery task taking one row id, e.g.
            :func:`webapp.tasks.mail.send_mail`. It is sent through this Flask
            app's own Celery app (``current_app.extensions["celery"]``), so its
            broker is this app's broker even when a process holds several apps.
        ids: primary keys (ints) of committed rows.
        mark_published: called on this thread with the ids the broker confirmed
            (a non-empty list); it adds the UPDATE to ``db.session``, which this
            function then commits. ``None`` when the rows were written marked
            published already (then give ``mark_missed``).
        what: a word for the log lines (``"outbox"``, ``"upload"``).
        mark_missed: called with the ids the broker did not confirm (paused,
            failed, timed out; a non-empty list); it adds an UPDATE that clears
            their mark, which this function then commits.

    Returns:
        The ids the broker confirmed, now marked published and committed; ``[]``
        when paused or nothing was confirmed. A publish that is confirmed after
        the time-out is not marked: the relay publishes that row again, which is
        harmless because both tasks are idempotent per row.
    """
    ids = list(ids)
    if not ids:
        return []
    if broker_paused():
        log.info("%s %s left for the relay (broker failed recently)", what, ids)
        _record(ids, [], mark_published, mark_missed)
        return []
    cfg = current_app.config
    bound = current_app.extensions["celery"].tasks[task.name]
    wait = cfg["OUTBOX_PUBLISH_TIMEOUT"]
    sent: list[int] = []
    future = _executor().submit(_send_all, bound, ids, sent, wait)
    error: BaseException | None = None
    progress = 0
    while True:  # give up after `wait` seconds without one more confirm
        try:
            future.result(timeout=wait)
            break
        except FutureTimeout:
            if len(sent) == progress:
                error = TimeoutError(f"no confirm within {wait}s")
                break
            progress = len(sent)
        except Exception as exc:  # kombu raises several types for a dead broker
            error = exc
            break
    done = list(sent)  # a late publish after a time-out is left to the relay
    if error is not None:
        _pause_after_failure()
        log.warning("%s %s not published (%s: %s); the relay will retry", what,
                    [i for i in ids if i not in done], type(error).__name__, error)
    _record(ids, done, mark_published, mark_missed)
    return done


def _record(ids: list[int], done: list[int],
            mark_published: Callable[[list[int]], object] | None,
            mark_missed: Callable[[list[int]], object] | None) -> None:
    """Write which rows were published (or, for pre-marked rows, which were
    not) in one committed transaction; nothing when there is nothing to say."""
    missed = [i for i in ids if i not in done]
    wrote = False
    if done and mark_published is not None:
        mark_published(done)
        wrote = True
    if missed and mark_missed is not None:
        mark_missed(missed)
        wrote = True
    if wrote:
        db.session.commit()


def publish_message(task: Task, args: list[Any], *, what: str) -> bool:
    """Publish one ``task(*args)`` message with the same bounds as
    :func:`publish_after_commit`, for a request that has no row of its own.

    Args:
        task: the Celery task, sent through this Flask app's Celery app.
        args: JSON-serialisable positional arguments.
        what: a word for the log line.

    Returns:
        True when the broker confirmed the message within
        ``OUTBOX_PUBLISH_TIMEOUT`` seconds; False when publishing is paused or
        failed (then paused for ``OUTBOX_PUBLISH_PAUSE`` seconds). Never raises
        for a broker error: the caller decides what to do instead.
    """
    if broker_paused():
        return False
    wait = current_app.config["OUTBOX_PUBLISH_TIMEOUT"]
    bound = current_app.extensions["celery"].tasks[task.name]
    future = _executor().submit(bound.apply_async, args=args, retry=False,
                                timeout=wait, confirm_timeout=wait)
    try:
        future.result(timeout=wait)
        return True
    except Exception as exc:  # a time-out, or one of kombu's several errors for a dead broker
        _pause_after_failure()
        log.warning("%s not published (%s: %s)", what, type(exc).__name__, exc)
        return False
