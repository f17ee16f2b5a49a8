"""Mail tasks (queue ``mail``)."""
from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_process_shutdown, worker_ready, worker_shutdown
from flask import current_app

from webapp import smtp_pool
from webapp.bounces.services import retries_failure
from webapp.mail import TransientMailError, deliver, mark_failed
from webapp.tasks.retry import retry_countdown

log = logging.getLogger(__name__)


@shared_task(bind=True, name="webapp.tasks.mail.send_mail", acks_late=True,
             reject_on_worker_lost=True, max_retries=None, time_limit=90, soft_time_limit=60,
             # The outbox row is the record of a send; storing a result too cost two
             # extra writes per mail and halved throughput (bench/README.md).
             ignore_result=True)
def send_mail(self, outbox_id: int) -> str:  # type: ignore[no-untyped-def]
    """Send the mail of one outbox row.

    Args:
        outbox_id: primary key of an ``OutboxMessage`` (int).

    Returns:
        ``"sent"``, ``"failed"``, ``"already-sent"``, ``"already-failed"``,
        ``"in-progress"`` or ``"missing"``. A failure is a return value, not an
        exception: :func:`webapp.mail.deliver` records it on the row and logs it
        in one line, so Celery adds no traceback.

    Retries: transient failures (refused connection, timeout, TLS refused, 4xx)
    retry after :func:`webapp.tasks.retry.retry_countdown` seconds (exponential,
    capped at ``MAIL_RETRY_BACKOFF_MAX``, equal jitter), up to
    ``MAIL_MAX_RETRIES`` times; then the row is marked failed and ``"failed"``
    returned. Permanent failures (5xx, no SMTPUTF8 for a non-ASCII address, a
    mail that cannot be built) are recorded by :func:`webapp.mail.deliver` and
    not retried. The retry is a new message with a countdown: on quorum queues
    it waits in RabbitMQ's delayed-delivery queues, not in the worker's memory.

    Idempotency: the outbox row is the key; a redelivered or repeated task for a
    row already sent does nothing, and a redelivery after a crash mid-send is
    detected by the row's claim and counted in ``takeovers`` (see
    :func:`webapp.mail.deliver`). ``acks_late`` + ``reject_on_worker_lost``: a
    worker killed mid-task gets its message redelivered.
    """
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    try:
        return deliver(outbox_id, redelivered=redelivered)
    except TransientMailError as exc:
        cfg = current_app.config
        if self.request.retries >= cfg["MAIL_MAX_RETRIES"]:
            mark_failed(outbox_id, f"gave up after {self.request.retries} retries: {exc}",
                        bounce=retries_failure(str(exc)))
            log.error("mail outbox=%s failed: retries exhausted: %s", outbox_id, exc)
            return "failed"
        countdown = retry_countdown(self.request.retries, cfg["MAIL_RETRY_BACKOFF_MAX"])
        log.warning("mail outbox=%s transient failure, retry %s in %ss: %s",
                    outbox_id, self.request.retries + 1, countdown, exc)
        raise self.retry(exc=exc, countdown=countdown)


@worker_ready.connect
def declare_dead_letter_queues(sender: Any = None, **_kwargs: Any) -> None:
    """Declare ``mail.dlq``, ``images.dlq``, ``celery.dlq`` when a worker starts.

    The task queues dead-letter there (see :func:`webapp.config.queues.dead_letter_queues`);
    without a bound queue RabbitMQ would drop a dead-lettered message. A failure
    is logged, not raised: it must not stop the worker.
    """
    from webapp.config.queues import dead_letter_queues

    app = getattr(sender, "app", None)
    if app is None or app.conf.task_default_queue_type != "quorum":
        return
    try:
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            for queue in dead_letter_queues():
                queue.bind(channel).declare()
    except Exception as exc:  # noqa: BLE001 - best effort, see docstring
        log.warning("dead-letter queues not declared: %s", exc)


@worker_process_shutdown.connect
@worker_shutdown.connect
def close_smtp_sessions(**_kwargs: Any) -> None:
    """QUIT the SMTP sessions this process kept open (:mod:`webapp.smtp_pool`)
    when a worker process stops: prefork children get ``worker_process_shutdown``,
    the solo, threads and gevent pools send mail from the main process, which
    gets ``worker_shutdown``. Never raises."""
    smtp_pool.close_all()
