"""Purges: unverified accounts, spent tokens, sent mails past retention, orphaned
media objects in the store.

All four are naturally idempotent (a second run finds nothing left to delete).
"""
from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, select

from webapp import models
from webapp.extensions import db
from webapp.models import OutboxMessage, UsedToken, User, utcnow
from webapp.storage import DERIVATIVES, ORIGINALS, Store, get_store

log = logging.getLogger(__name__)

#: The store's upload folders the orphan purge looks at.
MEDIA_PREFIXES = (ORIGINALS + "/", DERIVATIVES + "/")


def purge_unverified(ttl_days: int | None = None) -> int:
    """Delete accounts still unverified ``ttl_days`` after sign-up, with their mails.

    Their outbox rows are deleted too (the FK would only SET NULL): they hold the
    address of someone who never confirmed it, and nothing needs them any more
    (statistics of past days are already stored in ``daily_stats``). A pending
    mail whose row is gone is skipped by the send task (``"missing"``).

    Args:
        ttl_days: days an account may stay unverified; ``UNVERIFIED_TTL_DAYS``
            (default 7) when ``None``.

    Returns:
        How many accounts were deleted.
    """
    days = current_app.config["UNVERIFIED_TTL_DAYS"] if ttl_days is None else ttl_days
    cutoff = utcnow() - timedelta(days=days)
    stale = (select(User.id)
             .where(User.verified_at.is_(None), User.created_at < cutoff)
             .scalar_subquery())
    db.session.execute(delete(OutboxMessage).where(OutboxMessage.user_id.in_(stale)))
    result = db.session.execute(
        delete(User).where(User.verified_at.is_(None), User.created_at < cutoff))
    db.session.commit()
    count = result.rowcount or 0
    if count:
        log.info("purged %d account(s) unverified for %d day(s)", count, days)
    return count


def longest_token_lifetime(config: Any) -> int:
    """The longest lifetime of any signed token, in seconds.

    Reads every ``*_MAX_AGE`` setting in seconds (``VERIFY_TOKEN_MAX_AGE``,
    ``PASSWORD_RESET_MAX_AGE`` and whatever other features add), so a used
    token is kept as long as it could still be presented with a valid signature.
    """
    ages = [int(v) for k, v in config.items()
            if k.endswith("_MAX_AGE") and isinstance(v, (int, float)) and not isinstance(v, bool)]
    return max(ages, default=24 * 3600)


def purge_tokens() -> int:
    """Delete ``used_tokens`` rows older than the longest token lifetime.

    Such a token's signature has expired, so it is refused as ``expired``
    whether or not its ``jti`` is remembered; the row is dead weight. (Expired
    unused tokens are stateless, itsdangerous signatures: nothing is stored.)

    Returns:
        How many rows were deleted.
    """
    lifetime = longest_token_lifetime(current_app.config)
    cutoff = utcnow() - timedelta(seconds=lifetime)
    result = db.session.execute(delete(UsedToken).where(UsedToken.used_at < cutoff))
    db.session.commit()
    count = result.rowcount or 0
    if count:
        log.info("purged %d used token(s) older than %d s", count, lifetime)
    return count


#: Rows per DELETE of :func:`purge_sent_mail`: each batch is its own short
#: transaction, so the relay and the sends are never blocked for long.
SENT_MAIL_BATCH = 5000


def purge_sent_mail(retention_days: int | None = None, batch: int = SENT_MAIL_BATCH) -> int:
    """Delete outbox rows sent more than ``retention_days`` ago, ``batch`` rows
    per statement until none is left.

    Only rows with ``sent_at`` before the cutoff go: a pending row (neither
    sent nor failed) and a failed one (an operator may still retry it) are
    never touched. A bounce record of a deleted row keeps its address and
    reason (its ``outbox_id`` becomes NULL).

    Args:
        retention_days: days a sent mail is kept; ``OUTBOX_RETENTION_DAYS``
            (default 30) when ``None``.
        batch: rows per DELETE statement and transaction (> 0).

    Returns:
        How many rows were deleted.

    Raises:
        ValueError: ``batch`` is not positive.
    """
    if batch < 1:
        raise ValueError(f"batch must be positive, got {batch}")
    days = current_app.config["OUTBOX_RETENTION_DAYS"] if retention_days is None else retention_days
    cutoff = utcnow() - timedelta(days=days)
    total = 0
    while True:
        doomed = (select(OutboxMessage.id).where(OutboxMessage.sent_at < cutoff)
                  .order_by(OutboxMessage.sent_at).limit(batch).scalar_subquery())
        result = db.session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(doomed))
                                    .execution_options(synchronize_session=False))
        db.session.commit()
        count = result.rowcount or 0
        total += count
        if count < batch:
            break
    if total:
        log.info("purged %d sent mail(s) older than %d day(s)", total, days)
    return total


def referenced_media_paths() -> set[str]:
    """Storage keys of every object an upload row references:
    ``uploads.original_key`` and ``upload_derivatives.storage_key``.

    Returns:
        The keys (``originals/…``, ``derivatives/…``).
    """
    keys: set[str] = set()
    keys.update(db.session.scalars(
        select(models.Upload.original_key).where(models.Upload.original_key.is_not(None))))
    keys.update(db.session.scalars(select(models.UploadDerivative.storage_key)))
    db.session.rollback()
    return {k for k in keys if k}


def purge_orphan_files(store: Store, referenced: set[str], min_age: float,
                       now: float | None = None) -> list[str]:
    """Delete objects under ``originals/`` and ``derivatives/`` of ``store`` that
    are not in ``referenced`` and older than ``min_age``.

    Backups (``backups/``) and anything else in the store are never touched.

    Args:
        store: the store (:func:`webapp.storage.get_store`); listed page by page.
        referenced: keys that must stay.
        min_age: seconds since the object was written before it may go; spares
            an upload being stored right now whose row is not committed yet.
        now: the current epoch time in seconds (``time.time()`` when ``None``).

    Returns:
        The keys deleted.

    Raises:
        webapp.storage.StoreUnavailable: the store could not be listed or an
            object not deleted (the next run goes on from where this one stopped).
    """
    now = time.time() if now is None else now
    doomed = [obj.key for prefix in MEDIA_PREFIXES for obj in store.list(prefix)
              if obj.key not in referenced and now - obj.modified >= min_age]
    for key in doomed:  # listed first: deleting while paging could skip keys
        store.delete(key)
    return doomed


def purge_orphan_media() -> int:
    """Delete stored originals and derivatives no upload row references, older
    than ``ORPHAN_MEDIA_MIN_AGE`` seconds (:func:`purge_orphan_files`).

    Returns:
        How many objects were deleted.
    """
    referenced = referenced_media_paths()
    deleted = purge_orphan_files(get_store(), referenced, current_app.config["ORPHAN_MEDIA_MIN_AGE"])
    if deleted:
        log.info("purged %d orphaned media object(s)", len(deleted))
    return len(deleted)
