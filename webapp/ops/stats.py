"""Daily statistics: one ``daily_stats`` row per day, mailed to ``ADMINS``.

Days are calendar days in ``TIMEZONE`` (Celery's ``timezone`` too, so the
00:05 crontab entry computes the day that just ended).
"""
from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from webapp import models, outbox
from webapp.extensions import db
from webapp.mail import Rendered
from webapp.models import DailyStats, OutboxMessage, User

log = logging.getLogger(__name__)

KIND = "daily_stats"


def local_today() -> date:
    """Today's date in ``TIMEZONE``."""
    return datetime.now(ZoneInfo(current_app.config["CELERY"]["timezone"])).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """``[start, end)`` of ``day`` in ``TIMEZONE``, as aware UTC datetimes."""
    tz = ZoneInfo(current_app.config["CELERY"]["timezone"])
    start = datetime.combine(day, time.min, tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def _count(column: Any, start: datetime, end: datetime) -> int:
    return db.session.scalar(
        select(func.count()).where(column >= start, column < end)) or 0


def _upload_stats(start: datetime, end: datetime) -> tuple[int, int]:
    """(uploads made, bytes saved) in ``[start, end)``.

    Uploads count by ``created_at``. Bytes saved are summed over uploads that
    finished ``done`` in the window (``finished_at``): per upload, its
    ``original_bytes`` minus its largest derivative's bytes, i.e. what serving
    the derivative instead of the original saves (the number the upload page
    shows as "Saved").
    """
    upload, derivative = models.Upload, models.UploadDerivative
    count = _count(upload.created_at, start, end)
    largest = (select(derivative.upload_id, func.max(derivative.bytes).label("bytes"))
               .group_by(derivative.upload_id).subquery())
    saved = db.session.scalar(
        select(func.coalesce(func.sum(upload.original_bytes - largest.c.bytes), 0))
        .join(largest, largest.c.upload_id == upload.id)
        .where(upload.status == "done", upload.finished_at >= start, upload.finished_at < end))
    return count, int(saved or 0)


def compute(day: date) -> dict[str, Any]:
    """Count what happened on ``day`` (``TIMEZONE``); writes nothing.

    Returns:
        ``{"day": "YYYY-MM-DD", "signups", "verifications", "logins", "uploads",
        "bytes_saved", "mails_sent", "mails_failed"}``; counts are ints, bytes in
        bytes. ``logins`` counts accounts whose latest log-in fell on the day.
    """
    start, end = day_bounds(day)
    uploads, saved = _upload_stats(start, end)
    return {
        "day": day.isoformat(),
        "signups": _count(User.created_at, start, end),
        "verifications": _count(User.verified_at, start, end),
        "logins": _count(User.last_login_at, start, end),
        "uploads": uploads,
        "bytes_saved": saved,
        "mails_sent": _count(OutboxMessage.sent_at, start, end),
        "mails_failed": _count(OutboxMessage.failed_at, start, end),
    }


def record(day: date) -> DailyStats | None:
    """Store the statistics of ``day`` and queue the mail to ``ADMINS``, once.

    The row and the outbox rows commit in one transaction; ``day`` is unique,
    so a second run (a second beat, a retry) hits the constraint, rolls back and
    mails nothing.

    Returns:
        The new row, or ``None`` when ``day`` was already recorded.
    """
    counts = compute(day)
    row = DailyStats(day=day, **{k: v for k, v in counts.items() if k != "day"})
    db.session.add(row)
    mails = [outbox.add(KIND, admin, context=counts) for admin in current_app.config["ADMINS"]]
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        log.info("daily stats for %s already recorded", day)
        return None
    outbox.publish([m.id for m in mails])
    log.info("daily stats for %s recorded and mailed to %d admin(s)", day, len(mails))
    return row


def get(day: date) -> DailyStats | None:
    """The stored row of ``day``, if any."""
    return db.session.scalar(select(DailyStats).where(DailyStats.day == day))


def _daily_stats_mail(row: OutboxMessage) -> Rendered:
    """Daily statistics mail to an admin; the context is :func:`compute`'s dict."""
    return Rendered(subject=f"Onboard statistics for {row.context['day']}",
                    context={"stats": row.context})
