"""The operator's queries on the mail outbox: failed mails, and unverified
accounts whose verification mail is due again.

The ``flask`` commands (:mod:`webapp.cli`) print what these return; the rules
(what counts as failed, as due) live here.
"""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select

from webapp.auth.services import VERIFY, resend_verification
from webapp.extensions import db
from webapp.models import OutboxMessage, User, utcnow


def failed_mails(limit: int = 100) -> list[OutboxMessage]:
    """Outbox rows marked failed (SMTP 5xx, retries exhausted, or a message lost
    too often), newest failure first.

    Args:
        limit: most rows returned (>= 1).

    Returns:
        The rows; ``failed_at`` (UTC), ``kind``, ``attempts``, ``to_address`` and
        ``last_error`` (the reason) are what an operator reads.
    """
    return list(db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.failed_at.is_not(None))
        .order_by(OutboxMessage.failed_at.desc(), OutboxMessage.id.desc()).limit(limit)))


def verification_due(older_than_hours: float) -> list[str]:
    """Addresses of unverified accounts due a new verification mail.

    An account is due when it is still unverified, younger than
    ``UNVERIFIED_TTL_DAYS`` (older ones are about to be purged), and its latest
    verification mail was queued more than ``older_than_hours`` ago or never
    (sent, failed or unsent alike: a failed mail calls for a new one).

    Args:
        older_than_hours: hours since the account's latest verification mail (>= 0).

    Returns:
        The addresses, oldest account first.
    """
    now = utcnow()
    cutoff = now - timedelta(hours=older_than_hours)
    ttl = now - timedelta(days=current_app.config["UNVERIFIED_TTL_DAYS"])
    latest = (select(OutboxMessage.user_id, func.max(OutboxMessage.created_at).label("last"))
              .where(OutboxMessage.kind == VERIFY).group_by(OutboxMessage.user_id)
              .subquery())
    return list(db.session.scalars(
        select(User.email).outerjoin(latest, latest.c.user_id == User.id)
        .where(User.verified_at.is_(None), User.created_at >= ttl,
               latest.c.last.is_(None) | (latest.c.last < cutoff))
        .order_by(User.id)))


def resend_pending(older_than_hours: float, dry_run: bool = False) -> list[str]:
    """Queue a new verification mail to every account :func:`verification_due` names.

    Each goes through :func:`webapp.auth.services.resend_verification`, so its
    per-account throttle applies and a second run right after finds nothing due
    (the new mail is the latest one).

    Args:
        older_than_hours: as for :func:`verification_due`.
        dry_run: list the addresses only, queue nothing.

    Returns:
        The addresses due (mailed unless ``dry_run``).
    """
    emails = verification_due(older_than_hours)
    if not dry_run:
        for email in emails:
            resend_verification(email)
    return emails
