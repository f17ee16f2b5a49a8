"""What Onboard asks RabbitMQ directly: queue depths, and the upgrade of classic
task queues to quorum queues.

Everything here goes through kombu (AMQP 0-9-1), so it needs no management
plugin. A passive ``queue.declare`` (AMQP 0-9-1, *queue.declare* with
``passive=1``) answers a queue's ready-message and consumer counts without
creating or changing the queue, and ``404 NOT_FOUND`` when it does not exist.

The helpers are strict: a broker that cannot be reached raises instead of
reading as an empty queue, so a caller never mistakes an outage for "nothing
waiting". Callers that must keep going (``/metrics``) catch and report it.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from amqp.exceptions import NotFound, PreconditionFailed
from kombu import Connection

#: Seconds allowed to connect when a helper opens its own connection from a URL.
CONNECT_TIMEOUT = 5.0


class QueueDepth(NamedTuple):
    """A queue's state as RabbitMQ reports it to a passive declare."""

    #: Messages ready for delivery (not counting unacked ones held by consumers).
    messages: int
    #: Consumers subscribed to the queue.
    consumers: int


class QueueNotFound(LookupError):
    """The queue does not exist on the broker (``404 NOT_FOUND``)."""


def _connect(broker: str | Connection, timeout: float) -> tuple[Connection, bool]:
    """``(connection, opened_here)``; a URL opens a new connection, connected now."""
    if isinstance(broker, Connection):
        return broker, False
    conn = Connection(broker, connect_timeout=timeout)
    try:
        conn.ensure_connection(max_retries=1, timeout=timeout)
    except BaseException:
        conn.release()
        raise
    return conn, True


def queue_depth(broker: str | Connection, name: str, *,
                timeout: float = CONNECT_TIMEOUT) -> QueueDepth:
    """Ready messages and consumers of queue ``name``, from a passive declare.

    Args:
        broker: an AMQP URL (``amqp://user:pass@host:port/vhost``; a connection
            is opened and closed here) or an open kombu ``Connection`` (left
            open; a fresh channel is used and closed).
        name: the queue name (``"mail"``, ``"mail.dlq"`` …).
        timeout: seconds allowed to connect, when ``broker`` is a URL.

    Returns:
        :class:`QueueDepth` ``(messages, consumers)``.

    Raises:
        QueueNotFound: the queue does not exist (nothing is declared).
        kombu.exceptions.OperationalError, OSError: the broker cannot be reached
            or the connection broke; never reported as an empty queue.
    """
    conn, opened = _connect(broker, timeout)
    try:
        channel = conn.channel()
        try:
            ok = channel.queue_declare(queue=name, passive=True)
        except NotFound as exc:  # the broker closes the channel with it
            raise QueueNotFound(name) from exc
        else:
            channel.close()
        return QueueDepth(int(ok.message_count), int(ok.consumer_count))
    finally:
        if opened:
            conn.release()


def queue_depths(broker: str | Connection, names: Iterable[str], *,
                 timeout: float = CONNECT_TIMEOUT) -> dict[str, QueueDepth]:
    """:func:`queue_depth` of several queues over one connection.

    Args:
        broker: as for :func:`queue_depth`.
        names: queue names.
        timeout: seconds allowed to connect, when ``broker`` is a URL.

    Returns:
        ``{name: QueueDepth}``; a queue that does not exist yet is left out.

    Raises:
        kombu.exceptions.OperationalError, OSError: the broker cannot be reached.
    """
    conn, opened = _connect(broker, timeout)
    try:
        depths: dict[str, QueueDepth] = {}
        for name in names:
            try:
                depths[name] = queue_depth(conn, name)
            except QueueNotFound:
                continue
        return depths
    finally:
        if opened:
            conn.release()


def task_queue_depths(celery: Any, timeout: float) -> dict[str, QueueDepth]:
    """:func:`queue_depths` of the Celery app's ``task_queues`` (``mail``,
    ``images``, ``celery``) over its own broker connection.

    Args:
        celery: the Celery app.
        timeout: seconds allowed to connect.

    Raises:
        kombu.exceptions.OperationalError, OSError: the broker cannot be reached.
    """
    names = [queue.name for queue in celery.conf.task_queues or ()]
    with celery.connection_for_read(connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        return queue_depths(conn, names)


def upgrade_queues(celery: Any) -> dict[str, str]:
    """Make the task queues quorum queues on a broker that has classic ones.

    A classic queue cannot be redeclared as quorum (``406 PRECONDITION_FAILED``),
    so each task queue that refuses the quorum declaration is deleted if it is
    empty and declared again; a non-empty one is left alone (drain it first with
    the old workers). Queues that are already quorum, or missing, are declared.
    Idempotent: a second run answers ``"ok"`` for every queue.

    Args:
        celery: the Celery app (its ``task_queues`` are the wanted declarations).

    Returns:
        ``{queue name: "ok" | "converted" | "not empty: N messages"}``.

    Raises:
        kombu.exceptions.OperationalError, OSError: the broker cannot be reached.
    """
    result: dict[str, str] = {}
    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        for queue in celery.conf.task_queues:
            try:
                queue.bind(conn.channel()).declare()
                result[queue.name] = "ok"
                continue
            except PreconditionFailed:
                pass  # an older classic queue of that name
            messages = queue_depth(conn, queue.name).messages
            if messages:
                result[queue.name] = f"not empty: {messages} messages"
                continue
            channel = conn.channel()
            channel.queue_delete(queue.name, if_empty=True)
            queue.bind(channel).declare()
            result[queue.name] = "converted"
    return result
