"""Transactional outbox for mail.

A change that causes a mail (a sign-up, say) adds an :class:`OutboxMessage` in the
same transaction (:func:`add`). After the commit the web process publishes the
send task at once (:func:`publish`, the fast path); if the broker is down the row
simply stays unpublished and :func:`relay_unpublished`, run by celery beat,
publishes it later. So a committed row always ends up published, and a rolled-back
one never is.

A row published long ago yet neither sent nor failed lost its message (a queue
deleted under a live producer, a message dead-lettered after too many
redeliveries): the relay republishes it after ``OUTBOX_REPUBLISH_AFTER`` seconds,
which is safe because sending is idempotent per row (:func:`webapp.mail.deliver`).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import and_, or_, select, update

from webapp.bounces import services as bounces
from webapp.extensions import db
from webapp.models import OutboxMessage, utcnow
from webapp.publisher import publish_after_commit
from webapp.tasks.mail import send_mail

log = logging.getLogger(__name__)

#: A row whose message was lost this many times is marked failed, not republished.
MAX_PUBLISHES = 5


def add(kind: str, to_address: str, *, user_id: int | None = None,
        context: dict[str, Any] | None = None, will_publish: bool = False) -> OutboxMessage:
    """Add an outbox row to the current session; the caller commits.

    Args:
        kind: mail kind, listed in :data:`webapp.mail_kinds.KINDS` (e.g. ``"verify"``).
        to_address: recipient address, already normalised.
        user_id: the user the mail is about, if any.
        context: JSON-serialisable values for the mail builder.
        will_publish: the caller calls ``publish(ids, premarked=True)`` right
            after its commit. The row is then written already marked published
            (``published_at`` now, ``publish_count`` 1), which saves a second
            transaction per mail on the hot path; a publish that fails clears the
            mark again, and a row whose publisher died between the commit and
            the publish is republished by :func:`relay_unpublished` after
            ``OUTBOX_UNCLAIMED_AFTER`` seconds.

    Returns:
        The pending row (its ``id`` is set once flushed).
    """
    row = OutboxMessage(kind=kind, to_address=to_address, user_id=user_id,
                        context=context or {})
    if will_publish:
        row.published_at = utcnow()
        row.publish_count = 1
    db.session.add(row)
    return row


def publish(outbox_ids: Iterable[int], *, premarked: bool = False) -> list[int]:
    """Publish ``send_mail`` for each committed outbox row and mark it published.

    Call only after the commit that wrote the rows. The publish itself (helper
    thread, ``OUTBOX_PUBLISH_TIMEOUT``, ``OUTBOX_PUBLISH_PAUSE``) is
    :func:`webapp.publisher.publish_after_commit`: a page waits at most the
    time-out per row, a failure is logged, not raised, and the row stays for
    :func:`relay_unpublished`.

    Args:
        outbox_ids: ids (ints) of committed rows.
        premarked: the rows were written marked published (``add(...,
            will_publish=True)``): nothing is written when the broker confirms,
            and the mark is cleared (one ``UPDATE``, committed) for the rows it
            did not confirm, so the relay publishes them after
            ``OUTBOX_RELAY_AFTER`` seconds.

    Returns:
        The ids that were published (``published_at`` set, ``publish_count``
        incremented, committed; already so when ``premarked``).
    """
    def mark(done: list[int]) -> None:
        db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(done))
            .values(published_at=utcnow(), publish_count=OutboxMessage.publish_count + 1)
            .execution_options(synchronize_session=False))

    def unmark(missed: list[int]) -> None:
        db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(missed), OutboxMessage.sent_at.is_(None),
                   OutboxMessage.publish_count > 0)
            .values(published_at=None, publish_count=OutboxMessage.publish_count - 1)
            .execution_options(synchronize_session=False))

    if premarked:
        return publish_after_commit(send_mail, outbox_ids, None, what="outbox",
                                    mark_missed=unmark)
    return publish_after_commit(send_mail, outbox_ids, mark, what="outbox")


def relay_unpublished(older_than: float, limit: int = 500) -> int:
    """Publish outbox rows the fast path missed, and republish lost ones.

    Picks rows neither sent nor failed that are either unpublished for more than
    ``older_than`` seconds, or published more than ``OUTBOX_REPUBLISH_AFTER``
    seconds ago and not claimed by a send in the last ``MAIL_CLAIM_TIMEOUT``
    seconds (their message was lost), or written marked published
    (``add(..., will_publish=True)``) more than ``OUTBOX_UNCLAIMED_AFTER``
    seconds ago and never tried by a worker (``attempts`` 0, published once:
    the publisher may have died between its commit and its publish; a row that
    waited that long in a backed-up ``mail`` queue gets one more task, which
    finds it sent or in progress: sending is idempotent). A lost row already
    published :data:`MAX_PUBLISHES` times is marked failed instead.

    On PostgreSQL the rows are locked with ``FOR UPDATE SKIP LOCKED`` until the
    publish commits, so concurrent relays never publish the same row (tested
    with two relays at once). SQLite ignores the clause: run a single relay
    (one celery beat); a second one could publish a row twice, which costs a
    task that finds the row sent and does nothing.

    Args:
        older_than: seconds a row may wait for the web's fast path first.
        limit: most rows handled in one call.

    Returns:
        How many rows were published.
    """
    cfg = current_app.config
    now = utcnow()
    cutoff = now - timedelta(seconds=older_than)
    lost_cutoff = now - timedelta(seconds=cfg["OUTBOX_REPUBLISH_AFTER"])
    claim_cutoff = now - timedelta(seconds=cfg["MAIL_CLAIM_TIMEOUT"])
    unclaimed_cutoff = now - timedelta(seconds=cfg["OUTBOX_UNCLAIMED_AFTER"])
    rows = db.session.execute(
        select(OutboxMessage.id, OutboxMessage.publish_count)
        .where(OutboxMessage.sent_at.is_(None),
               OutboxMessage.failed_at.is_(None),
               or_(and_(OutboxMessage.published_at.is_(None),
                        OutboxMessage.created_at < cutoff),
                   and_(OutboxMessage.published_at < lost_cutoff,
                        or_(OutboxMessage.claimed_at.is_(None),
                            OutboxMessage.claimed_at < claim_cutoff)),
                   and_(OutboxMessage.published_at < unclaimed_cutoff,
                        OutboxMessage.publish_count == 1, OutboxMessage.attempts == 0,
                        OutboxMessage.claimed_at.is_(None))))
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        db.session.rollback()
        return 0
    give_up = [r.id for r in rows if r.publish_count >= MAX_PUBLISHES]
    if give_up:
        db.session.execute(
            update(OutboxMessage).where(OutboxMessage.id.in_(give_up))
            .values(failed_at=now, claimed_at=None,
                    last_error=f"message lost {MAX_PUBLISHES} times (never sent nor failed)")
            .execution_options(synchronize_session=False))
        log.error("outbox %s: messages lost %s times, marked failed", give_up, MAX_PUBLISHES)
    republished = [r.id for r in rows if 0 < r.publish_count < MAX_PUBLISHES]
    if republished:
        log.warning("outbox %s: published before and never sent: republishing", republished)
    ids = [r.id for r in rows if r.publish_count < MAX_PUBLISHES]
    published = publish(ids)  # commits, which also releases the row locks
    db.session.commit()
    return len(published)


def requeue(outbox_id: int) -> bool:
    """Clear a failed row's failure and publish it again (operator's retry).

    The operator has decided the address is worth another try, so a hard bounce
    that put it on the suppression list is lifted in the same transaction
    (:func:`webapp.bounces.services.lift`); otherwise the retry would fail again
    without talking to the mail server.

    Args:
        outbox_id: primary key of a failed :class:`OutboxMessage`.

    Returns:
        True when the row was failed and is now queued (or left for the relay
        if the broker is down); False when it is missing or not failed.
    """
    changed = db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == outbox_id, OutboxMessage.failed_at.is_not(None),
               OutboxMessage.sent_at.is_(None))
        .values(failed_at=None, claimed_at=None, published_at=None, publish_count=0)
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed == 1:
        bounces.lift(db.session.get(OutboxMessage, outbox_id).to_address)
    db.session.commit()
    if changed != 1:
        return False
    publish([outbox_id])
    return True
