"""``flask`` commands for operations (``flask --app wsgi stats|resend-pending|purge|backup``)."""
from __future__ import annotations

from datetime import date, timedelta

import click
from flask import Flask, current_app
from sqlalchemy import func, select


def register(app: Flask) -> None:
    """Add the operations commands to ``app.cli``."""

    @app.cli.command("stats")
    @click.option("--day", default=None, help="ISO date (YYYY-MM-DD); today when omitted.")
    @click.option("--record", is_flag=True,
                  help="Store the row and mail it to ADMINS (once per day).")
    def stats_cmd(day: str | None, record: bool) -> None:
        """Print the statistics of a day, computed now (and the stored row, if any)."""
        from webapp.ops import stats

        target = date.fromisoformat(day) if day else stats.local_today()
        if record:
            row = stats.record(target)
            click.echo("recorded and mailed" if row else "already recorded")
        for key, value in stats.compute(target).items():
            click.echo(f"{key:14} {value}")
        stored = stats.get(target)
        click.echo(f"stored row: {'yes' if stored else 'no'}")

    @app.cli.command("resend-pending")
    @click.option("--older-than", default=1.0, show_default=True,
                  help="Hours since the account's latest verification mail.")
    @click.option("--dry-run", is_flag=True, help="List the addresses only.")
    def resend_pending_cmd(older_than: float, dry_run: bool) -> None:
        """Re-send verification mails to unverified accounts whose latest mail is
        older than --older-than hours, or unsent (failed or never sent)."""
        from webapp.auth.services import VERIFY, resend_verification
        from webapp.extensions import db
        from webapp.models import OutboxMessage, User, utcnow

        cutoff = utcnow() - timedelta(hours=older_than)
        ttl = utcnow() - timedelta(days=current_app.config["UNVERIFIED_TTL_DAYS"])
        latest = (select(OutboxMessage.user_id, func.max(OutboxMessage.created_at).label("last"))
                  .where(OutboxMessage.kind == VERIFY).group_by(OutboxMessage.user_id).subquery())
        emails = db.session.scalars(
            select(User.email).outerjoin(latest, latest.c.user_id == User.id)
            .where(User.verified_at.is_(None), User.created_at >= ttl,
                   (latest.c.last.is_(None)) | (latest.c.last < cutoff))
            .order_by(User.id)).all()
        for email in emails:
            if not dry_run:
                resend_verification(email)
            click.echo(email)
        click.echo(f"{'would resend' if dry_run else 'resent'} {len(emails)}")

    @app.cli.command("purge")
    def purge_cmd() -> None:
        """Run the purge jobs now: unverified accounts, used tokens, orphaned media."""
        from webapp.ops import purge

        click.echo(f"unverified accounts deleted: {purge.purge_unverified()}")
        click.echo(f"used tokens deleted: {purge.purge_tokens()}")
        click.echo(f"orphaned media files deleted: {purge.purge_orphan_media()}")

    @app.cli.command("backup")
    def backup_cmd() -> None:
        """Back up the database now (today's dated file) and prune old backups."""
        from webapp.ops import backup

        click.echo(str(backup.backup_database()))
