"""Account mail requests (queue ``mail``): reset and resend, decided on a worker.

The web publishes these for every address, known or not (see
:mod:`webapp.auth.mail_requests`), so its answer time reveals nothing.
"""
from __future__ import annotations

from collections.abc import Callable

from celery import Task, shared_task
from sqlalchemy.exc import OperationalError

from webapp.account.services import send_password_reset
from webapp.auth.services import send_verification_again
from webapp.tasks.retry import retry_countdown

#: Database hiccups: retries, and the longest wait between two (seconds).
MAX_RETRIES = 8
RETRY_BACKOFF_MAX = 60

# Common options: acked after the run and requeued if the worker dies.
_OPTIONS = dict(bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True,
                time_limit=60, soft_time_limit=45, max_retries=MAX_RETRIES)


def _run(task: Task, handle: Callable[[str, str], str], email: str, request_id: str) -> str:
    """Run ``handle``; a database that is briefly unreachable (or a SQLite lock
    held past busy_timeout) is retried on the shared policy
    (:func:`webapp.tasks.retry.retry_countdown`, capped at 60 s)."""
    try:
        return handle(email, request_id)
    except OperationalError as exc:
        raise task.retry(exc=exc, countdown=retry_countdown(task.request.retries,
                                                             RETRY_BACKOFF_MAX))


@shared_task(name="webapp.tasks.account.password_reset", **_OPTIONS)
def password_reset(self: Task, email: str, request_id: str) -> str:
    """Queue a reset mail if ``email`` has an account (see
    :func:`webapp.account.services.send_password_reset`).

    Args:
        email: normalised address (str).
        request_id: 32 hex characters drawn by the web for this request.

    Returns:
        ``"queued"``, ``"no-account"``, ``"throttled"`` or ``"duplicate"``.

    Retries: ``OperationalError`` (database unreachable or locked) up to
    :data:`MAX_RETRIES` times on the shared retry policy; nothing is
    half-written, the transaction is rolled back.
    Idempotency: ``request_id`` is recorded in ``used_tokens`` in the same
    transaction as the outbox row, so a redelivery (``acks_late`` +
    ``reject_on_worker_lost``) or a duplicate publish answers ``"duplicate"``
    and adds no second mail; once the row is committed the outbox relay makes
    sure it is sent.
    """
    return _run(self, send_password_reset, email, request_id)


@shared_task(name="webapp.tasks.account.resend_verification", **_OPTIONS)
def resend_verification(self: Task, email: str, request_id: str) -> str:
    """Queue a new verification mail if ``email`` is an unverified account (see
    :func:`webapp.auth.services.send_verification_again`).

    Args:
        email: normalised address (str).
        request_id: 32 hex characters drawn by the web for this request.

    Returns:
        ``"queued"``, ``"no-account"``, ``"not-wanted"`` (verified already),
        ``"throttled"`` or ``"duplicate"``.

    Retries and idempotency: as :func:`password_reset`.
    """
    return _run(self, send_verification_again, email, request_id)
