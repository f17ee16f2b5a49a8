"""Periodic tasks run by celery beat (queue ``celery``)."""
from __future__ import annotations

from datetime import date, timedelta

from celery import shared_task
from flask import current_app

from webapp.ops import backup, purge, stats  # stats also registers the daily_stats mail kind
from webapp.outbox import relay_unpublished


@shared_task(name="webapp.tasks.periodic.relay_outbox", acks_late=True,
             time_limit=120, soft_time_limit=100, ignore_result=True)
def relay_outbox() -> int:
    """Publish outbox rows the web could not publish (broker down at the time).

    Returns:
        How many rows were published (int).

    Retries: none; the next beat tick runs it again. Idempotency: a row is
    published only while ``published_at`` is empty, and publishing a row twice
    is harmless because sending is idempotent per row.
    """
    return relay_unpublished(current_app.config["OUTBOX_RELAY_AFTER"])


# --- operations jobs --------------------------------------------------------------------
# Each is scheduled in webapp.config.beat and is idempotent, so a second
# beat started by mistake does no harm (see webapp.ops).


@shared_task(name="webapp.tasks.periodic.purge_unverified", acks_late=True,
             time_limit=600, soft_time_limit=540, ignore_result=True)
def purge_unverified() -> int:
    """Delete accounts unverified after ``UNVERIFIED_TTL_DAYS``, with their outbox rows.

    Returns:
        Accounts deleted (int). Retries: none; the next tick runs it again.
        Idempotency: a second run finds nothing to delete.
    """
    return purge.purge_unverified()


@shared_task(name="webapp.tasks.periodic.purge_tokens", acks_late=True,
             time_limit=600, soft_time_limit=540, ignore_result=True)
def purge_tokens() -> int:
    """Delete ``used_tokens`` rows older than the longest token lifetime.

    Returns:
        Rows deleted (int). Retries: none. Idempotency: a second run deletes nothing.
    """
    return purge.purge_tokens()


@shared_task(name="webapp.tasks.periodic.purge_sent_mail", acks_late=True,
             time_limit=1800, soft_time_limit=1700, ignore_result=True)
def purge_sent_mail() -> int:
    """Delete outbox rows sent more than ``OUTBOX_RETENTION_DAYS`` days ago, in
    batches of 5,000 rows (one transaction each); pending and failed rows stay.

    Returns:
        Rows deleted (int). Retries: none; the next tick goes on where a killed
        run stopped (each batch is committed). Idempotency: a second run deletes
        nothing.
    """
    return purge.purge_sent_mail()


@shared_task(name="webapp.tasks.periodic.purge_orphan_media", acks_late=True,
             time_limit=1800, soft_time_limit=1700, ignore_result=True)
def purge_orphan_media() -> int:
    """Delete stored originals and derivatives no upload references, older than
    ``ORPHAN_MEDIA_MIN_AGE`` seconds (lists the store: a folder or a bucket).

    Returns:
        Objects deleted (int). Retries: none; the next run goes on. Idempotency:
        deleting an object already gone is harmless, so two runs at once are too.
    """
    return purge.purge_orphan_media()


@shared_task(name="webapp.tasks.periodic.daily_stats", acks_late=True,
             time_limit=600, soft_time_limit=540, ignore_result=True)
def daily_stats(day: str | None = None) -> bool:
    """Store the statistics row of ``day`` and mail it to ``ADMINS`` via the outbox.

    Args:
        day: ISO date ``YYYY-MM-DD``; yesterday in ``TIMEZONE`` when ``None``
            (the crontab entry runs at 00:05).

    Returns:
        True when this run stored the row, False when it existed already.
        Retries: none. Idempotency: ``daily_stats.day`` is unique; the second
        run's INSERT fails and it mails nothing.
    """
    target = date.fromisoformat(day) if day else stats.local_today() - timedelta(days=1)
    return stats.record(target) is not None


@shared_task(name="webapp.tasks.periodic.backup_database", acks_late=True,
             time_limit=3600, soft_time_limit=3500, ignore_result=True)
def backup_database() -> str:
    """Back up the database into the store (``backups/onboard-<date>.…``), keep
    ``BACKUP_KEEP``.

    Returns:
        The backup's store key (str). Retries: none; a failure (pg_dump, the store
        down) is logged with its reason and the next night tries again.
        Idempotency: one object per date; an existing one is kept; the dump is
        made in a scratch folder that is removed either way.
    """
    return str(backup.backup_database())
