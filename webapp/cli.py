"""Onboard's ``flask`` commands for operators (``flask --app wsgi <command>``).

Every command parses its options, calls a service and prints the answer; the
rules and the queries live in the services:

===================  ===========================================  =====================
command              does                                         service
===================  ===========================================  =====================
``stats``            a day's figures; ``--record`` stores + mails  :mod:`webapp.ops.stats`
``resend-pending``   new verification mail to accounts due one     :mod:`webapp.ops.mail_admin`
``purge``            the three purges now                          :mod:`webapp.ops.purge`
``backup``           today's database backup, then prune           :mod:`webapp.ops.backup`
``mail-failures``    failed mails; ``--retry ID`` queues one again :mod:`webapp.ops.mail_admin`
``relay-outbox``     publish outbox mails the web could not        :mod:`webapp.outbox`
``upgrade-queues``   classic task queues → quorum queues           :mod:`webapp.broker`
===================  ===========================================  =====================

Services are imported inside each command so ``flask --help`` stays cheap.
Documented in README.md, docs/operations.md and docs/never-lose-a-mail.md.
"""
from __future__ import annotations

from datetime import datetime

import click
from flask import Flask


def register(app: Flask) -> None:
    """Add Onboard's commands to ``app.cli``.

    Args:
        app: the Flask app; commands run inside its app context.
    """

    @app.cli.command("stats")
    @click.option("--day", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
                  help="ISO date (YYYY-MM-DD); today in TIMEZONE when omitted.")
    @click.option("--record", is_flag=True,
                  help="Store the row and mail it to ADMINS (once per day).")
    def stats_cmd(day: datetime | None, record: bool) -> None:
        """Print the statistics of a day, computed now (and the stored row, if any)."""
        from webapp.ops import stats

        target = day.date() if day else stats.local_today()
        if record:
            row = stats.record(target)
            click.echo("recorded and mailed" if row else "already recorded")
        for key, value in stats.compute(target).items():
            click.echo(f"{key:14} {value}")
        click.echo(f"stored row: {'yes' if stats.get(target) else 'no'}")

    @app.cli.command("resend-pending")
    @click.option("--older-than", type=click.FloatRange(min=0), default=1.0, show_default=True,
                  help="Hours since the account's latest verification mail.")
    @click.option("--dry-run", is_flag=True, help="List the addresses only.")
    def resend_pending_cmd(older_than: float, dry_run: bool) -> None:
        """Re-send verification mails to unverified accounts whose latest mail is
        older than --older-than hours, or unsent (failed or never sent)."""
        from webapp.ops import mail_admin

        emails = mail_admin.resend_pending(older_than, dry_run=dry_run)
        for email in emails:
            click.echo(email)
        click.echo(f"{'would resend' if dry_run else 'resent'} {len(emails)}")

    @app.cli.command("purge")
    def purge_cmd() -> None:
        """Run the purge jobs now: unverified accounts, used tokens, orphaned media,
        sent mails older than ``OUTBOX_RETENTION_DAYS``."""
        from webapp.ops import purge

        click.echo(f"unverified accounts deleted: {purge.purge_unverified()}")
        click.echo(f"used tokens deleted: {purge.purge_tokens()}")
        click.echo(f"orphaned media files deleted: {purge.purge_orphan_media()}")
        click.echo(f"sent mails deleted: {purge.purge_sent_mail()}")

    @app.cli.command("backup")
    def backup_cmd() -> None:
        """Back up the database into the store now (today's dated object) and
        prune old backups; prints the object's key.

        Exit status 1 when the backup cannot be made (pg_dump failed, store down).
        """
        from webapp.ops import backup
        from webapp.storage import StoreUnavailable

        try:
            click.echo(backup.backup_database())
        except (backup.BackupError, StoreUnavailable) as exc:
            raise click.ClickException(str(exc)) from exc

    @app.cli.command("mail-failures")
    @click.option("--retry", "retry_id", type=int, default=None, metavar="ID",
                  help="Clear the failure of outbox row ID and queue its mail again.")
    @click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True,
                  help="Most rows listed.")
    def mail_failures_cmd(retry_id: int | None, limit: int) -> None:
        """List failed outbox mails (newest first), or re-queue one with --retry ID.

        Exit status 1 when --retry names a row that is missing or not failed.
        """
        from webapp import outbox
        from webapp.ops import mail_admin

        if retry_id is not None:
            if not outbox.requeue(retry_id):
                raise click.ClickException(f"outbox {retry_id} is not a failed mail")
            click.echo(f"outbox {retry_id} queued again")
            return
        rows = mail_admin.failed_mails(limit)
        if not rows:
            click.echo("no failed mails")
            return
        click.echo(f"{'id':>8}  {'failed at (UTC)':19}  {'kind':10}  {'attempts':>8}  "
                   f"{'to':30}  reason")
        for row in rows:
            failed = row.failed_at.strftime("%Y-%m-%d %H:%M:%S") if row.failed_at else ""
            reason = (row.last_error or "").replace("\n", " ")
            click.echo(f"{row.id:>8}  {failed:19}  {row.kind[:10]:10}  {row.attempts:>8}  "
                       f"{row.to_address[:30]:30}  {reason}")

    @app.cli.command("relay-outbox")
    @click.option("--older-than", type=click.FloatRange(min=0), default=0.0, show_default=True,
                  help="Only rows unpublished for this many seconds.")
    def relay_outbox_cmd(older_than: float) -> None:
        """Publish outbox mails the web could not publish (broker was down)."""
        from webapp.outbox import relay_unpublished

        click.echo(f"published {relay_unpublished(older_than)}")

    @app.cli.command("upgrade-queues")
    def upgrade_queues_cmd() -> None:
        """Turn empty classic mail/images/celery queues into quorum queues.

        Exit status 1 when a queue could not be converted (it holds messages).
        """
        from webapp.broker import upgrade_queues

        results = upgrade_queues(app.extensions["celery"])
        for name, state in results.items():
            click.echo(f"{name}: {state}")
        if any(state.startswith("not empty") for state in results.values()):
            raise click.ClickException("drain the queues marked 'not empty' and run again")
