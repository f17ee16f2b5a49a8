"""The outbox relay and the web's publish path under faults: a dead broker
port, a lost message, concurrent relays on PostgreSQL (``SKIP LOCKED``)."""
from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta
from typing import Any

import psycopg
from sqlalchemy import func, select, update

from tests.conftest import new_email, register
from tests.harness.counts import Counts, elapsed, message_ids
from tests.harness.rabbit import RabbitNode
from tests.harness.stack import Stack
from tests.harness.wait import wait_until
from webapp import outbox
from webapp.extensions import db
from webapp.mail import message_id_for
from webapp.models import OutboxMessage, utcnow


def test_signup_answers_when_broker_port_is_dead(fault_stack: Any) -> None:
    """A broker port that accepts TCP but never speaks AMQP (a hung broker or a
    black hole): the page still answers 303 within one connection timeout, the
    next pages don't wait at all (publishing pauses), rows stay for the relay."""
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(0)  # never accept(): connects hang in the backlog
    try:
        stack: Stack = fault_stack(
            "sqlite", worker=False,
            env={"CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{dead.getsockname()[1]}//",
                 "CELERY_BROKER_CONNECTION_TIMEOUT": "2", "OUTBOX_PUBLISH_PAUSE": "30"})
        client = stack.client()
        times, codes, emails = [], [], []
        for _ in range(5):
            email = new_email("deadport")
            emails.append(email)
            t = time.monotonic()
            codes.append(register(client, email).status_code)
            times.append(round(time.monotonic() - t, 3))
        with stack.app.app_context():
            rows = db.session.scalars(select(OutboxMessage)
                                      .where(OutboxMessage.to_address.in_(emails))).all()
            unpublished = sum(r.published_at is None for r in rows)
    finally:
        dead.close()
    Counts("dead-broker-port", attempted=5, answered=codes.count(303), extra={
        "page_s": times, "unpublished": unpublished}).report()
    assert codes == [303] * 5 and unpublished == 5
    assert times[0] < 2 + 3.0  # one connection timeout (2 s) plus the page's own work
    assert max(times[1:]) < 1.5  # paused: no broker wait at all


def test_signup_answers_when_broker_is_blocked(fault_stack: Any, rabbit: RabbitNode) -> None:
    """RabbitMQ under a memory alarm accepts connections but blocks publishers
    (no confirm ever comes): pages still answer within OUTBOX_PUBLISH_TIMEOUT,
    and every mail arrives once the alarm clears."""
    stack: Stack = fault_stack("sqlite", env={"OUTBOX_PUBLISH_TIMEOUT": "2",
                                                   "OUTBOX_PUBLISH_PAUSE": "30"})
    stack.start_beat()
    client = stack.client()
    emails, times, codes = [], [], []
    rabbit.ctl("set_vm_memory_high_watermark", "0.0000001")  # alarm: publishers blocked
    try:
        time.sleep(1)
        for _ in range(5):
            email = new_email("blocked")
            emails.append(email)
            t = time.monotonic()
            codes.append(register(client, email).status_code)
            times.append(round(time.monotonic() - t, 3))
        with stack.app.app_context():
            unpublished = db.session.scalar(
                select(func.count()).select_from(OutboxMessage)
                .where(OutboxMessage.to_address.in_(emails), OutboxMessage.published_at.is_(None)))
    finally:
        rabbit.ctl("set_vm_memory_high_watermark", "0.4")
    cleared = time.monotonic()
    with stack.app.app_context():
        expected = {message_id_for(r) for r in db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.to_address.in_(emails)))}
    try:
        wait_until(lambda: expected <= set(message_ids(stack)), 90, interval=0.25,
                   what="mails after the alarm")
    except TimeoutError:
        pass
    counts = Counts("broker-blocked", attempted=5, answered=codes.count(303), extra={
        "page_s": times, "unpublished_during_alarm": unpublished,
        "all_mail_after_alarm_s": elapsed(cleared)}).tally(message_ids(stack), expected)
    counts.report()
    assert codes == [303] * 5 and unpublished == 5
    assert times[0] < 2 + 3.0 and max(times[1:]) < 1.5
    assert counts.lost == 0 and counts.duplicated == 0


def test_lost_message_is_republished(fault_stack: Any, rabbit: RabbitNode) -> None:
    """A row published but whose message vanished (the queue was deleted) is
    republished by the relay after OUTBOX_REPUBLISH_AFTER and sent once."""
    stack: Stack = fault_stack("sqlite", worker=False,
                                    env={"OUTBOX_REPUBLISH_AFTER": "3"})
    email = new_email("lost")
    assert register(stack.client(), email).status_code == 303
    with stack.app.app_context():
        row = db.session.scalar(select(OutboxMessage).where(OutboxMessage.to_address == email))
        assert row.published_at is not None and row.publish_count == 1
        expected = {message_id_for(row)}
    rabbit.ctl("delete_queue", "-p", stack.name, "mail")  # the message is gone
    start = time.monotonic()
    stack.start_worker()
    stack.start_beat()
    stack.smtp.wait_for(email, timeout=60)
    time.sleep(4)  # another republish window: the sent row must stay alone
    with stack.app.app_context():
        row = db.session.scalar(select(OutboxMessage).where(OutboxMessage.to_address == email))
    counts = Counts("lost-message", attempted=1, answered=1, extra={
        "publish_count": row.publish_count, "seconds": elapsed(start)}).tally(
        message_ids(stack), expected)
    counts.report()
    assert counts.lost == 0 and counts.duplicated == 0
    assert row.publish_count == 2 and row.sent_at is not None
    # The worker declared the dead-letter queues and native delayed delivery.
    queues = rabbit.queue_lengths(stack.name)
    assert {"mail", "mail.dlq", "images.dlq", "celery.dlq", "celery_delayed_0"} <= set(queues)


def _old_rows(stack: Stack, n: int) -> list[int]:
    with stack.app.app_context():
        rows = [outbox.add("verify", new_email("relay")) for _ in range(n)]
        db.session.commit()
        ids = [r.id for r in rows]
        db.session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids))
                           .values(created_at=utcnow() - timedelta(minutes=1)))
        db.session.commit()
        return ids


def test_concurrent_relays_skip_locked_rows_on_postgresql(fault_stack: Any) -> None:
    """PostgreSQL: a relay skips rows another relay holds (FOR UPDATE SKIP
    LOCKED) instead of waiting or publishing them again."""
    stack: Stack = fault_stack("postgresql", worker=False)
    ids = _old_rows(stack, 300)
    dsn = stack.db_url.replace("postgresql+psycopg://", "postgresql://")

    def relay(out: list[int], limit: int = 300) -> None:
        with stack.app.app_context():
            out.append(outbox.relay_unpublished(0.0, limit=limit))

    # 1. Another relay's transaction holds the first 100 rows: ours must skip
    #    them, not block on them.
    with psycopg.connect(dsn) as holder:
        holder.execute("SELECT id FROM outbox_messages WHERE id = ANY(%s) FOR UPDATE",
                       (ids[:100],))
        got: list[int] = []
        t = threading.Thread(target=relay, args=(got,), daemon=True)
        t.start()
        t.join(30)
        assert not t.is_alive(), "the relay blocked on locked rows"
        holder.rollback()
    assert got == [200]

    # 2. Two relays at once over the 100 rows left: each row published once.
    results: list[int] = []
    barrier = threading.Barrier(2)

    def racing() -> None:
        barrier.wait()
        relay(results, limit=60)

    threads = [threading.Thread(target=racing) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    with stack.app.app_context():
        counts = db.session.scalars(select(OutboxMessage.publish_count)
                                    .where(OutboxMessage.id.in_(ids))).all()
    Counts("concurrent-relays", attempted=300, answered=300, extra={
        "relay_with_100_locked": got[0], "racing_relays": sorted(results),
        "published_twice": sum(c > 1 for c in counts)}).report()
    assert sorted(results) == [40, 60]
    assert all(c == 1 for c in counts)


def test_upgrade_queues_converts_empty_classic_queues(fault_stack: Any, rabbit: RabbitNode) -> None:
    """A broker with classic ``mail``/``images``/``celery`` queues from an older
    run: ``flask upgrade-queues`` converts the empty ones, refuses a full one."""
    from kombu import Connection, Exchange, Queue

    stack: Stack = fault_stack("sqlite", worker=False)
    old = Exchange("onboard", type="direct", durable=True)
    with Connection(stack.broker_url) as conn:
        for name in ("mail", "images", "celery"):
            Queue(name, old, routing_key=name, durable=True).bind(conn.channel()).declare()
        conn.Producer().publish({"x": 1}, exchange=old, routing_key="images")
    runner = stack.app.test_cli_runner()
    first = runner.invoke(args=["upgrade-queues"])
    with Connection(stack.broker_url) as conn:
        conn.channel().queue_purge("images")
    second = runner.invoke(args=["upgrade-queues"])
    types = dict(line.split()[:2] for line in rabbit.ctl(
        "list_queues", "-p", stack.name, "name", "type", "--no-table-headers").splitlines()
        if line.strip())
    Counts("upgrade-queues", attempted=3, answered=3, extra={
        "first": first.output.replace("\n", "; "), "second": second.output.replace("\n", "; "),
        "types": types}).report()
    assert first.exit_code == 1 and "mail: converted" in first.output
    assert "images: not empty: 1 messages" in first.output
    assert second.exit_code == 0 and "images: converted" in second.output
    assert {types[n] for n in ("mail", "images", "celery")} == {"quorum"}
