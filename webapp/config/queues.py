"""Broker topology: the task exchange, the three task queues and their
dead-letter queues on RabbitMQ.

Used by :mod:`webapp.config.celery_settings` (``task_queues``) and by workers,
which declare the dead-letter queues at start-up (:mod:`webapp.tasks.mail`).
"""
from __future__ import annotations

from typing import Any

from kombu import Exchange, Queue

#: Exchange of every task queue. A topic exchange, because RabbitMQ quorum queues
#: delay retries with Celery's native delayed delivery, which cannot route
#: through a direct exchange. (An exchange's type cannot change, hence a name
#: of its own.)
TASK_EXCHANGE = "onboard.tasks"
#: Dead-letter exchange: a message redelivered more than ``x-delivery-limit``
#: times (a task that keeps killing its worker) goes to ``<queue>.dlq``.
DEAD_LETTER_EXCHANGE = "onboard.dlx"
TASK_QUEUE_NAMES = ("mail", "images", "celery")


def celery_queues(delivery_limit: int = 10, queue_type: str = "quorum") -> tuple[Queue, ...]:
    """The three durable task queues: ``mail``, ``images``, ``celery``.

    Each is a RabbitMQ quorum queue (replicated, and it counts redeliveries) bound
    to the topic exchange :data:`TASK_EXCHANGE` by a routing key equal to its
    name, so ``task_routes`` only needs to name the queue. A message delivered
    more than ``delivery_limit`` times is dead-lettered (``at-least-once``, which
    RabbitMQ allows only with ``x-overflow: reject-publish``) to
    ``<name>.dlq``; the outbox relay republishes a mail whose message was lost
    this way (see :func:`webapp.outbox.relay_unpublished`).

    Args:
        delivery_limit: redeliveries (worker crashes, rejects) before a message
            is dead-lettered.
        queue_type: ``"quorum"``; ``"classic"`` for a broker without quorum
            queues (no delivery limit nor dead-lettering then).

    Returns:
        The task queues (their dead-letter queues: :func:`dead_letter_queues`).

    Note: a classic queue of the same name cannot be redeclared as quorum
    (``406 PRECONDITION_FAILED``); on a broker with queues from an older run,
    ``rabbitmqctl delete_queue mail`` (and ``images``, ``celery``) once.
    """
    exchange = Exchange(TASK_EXCHANGE, type="topic", durable=True)
    queues: list[Queue] = []
    for name in TASK_QUEUE_NAMES:
        # Classic: no arguments, so queues declared by older code stay equivalent.
        args: dict[str, Any] = {}
        if queue_type == "quorum":
            args.update({
                "x-queue-type": "quorum",
                "x-delivery-limit": delivery_limit,
                "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                # Retried messages come back from the delayed-delivery exchanges
                # with a longer routing key: dead-letter under the plain name.
                "x-dead-letter-routing-key": name,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            })
        queues.append(Queue(name, exchange, routing_key=name, durable=True,
                            queue_arguments=args))
    return tuple(queues)


def dead_letter_queues() -> tuple[Queue, ...]:
    """``mail.dlq``, ``images.dlq``, ``celery.dlq``: where quorum queues put a
    message delivered more than ``x-delivery-limit`` times.

    Nobody consumes them; workers declare them at start-up (see
    :mod:`webapp.tasks.mail`) so a dead-lettered message is kept for an operator
    (``rabbitmqctl list_queues name messages``). They are not in ``task_queues``,
    so Celery never routes tasks to them.
    """
    dlx = Exchange(DEAD_LETTER_EXCHANGE, type="direct", durable=True)
    return tuple(Queue(f"{name}.dlq", dlx, routing_key=name, durable=True,
                       queue_arguments={"x-queue-type": "quorum"})
                 for name in TASK_QUEUE_NAMES)
