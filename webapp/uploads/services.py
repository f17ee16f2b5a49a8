"""Uploads: accept a photo on the web (header only), process it on a worker.

Web side (:func:`create_upload`): check the header with :func:`webapp.imaging.sniff`
(allow-list and declared size; no pixel is decoded), store the original under a
generated name, insert the ``pending`` row, commit, then publish
``process_image``. Nothing half-written: a failed store writes no row, a failed
insert removes the stored file, and a failed or timed-out publish leaves the row
pending for :func:`relay_pending` (run by celery beat) — the publish-after-commit
of :mod:`webapp.publisher`, shared with the mail outbox.

Worker side (:func:`process`): ``pending``/``processing`` → ``processing`` →
``done`` (derivatives recorded) or ``failed`` (``error`` says why, in words a
person understands). Re-running it for the same upload writes the same files and
rows, so redelivered or republished messages are harmless.
"""
from __future__ import annotations

import logging
import secrets
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import current_app, url_for
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.datastructures import FileStorage

from webapp import imaging
from webapp.extensions import db
from webapp.models import Upload, UploadDerivative, User, utcnow
from webapp.publisher import publish_after_commit
from webapp.storage import (DERIVATIVES, IMMUTABLE, ORIGINALS, StoreUnavailable, get_store,
                            public_url, scratch_dir)

log = logging.getLogger(__name__)

EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
MISSING_FILE = "The uploaded file is missing; please upload it again."
TOO_MANY_ATTEMPTS = "This image could not be processed (it was tried several times)."


def create_upload(user_id: int, file: FileStorage, purpose: str = "photo") -> Upload:
    """Check, store and record one uploaded photo, then publish its processing.

    Args:
        user_id: the owner.
        file: the uploaded file (Werkzeug ``FileStorage``; its name and
            Content-Type are ignored).
        purpose: ``"photo"`` or ``"avatar"`` (an avatar becomes the user's
            avatar once it is done).

    Returns:
        The committed ``pending`` upload.

    Raises:
        webapp.imaging.ImageRejected: not JPEG/PNG/WebP, empty, damaged header, or
            declared size over ``UPLOAD_MAX_PIXELS`` / ``UPLOAD_MAX_SIDE`` pixels,
            or a decode buffer over ``UPLOAD_MAX_DECODE_BYTES``.
            Nothing is stored.
        webapp.storage.StoreUnavailable: the store is down or refused the write
            (no row is written; a multipart upload is aborted).
        OSError: a local folder store could not write (no row is written).
        sqlalchemy.exc.SQLAlchemyError: the insert failed (the stored object is
            removed, or left to the orphan purge when the store fails as well).

    The file is streamed to the store (``STORAGE_URL``) in chunks: the web holds
    at most one 5 MiB part in memory, never the whole upload.
    """
    cfg = current_app.config
    stream = file.stream
    header = stream.read(imaging.SNIFF_BYTES)
    info = imaging.sniff(header, max_pixels=cfg["UPLOAD_MAX_PIXELS"],
                         max_side=cfg["UPLOAD_MAX_SIDE"],
                         max_decode_bytes=cfg["UPLOAD_MAX_DECODE_BYTES"])
    stream.seek(0)
    store = get_store()
    original_key = f"{ORIGINALS}/{uuid.uuid4().hex}.{EXTENSIONS[info.format]}"
    size = store.save(original_key, stream, info.mime_type)
    upload = Upload(user_id=user_id, purpose=purpose, key=secrets.token_hex(12),
                    status="pending", original_key=original_key, original_format=info.format,
                    original_bytes=size, original_width=info.width, original_height=info.height)
    try:
        db.session.add(upload)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        _delete_quietly(store, [original_key])
        raise
    publish(upload.id)
    return upload


def publish(upload_ids: int | list[int]) -> list[int]:
    """Publish ``process_image`` for committed uploads; mark them published.

    Call only after the commit that wrote the rows. The publish itself (helper
    thread, ``OUTBOX_PUBLISH_TIMEOUT``, ``OUTBOX_PUBLISH_PAUSE``) is
    :func:`webapp.publisher.publish_after_commit`: an upload POST waits at most
    the time-out, a failure is logged, not raised, and the row stays pending and
    unpublished for :func:`relay_pending`.

    Args:
        upload_ids: one id or a list of ids (ints).

    Returns:
        The ids the broker took (now marked published, committed).
    """
    # Imported here: webapp.tasks.images imports this module.
    from webapp.tasks.images import process_image

    def mark(done: list[int]) -> None:
        db.session.execute(update(Upload)
                           .where(Upload.id.in_(done), Upload.published_at.is_(None))
                           .values(published_at=utcnow()))

    ids = [upload_ids] if isinstance(upload_ids, int) else upload_ids
    return publish_after_commit(process_image, ids, mark, what="upload")


def relay_pending(older_than: float, limit: int = 200) -> int:
    """Publish uploads left pending and unpublished for more than ``older_than`` seconds.

    Args:
        older_than: seconds a row may wait for the web's own publish first.
        limit: most rows handled in one call.

    On PostgreSQL the rows stay locked (``FOR UPDATE SKIP LOCKED``) until
    :func:`publish` commits (or, when nothing was published, the rollback
    here), so two relays never publish the same row; SQLite ignores the clause
    and its single writer serialises relays. Publishing twice would still be
    harmless: :func:`process` is idempotent. While this process's publishing is
    paused after a broker failure (``OUTBOX_PUBLISH_PAUSE``) nothing is
    published and the next beat tick tries again.

    Returns:
        How many uploads were published.
    """
    cutoff = utcnow() - timedelta(seconds=older_than)
    ids = db.session.scalars(
        select(Upload.id)
        .where(Upload.status == "pending", Upload.published_at.is_(None),
               Upload.created_at < cutoff)
        .order_by(Upload.id).limit(limit).with_for_update(skip_locked=True)
    ).all()
    if not ids:
        db.session.rollback()
        return 0
    published = publish(list(ids))  # commits, which also releases the row locks
    db.session.rollback()
    return len(published)


def get_owned(user_id: int, upload_id: int) -> Upload | None:
    """The upload ``upload_id`` if it belongs to ``user_id``, else None (→ 404)."""
    return db.session.scalar(select(Upload).where(Upload.id == upload_id,
                                                  Upload.user_id == user_id))


def list_for(user_id: int) -> list[Upload]:
    """The user's uploads, newest first."""
    return list(db.session.scalars(select(Upload).where(Upload.user_id == user_id)
                                   .options(selectinload(Upload.derivatives))
                                   .order_by(Upload.id.desc())))


def media_url(key: str) -> str:
    """The URL a browser fetches the stored derivative ``key`` from.

    ``MEDIA_URL`` + key when set (a CDN); a presigned GET on the bucket for an S3
    store (absolute, stable for half of ``UPLOAD_URL_MAX_AGE`` so a page
    rendered twice keeps the browser's cache); ``/media/<key>`` on the web for
    a local folder. See :func:`webapp.storage.public_url`.
    """
    return public_url(get_store(), key) or url_for("uploads.media", path=key)


def to_json(upload: Upload) -> dict[str, Any]:
    """The JSON status document of ``GET /uploads/<id>`` (README, *Routes*).

    ``{"id", "status", "error", "original": {"bytes", "width", "height"},
    "derivatives": {name: {"url", "width", "height", "bytes", "format"}}}``;
    sizes in bytes and pixels; ``derivatives`` is empty until ``done``; ``url``
    as :func:`media_url` (absolute when it points to the store or a CDN).
    """
    return {
        "id": upload.id,
        "status": upload.status,
        "error": upload.error,
        "original": {"bytes": upload.original_bytes, "width": upload.original_width,
                     "height": upload.original_height},
        "derivatives": {
            d.name: {"url": media_url(d.storage_key), "width": d.width, "height": d.height,
                     "bytes": d.bytes, "format": d.format}
            for d in upload.derivatives
        } if upload.status == "done" else {},
    }


def delete_upload(upload: Upload) -> None:
    """Delete an upload's row (derivative rows cascade) and then its objects.

    Rows go first, in one commit; objects after it, so a failed commit leaves
    everything as it was. An object the store fails to delete (outage) is no
    longer referenced, so the orphan purge removes it later. A worker still
    processing it notices the row is gone and removes what it wrote (see
    :func:`process`).
    """
    keys = [d.storage_key for d in upload.derivatives]
    if upload.original_key:
        keys.append(upload.original_key)
    db.session.delete(upload)
    db.session.commit()
    _delete_quietly(get_store(), keys)


def _delete_quietly(store: Any, keys: list[str]) -> None:
    """Delete ``keys``, logging failures: an unreferenced object is the orphan
    purge's to remove, while a raised error would hide the caller's outcome."""
    for key in keys:
        try:
            store.delete(key)
        except OSError as exc:
            log.warning("could not delete %s: %s", key, exc)


def avatar_for(user: User) -> dict[str, Any]:
    """What the avatar form shows for ``user``.

    Returns:
        ``{"url": str | None, "pending": Upload | None}``: the current avatar's
        URL, and the newest avatar upload that is not done yet (pending,
        processing or failed), newer than the current avatar.
    """
    url = None
    current = db.session.get(Upload, user.avatar_upload_id) if user.avatar_upload_id else None
    if current is not None and (d := current.derivative("avatar")) is not None:
        url = media_url(d.storage_key)
    pending = db.session.scalar(
        select(Upload).where(Upload.user_id == user.id, Upload.purpose == "avatar",
                             Upload.status != "done",
                             Upload.id > (current.id if current else 0))
        .order_by(Upload.id.desc()).limit(1))
    return {"url": url, "pending": pending}


# --- worker side ---------------------------------------------------------------------


def mark_failed(upload_id: int, reason: str) -> None:
    """End an upload as ``failed`` with ``reason`` (a sentence for its owner).

    Also deletes the original unless ``KEEP_ORIGINALS`` (it holds the camera's
    metadata and will not be used again). Does nothing to a ``done`` upload.
    """
    db.session.rollback()
    upload = db.session.get(Upload, upload_id)
    if upload is None or upload.status == "done":
        return
    upload.status, upload.error, upload.finished_at = "failed", reason, utcnow()
    db.session.commit()
    _drop_original(upload)


def _drop_original(upload: Upload) -> None:
    """Delete the stored original unless ``KEEP_ORIGINALS``; clears ``original_key``.

    The reference goes first (committed), then the object: if the store fails
    the object is an orphan that the purge removes, never a row pointing at
    nothing.
    """
    key = upload.original_key
    if current_app.config["KEEP_ORIGINALS"] or not key:
        return
    upload.original_key = None
    db.session.commit()
    _delete_quietly(get_store(), [key])


def process(upload_id: int) -> str:
    """Make and record the derivatives of one upload (run by ``process_image``).

    Args:
        upload_id: primary key of an :class:`~webapp.models.Upload`.

    Returns:
        ``"done"``, ``"failed"`` (rejected image; ``error`` set), ``"already-done"``,
        ``"already-failed"``, ``"missing"`` (no such row) or ``"deleted"`` (the row
        was deleted while processing; the files written are removed).

    Raises:
        webapp.imaging.ImageProcessingError: our side failed (disk, libvips saver,
            the store unreachable); the task retries it.

    The original is downloaded from the store into a scratch folder under
    ``INSTANCE_DIR/scratch``, the derivatives are made there and uploaded; the
    folder is removed when the call ends, also on error, so a worker keeps
    nothing on its disk.

    Idempotent: derivative keys come from the upload's ``key`` and
    :func:`webapp.imaging.make_derivatives` writes byte-identical files for the
    same input, each replacing its object whole; the rows are replaced in one
    transaction. A ``done`` upload is not processed again.
    """
    upload = db.session.get(Upload, upload_id)
    if upload is None:
        return "missing"
    if upload.status == "done":
        _drop_original(upload)  # in case a crash came between "done" and the delete
        return "already-done"
    if upload.status == "failed":
        return "already-failed"
    # Every start counts (retries and redeliveries): an image that kills the worker
    # each time (hard time limit, out of memory) must not loop forever.
    if upload.attempts >= current_app.config["UPLOAD_MAX_ATTEMPTS"]:
        mark_failed(upload_id, TOO_MANY_ATTEMPTS)
        return "failed"
    upload.status, upload.started_at = "processing", utcnow()
    upload.attempts += 1
    db.session.commit()

    cfg = current_app.config
    store = get_store()
    stored: list[tuple[imaging.Derivative, str]] = []
    if not upload.original_key:
        mark_failed(upload_id, MISSING_FILE)
        return "failed"
    try:
        with scratch_dir() as tmp:
            src, out = Path(tmp) / "original", Path(tmp) / "out"
            out.mkdir()
            store.fetch(upload.original_key, src)
            derivatives = imaging.make_derivatives(
                src, out, upload.key,
                max_pixels=cfg["UPLOAD_MAX_PIXELS"], max_side=cfg["UPLOAD_MAX_SIDE"],
                max_decode_bytes=cfg["UPLOAD_MAX_DECODE_BYTES"])
            for d in derivatives:
                key = f"{DERIVATIVES}/{d.path}"
                store.put_file(out / d.path, key, f"image/{d.format}", IMMUTABLE)
                stored.append((d, key))
    except StoreUnavailable as exc:
        raise imaging.ImageProcessingError(f"store unavailable: {exc}") from exc
    except imaging.ImageRejected as exc:
        log.info("upload %s rejected: %s", upload_id, exc.reason)
        mark_failed(upload_id, exc.reason)
        return "failed"
    except FileNotFoundError:
        mark_failed(upload_id, MISSING_FILE)
        return "failed"

    try:
        upload = db.session.get(Upload, upload_id)
        if upload is None:
            raise LookupError
        db.session.execute(delete(UploadDerivative).where(UploadDerivative.upload_id == upload_id))
        for d, key in stored:
            db.session.add(UploadDerivative(upload_id=upload_id, name=d.name, storage_key=key,
                                            width=d.width, height=d.height, bytes=d.bytes,
                                            format=d.format))
        upload.status, upload.error, upload.finished_at = "done", None, utcnow()
        if upload.purpose == "avatar":
            db.session.execute(update(User).where(User.id == upload.user_id)
                               .values(avatar_upload_id=upload_id))
        db.session.commit()
    except (LookupError, IntegrityError, StaleDataError):
        db.session.rollback()
        again = db.session.get(Upload, upload_id)
        if again is not None and again.status == "done":
            return "already-done"  # a duplicate message finished first: same files
        if again is None:
            _delete_quietly(store, [key for _, key in stored])
            return "deleted"
        raise
    _drop_original(upload)
    log.info("upload %s done: %s", upload_id,
             ", ".join(f"{d.name} {d.width}x{d.height} {d.bytes} B" for d, _ in stored))
    return "done"
