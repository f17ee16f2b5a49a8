"""SMTP connections kept open across mails: one per process and thread.

Opening an SMTP session (TCP connect, greeting, EHLO, and STARTTLS and AUTH
when configured) and closing it (QUIT) cost more worker CPU than the mail
transaction itself; ``bench/README.md`` has the profile. RFC 5321 (section 3.3)
lets a client send any number of mail transactions over one session, so a
worker process keeps its session open between mails:

* before a kept session is used again it is checked with ``RSET`` (RFC 5321
  section 4.1.1.5: it also clears any half-finished transaction); a session
  that fails the check is closed and a new one opened, before anything of the
  next mail was sent, so the check never risks a duplicate;
* a session that raised anything while in use is closed, never reused;
* a session idle longer than its ``idle`` seconds is closed (``QUIT``) by a
  reaper thread, so an idle worker holds no connection the server would time
  out (servers wait at least 5 minutes, RFC 5321 section 4.5.3.2.7);
* after ``max_mails`` mails a session is closed and a new one opened, so a
  server's per-connection message limit is never met;
* :func:`close_all` closes every session of the process (called when a worker
  process shuts down, see :mod:`webapp.tasks.mail`).

Sessions are per thread (``threading.local``): the threads and gevent pools
give each thread or greenlet its own, and a forked child never uses its
parent's.
"""
from __future__ import annotations

import logging
import os
import smtplib
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Held:
    """One open session and what decides whether it may be used again."""

    host: smtplib.SMTP
    key: Hashable
    pid: int
    idle: float
    last_used: float = field(default_factory=time.monotonic)
    mails: int = 0
    busy: bool = False
    closed: bool = False


_local = threading.local()
_lock = threading.Lock()  # guards _held and each entry's busy/closed flags
_held: list[_Held] = []
_reaper: dict[int, threading.Thread] = {}  # pid → this process's reaper thread


def _close(entry: _Held, *, polite: bool) -> None:
    """Close a session; ``polite`` sends QUIT first (never raises)."""
    entry.closed = True
    if polite:
        with suppress(smtplib.SMTPException, OSError):
            entry.host.quit()
    with suppress(OSError):
        entry.host.close()


def _forget(entry: _Held) -> None:
    with _lock:
        if entry in _held:
            _held.remove(entry)
    if getattr(_local, "entry", None) is entry:
        _local.entry = None


def _reap_forever(period: float) -> None:
    """Reaper thread: every ``period`` seconds close the idle sessions."""
    while True:
        time.sleep(period)
        reap_idle()


def _start_reaper(idle: float) -> None:
    pid = os.getpid()
    with _lock:
        if pid in _reaper:
            return
        thread = threading.Thread(target=_reap_forever, args=(max(1.0, idle / 2),),
                                  name="smtp-reaper", daemon=True)
        _reaper[pid] = thread
    thread.start()


def reap_idle(now: float | None = None) -> int:
    """Close (QUIT) this process's sessions idle for longer than their ``idle``.

    Args:
        now: a ``time.monotonic()`` value; the current one by default.

    Returns:
        How many sessions were closed.
    """
    now = time.monotonic() if now is None else now
    pid = os.getpid()
    with _lock:
        stale = [e for e in _held
                 if e.pid == pid and not e.busy and now - e.last_used > e.idle]
        for entry in stale:
            _held.remove(entry)
            entry.closed = True  # its thread opens a new one at its next mail
    for entry in stale:
        _close(entry, polite=True)
    return len(stale)


def close_all() -> int:
    """Close (QUIT) every session this process holds; for worker shutdown.

    Returns:
        How many sessions were closed.
    """
    pid = os.getpid()
    with _lock:
        mine = [e for e in _held if e.pid == pid]
        for entry in mine:
            _held.remove(entry)
            entry.closed = True
    for entry in mine:
        _close(entry, polite=True)
    return len(mine)


def open_sessions() -> int:
    """How many sessions this process holds open now (for tests and metrics)."""
    pid = os.getpid()
    with _lock:
        return sum(1 for e in _held if e.pid == pid and not e.closed)


def _reusable(entry: _Held | None, key: Hashable, max_mails: int) -> _Held | None:
    """The thread's kept session if it may carry one more mail, marked busy;
    else ``None`` (a stale session is closed on the way)."""
    if entry is None:
        return None
    with _lock:
        usable = (not entry.closed and entry.pid == os.getpid() and entry.key == key
                  and entry.mails < max_mails
                  and time.monotonic() - entry.last_used <= entry.idle)
        if usable:
            entry.busy = True
        elif entry in _held:
            _held.remove(entry)
    if not usable:
        # A parent's session (after fork) is only dropped: its QUIT would end
        # the parent's conversation.
        if entry.pid == os.getpid() and not entry.closed:
            _close(entry, polite=True)
        _local.entry = None
        return None
    try:
        code, _msg = entry.host.rset()
    except (smtplib.SMTPException, OSError):
        code = 0
    if code != 250:
        _forget(entry)
        _close(entry, polite=False)
        return None
    return entry


@contextmanager
def session(key: Hashable, opener: Callable[[], smtplib.SMTP], *, idle: float,
            max_mails: int) -> Iterator[smtplib.SMTP]:
    """This thread's SMTP session for ``key``: the kept one (checked with RSET)
    or a new one from ``opener``.

    Args:
        key: what the session is bound to (server, port, TLS mode, user, CA
            file); a different key never reuses the session.
        opener: opens and logs in a new session (may raise ``smtplib`` or
            ``OSError`` errors, which propagate: nothing was sent).
        idle: seconds a session may stay unused before it is closed.
        max_mails: mails one session carries before it is replaced.

    Yields:
        An ``smtplib.SMTP`` ready for a mail transaction.

    Raises:
        Whatever ``opener`` or the body raise; a session that saw an exception
        is closed without QUIT and never used again.
    """
    entry = _reusable(getattr(_local, "entry", None), key, max_mails)
    if entry is None:
        entry = _Held(host=opener(), key=key, pid=os.getpid(), idle=idle, busy=True)
        with _lock:
            _held.append(entry)
        _local.entry = entry
        _start_reaper(idle)
    try:
        yield entry.host
    except BaseException:
        _forget(entry)
        _close(entry, polite=False)
        raise
    with _lock:
        entry.mails += 1
        entry.last_used = time.monotonic()
        entry.busy = False
