"""The queue-depth helper against the real RabbitMQ: real counts, a missing queue
and an unreachable broker are told apart (never read as an empty queue).

Uses a vhost of its own on the shared broker, deleted afterwards.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kombu import Connection, Exchange, Queue
from kombu.exceptions import OperationalError

from tests.harness.broker import SHARED
from tests.harness.wait import free_port
from webapp.broker import QueueDepth, QueueNotFound, queue_depth, queue_depths


@pytest.fixture(scope="module")
def broker_url() -> Iterator[str]:
    name = "broker-" + uuid.uuid4().hex[:8]
    url = SHARED.create_vhost(name)
    yield url
    SHARED.delete_vhost(name)


def declare_with(url: str, name: str, messages: int) -> None:
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name, durable=True)
    with Connection(url) as conn:
        queue.bind(conn.default_channel).declare()
        with conn.Producer() as producer:
            for i in range(messages):
                producer.publish({"n": i}, exchange=queue.exchange, routing_key=name,
                                 declare=[queue])


def test_counts_messages_and_consumers(broker_url: str) -> None:
    declare_with(broker_url, "depth-three", 3)
    declare_with(broker_url, "depth-empty", 0)
    assert queue_depth(broker_url, "depth-three") == QueueDepth(messages=3, consumers=0)
    assert queue_depth(broker_url, "depth-empty") == QueueDepth(messages=0, consumers=0)
    with Connection(broker_url) as conn:  # a consumer shows up, the open connection stays usable
        queue = Queue("depth-three", Exchange("depth-three", type="direct"), routing_key="depth-three")
        with conn.Consumer(queue, callbacks=[lambda body, message: None], prefetch_count=1):
            assert queue_depth(conn, "depth-three").consumers == 1
        assert queue_depth(conn, "depth-empty").messages == 0


def test_missing_queue_is_not_an_empty_one(broker_url: str) -> None:
    with pytest.raises(QueueNotFound):
        queue_depth(broker_url, "no-such-queue")
    # queue_depths leaves it out and keeps going on the same connection.
    declare_with(broker_url, "depth-two", 2)
    assert queue_depths(broker_url, ["no-such-queue", "depth-two"]) == {
        "depth-two": QueueDepth(messages=2, consumers=0)}


def test_unreachable_broker_raises() -> None:
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    with pytest.raises(OperationalError):
        queue_depth(dead, "mail", timeout=1)
    with pytest.raises(OperationalError):
        queue_depths(dead, ["mail"], timeout=1)
