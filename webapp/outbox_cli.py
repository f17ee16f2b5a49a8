"""``flask --app wsgi mail-failures``: the operator's view of mails that failed.

Lists outbox rows marked failed (an SMTP 5xx answer, retries exhausted, or a
message lost too often) with their reason; ``--retry ID`` queues one again.
``flask --app wsgi upgrade-queues`` turns a broker's older classic task queues
into the quorum queues the workers now declare.
"""
from __future__ import annotations

import click
from flask import Flask
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import OutboxMessage


def register(app: Flask) -> None:
    """Add ``mail-failures`` and ``upgrade-queues`` to ``app.cli``."""

    @app.cli.command("upgrade-queues")
    def upgrade_queues_cmd() -> None:
        """Turn empty classic mail/images/celery queues into quorum queues.

        Exit status 1 when a queue could not be converted (it holds messages).
        """
        results = upgrade_queues(app.extensions["celery"])
        for name, state in results.items():
            click.echo(f"{name}: {state}")
        if any(state.startswith("not empty") for state in results.values()):
            raise click.ClickException("drain the queues marked 'not empty' and run again")

    @app.cli.command("mail-failures")
    @click.option("--retry", "retry_id", type=int, default=None, metavar="ID",
                  help="Clear the failure of outbox row ID and queue its mail again.")
    @click.option("--limit", default=100, show_default=True, help="Most rows listed.")
    def mail_failures(retry_id: int | None, limit: int) -> None:
        """List failed outbox mails (newest first), or re-queue one with --retry ID.

        Exit status 1 when --retry names a row that is missing or not failed.
        """
        from webapp import outbox

        if retry_id is not None:
            if not outbox.requeue(retry_id):
                raise click.ClickException(f"outbox {retry_id} is not a failed mail")
            click.echo(f"outbox {retry_id} queued again")
            return
        rows = db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.failed_at.is_not(None))
            .order_by(OutboxMessage.failed_at.desc()).limit(limit)).all()
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


def upgrade_queues(celery: object) -> dict[str, str]:
    """Make the task queues quorum queues on a broker that has classic ones.

    A classic queue cannot be redeclared as quorum (406 PRECONDITION_FAILED),
    so each task queue that refuses the quorum declaration is deleted if it is
    empty and declared again; a non-empty one is left alone (drain it first with
    the old workers). Queues that are already quorum, or missing, are declared.

    Args:
        celery: the Celery app (its ``task_queues`` are the wanted declarations).

    Returns:
        ``{queue name: "ok" | "converted" | "not empty: N messages"}``.
    """
    from amqp.exceptions import PreconditionFailed

    result: dict[str, str] = {}
    with celery.connection_for_write() as conn:  # type: ignore[attr-defined]
        conn.ensure_connection(max_retries=1)
        for queue in celery.conf.task_queues:  # type: ignore[attr-defined]
            try:
                queue.bind(conn.channel()).declare()
                result[queue.name] = "ok"
                continue
            except PreconditionFailed:
                pass  # an older classic queue of that name
            channel = conn.channel()
            _name, messages, _consumers = channel.queue_declare(queue.name, passive=True)
            if messages:
                result[queue.name] = f"not empty: {messages} messages"
                continue
            channel.queue_delete(queue.name, if_empty=True)
            queue.bind(channel).declare()
            result[queue.name] = "converted"
    return result
