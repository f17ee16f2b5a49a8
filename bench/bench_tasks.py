"""Bench-only Celery task: a no-op, the baseline of task throughput.

Loaded into a benchmark worker with ``celery ... worker --include bench.bench_tasks``;
never part of the real app's ``imports``.
"""
from __future__ import annotations

from celery import shared_task


@shared_task(name="bench.bench_tasks.noop", ignore_result=True, acks_late=True,
             time_limit=10, soft_time_limit=5)
def noop() -> None:
    """Do nothing and store no result: what one task costs in Celery itself.

    Retries: none. Idempotent: trivially.
    """
    return None


@shared_task(name="bench.bench_tasks.tutorial_mail", ignore_result=True, acks_late=True,
             time_limit=90, soft_time_limit=60)
def tutorial_mail(to: str, subject: str, body: str, html: str) -> None:
    """The mail task Flask's and most tutorials' code amounts to: build a
    Flask-Mail ``Message`` from the arguments and ``mail.send`` it (one SMTP
    connection per mail: connect, EHLO, MAIL, RCPT, DATA, QUIT). No outbox, no
    database, no claim: a crash mid-send loses or repeats the mail unnoticed.

    Args:
        to: recipient address; subject: the Subject; body, html: the rendered
            text and HTML parts (str).

    Retries: none. Idempotent: no (a redelivery sends the mail again).
    """
    from flask import current_app
    from flask_mail import Message

    msg = Message(subject, recipients=[to], body=body, html=html,
                  sender=current_app.config["MAIL_DEFAULT_SENDER"])
    current_app.extensions["mail"].send(msg)
