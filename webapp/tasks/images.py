"""Image tasks (queue ``images``: CPU-heavy, prefetch 1) and the upload relay."""
from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app

from webapp.imaging import ImageProcessingError
from webapp.tasks.retry import retry_countdown
from webapp.uploads import services

log = logging.getLogger(__name__)

OUR_FAULT = ("We could not process this image because of a problem on our side. "
             "Please upload it again later.")
TOO_SLOW = "Processing this image took too long. Try a smaller image."
UNREADABLE = "This image could not be processed. Try saving it again as a JPEG or PNG."
#: Longest wait between two retries of our own failures, seconds: a full disk or a
#: libvips hiccup is either gone within a minute or needs an operator.
RETRY_BACKOFF_MAX = 60


# A 12,000 px JPEG decodes with shrink-on-load in well under a few seconds; 60 s of
# soft limit leaves room for a loaded machine, and the hard limit stops a stuck
# decode (the message is then redelivered, and UPLOAD_MAX_ATTEMPTS ends the loop).
@shared_task(bind=True, name="webapp.tasks.images.process_image", acks_late=True,
             max_retries=None, time_limit=90, soft_time_limit=60)
def process_image(self, upload_id: int) -> str:  # type: ignore[no-untyped-def]
    """Make the derivatives of one upload (see :func:`webapp.uploads.services.process`).

    Args:
        upload_id: primary key of an ``Upload`` (int).

    Returns:
        ``"done"``, ``"failed"``, ``"already-done"``, ``"already-failed"``,
        ``"missing"`` or ``"deleted"``.

    Retries: only our own failures (``ImageProcessingError``: disk, a libvips
    saver) retry after :func:`webapp.tasks.retry.retry_countdown` seconds
    (exponential, capped at ``RETRY_BACKOFF_MAX`` = 60 s, equal jitter), up to
    ``UPLOAD_MAX_RETRIES`` times; then the upload is marked failed. A rejected
    image (not an image, damaged, truncated, too large) fails at once with the
    reason, never retried. The soft time limit marks it failed; any other error
    is logged and marks it failed, so the worker keeps serving.

    Idempotency: the same upload always gives the same files and rows; a ``done``
    upload is a no-op; a redelivery after a worker crash resumes from
    ``processing``; after ``UPLOAD_MAX_ATTEMPTS`` starts it ends as failed.
    """
    try:
        return services.process(upload_id)
    except ImageProcessingError as exc:
        retries = self.request.retries
        if retries >= current_app.config["UPLOAD_MAX_RETRIES"]:
            log.error("upload %s failed after %s retries: %s", upload_id, retries, exc)
            services.mark_failed(upload_id, OUR_FAULT)
            return "failed"
        countdown = retry_countdown(retries, RETRY_BACKOFF_MAX)
        log.warning("upload %s: %s; retry %s in %ss", upload_id, exc, retries + 1, countdown)
        raise self.retry(exc=exc, countdown=countdown)
    except SoftTimeLimitExceeded:
        log.error("upload %s: soft time limit", upload_id)
        services.mark_failed(upload_id, TOO_SLOW)
        return "failed"
    except Exception:
        log.exception("upload %s: unexpected error", upload_id)
        services.mark_failed(upload_id, UNREADABLE)
        return "failed"


@shared_task(name="webapp.tasks.images.relay_pending_uploads", acks_late=True,
             time_limit=120, soft_time_limit=100, ignore_result=True)
def relay_pending_uploads() -> int:
    """Publish ``process_image`` for uploads the web could not publish (broker down).

    Run by celery beat (``relay-uploads``, queue ``celery``).

    Returns:
        How many uploads were published (int).

    Retries: none; the next beat tick runs it again. Idempotency: only pending,
    never-published uploads older than ``UPLOAD_RELAY_AFTER`` seconds are
    published, and processing an upload twice is harmless.
    """
    return services.relay_pending(current_app.config["UPLOAD_RELAY_AFTER"])
