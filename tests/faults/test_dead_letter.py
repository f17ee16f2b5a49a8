"""A poison message: a task that kills its worker on every delivery ends in the
queue's dead-letter queue after ``x-delivery-limit`` redeliveries, instead of
crashing workers for ever; the worker keeps serving the next mail.

Real parts: the shared RabbitMQ (own vhost) with the site's quorum queues
(``CELERY_DELIVERY_LIMIT`` 2 here, 10 by default), a real prefork worker, an
aiosmtpd sink, SQLite.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from kombu import Connection

from tests.conftest import new_email, register
from tests.harness.counts import Counts
from tests.harness.stack import Stack
from tests.harness.wait import wait_until
from webapp.broker import queue_depth

LIMIT = 2


def take_one(broker_url: str, name: str) -> Any:
    """``basic.get`` one message from ``name`` (acked), or ``None``."""
    with Connection(broker_url) as conn:
        return conn.default_channel.basic_get(queue=name, no_ack=True)


def test_poison_message_is_dead_lettered_after_the_delivery_limit(tmp_path: Path) -> None:
    stack = Stack("sqlite", tmp_path / "stack",
                  env_overrides={"CELERY_DELIVERY_LIMIT": str(LIMIT)}).start(worker=False)
    try:
        worker = stack.start_worker(include="tests.faults.poison")
        deaths = tmp_path / "deliveries.log"
        result = stack.celery.send_task("tests.faults.poison.die", args=[str(deaths)],
                                        queue="mail")

        wait_until(lambda: queue_depth(stack.broker_url, "mail.dlq").messages == 1, 60,
                   interval=0.25, what="the poison message in mail.dlq")
        deliveries = deaths.read_text().split()
        message = take_one(stack.broker_url, "mail.dlq")
        headers = message.properties.get("application_headers") or {}
        death = (headers.get("x-death") or [{}])[0]
        Counts("poison-message", attempted=1, extra={
            "deliveries": len(deliveries), "pool_processes_killed": len(set(deliveries)),
            "dead_lettered_from": death.get("queue"), "reason": death.get("reason")}).report()

        # Delivered once, then redelivered LIMIT times, each time killing a pool process.
        assert len(deliveries) == LIMIT + 1
        assert len(set(deliveries)) == LIMIT + 1
        assert headers.get("id") == result.id and headers.get("task") == "tests.faults.poison.die"
        assert death.get("reason") == "delivery_limit" and death.get("queue") == "mail"
        assert queue_depth(stack.broker_url, "mail").messages == 0

        # The worker (its main process) survived and still sends mail.
        assert worker.alive()
        email = new_email("after-poison")
        assert register(stack.client(), email).status_code == 303
        stack.smtp.wait_for(email, timeout=30)
    finally:
        stack.stop()
