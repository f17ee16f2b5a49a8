"""Mail: render a ``.txt``/``.html`` template pair into a message and deliver
outbox rows over SMTP (Flask-Mail).

Each mail kind registers a builder with :func:`mail_kind`; the builder turns an
:class:`OutboxMessage` into a subject and a template context. Delivery is
idempotent per outbox row: see :func:`deliver`.
"""
from __future__ import annotations

import logging
import os
import random
import smtplib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app, render_template
from flask_mail import Connection, Message
from sqlalchemy import update

from webapp.extensions import db
from webapp.models import OutboxMessage, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rendered:
    """What a builder returns: the subject and the template context."""

    subject: str
    context: dict[str, Any]


Builder = Callable[[OutboxMessage], Rendered]
BUILDERS: dict[str, Builder] = {}


def mail_kind(kind: str) -> Callable[[Builder], Builder]:
    """Register the builder for ``kind``; templates are ``email/<kind>.txt|.html``."""

    def register(fn: Builder) -> Builder:
        BUILDERS[kind] = fn
        return fn

    return register


class PermanentMailError(Exception):
    """SMTP refused the mail for good (a 5xx reply): retrying cannot help."""


class TransientMailError(Exception):
    """SMTP could not take the mail now (connection failed, 4xx): retry later."""


def classify_smtp_error(exc: BaseException) -> type[Exception]:
    """Sort an SMTP failure into permanent or transient (RFC 5321 reply classes).

    Args:
        exc: what ``smtplib``/``socket`` raised.

    Returns:
        :class:`PermanentMailError` for 5xx replies (every refused recipient 5xx),
        :class:`TransientMailError` for 4xx replies, timeouts, refused or broken
        connections and anything else from the network.
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _msg in exc.recipients.values()]
        return PermanentMailError if codes and all(500 <= c < 600 for c in codes) else TransientMailError
    if isinstance(exc, smtplib.SMTPResponseException):
        return PermanentMailError if 500 <= exc.smtp_code < 600 else TransientMailError
    return TransientMailError


def message_id_for(outbox: OutboxMessage) -> str:
    """A Message-ID derived from the outbox row, so a resend of the same row
    carries the same id and receivers can drop the duplicate."""
    sender = current_app.config["MAIL_DEFAULT_SENDER"]
    domain = parseaddr(sender)[1].rpartition("@")[2] or "onboard.localhost"
    return f"<outbox-{outbox.id}.{outbox.kind}@{domain}>"


def render(outbox: OutboxMessage) -> Message:
    """Build the Flask-Mail message for an outbox row (plain text and HTML parts).

    Raises:
        KeyError: no builder is registered for ``outbox.kind``.
    """
    rendered = BUILDERS[outbox.kind](outbox)
    ctx = {"base_url": current_app.config["BASE_URL"], **rendered.context}
    msg = Message(
        subject=rendered.subject,
        recipients=[outbox.to_address],
        body=render_template(f"email/{outbox.kind}.txt", **ctx),
        html=render_template(f"email/{outbox.kind}.html", **ctx),
    )
    msg.msgId = message_id_for(outbox)
    return msg


class TimedConnection(Connection):
    """Flask-Mail's SMTP connection with a socket timeout (``MAIL_TIMEOUT``
    seconds): Flask-Mail opens ``smtplib.SMTP`` without one, so a mail server
    that stops answering would hold the task until its time limit."""

    def configure_host(self) -> smtplib.SMTP:
        timeout = current_app.config["MAIL_TIMEOUT"]
        factory = smtplib.SMTP_SSL if self.mail.use_ssl else smtplib.SMTP
        host = factory(self.mail.server, self.mail.port, timeout=timeout)
        host.set_debuglevel(int(self.mail.debug))
        if self.mail.use_tls:
            host.starttls()
        if self.mail.username and self.mail.password:
            host.login(self.mail.username, self.mail.password)
        return host


def retry_countdown(retries: int, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``retries + 1`` of a transient failure.

    Exponential backoff with "equal jitter" (AWS Architecture Blog, "Exponential
    Backoff and Jitter"): ``d = min(2**retries, cap)`` and the wait is uniform in
    ``[d/2, d]``. Half of ``d`` is guaranteed, so the whole retry span has a
    lower bound (:func:`retry_span`) and always outlasts an outage shorter than
    it; the random half spreads the retries of many mails apart.

    Args:
        retries: retries done so far (0 for the first retry).
        cap: the longest wait, seconds (``MAIL_RETRY_BACKOFF_MAX``).
        rand: a source of floats in ``[0, 1)`` (tests pass a fixed one).

    Returns:
        The countdown in seconds, between ``d/2`` and ``d``.
    """
    full = min(2.0 ** retries, float(cap))
    return full / 2 + rand() * full / 2


def retry_span(max_retries: int, cap: float) -> tuple[float, float]:
    """Least and most total seconds that ``max_retries`` retries wait in all.

    Args:
        max_retries: ``MAIL_MAX_RETRIES``.
        cap: ``MAIL_RETRY_BACKOFF_MAX`` seconds.

    Returns:
        ``(shortest, longest)`` sum of the waits of :func:`retry_countdown`
        (every random draw 0, every draw 1). The shortest must exceed the longest
        SMTP outage to survive: 1305 s for the defaults 16 and 300 s.
    """
    longest = sum(min(2.0 ** n, float(cap)) for n in range(max_retries))
    return longest / 2, longest


def worker_identity() -> str:
    """``host:pid`` of this process, written into a claimed outbox row."""
    return f"{socket.gethostname()}:{os.getpid()}"


def deliver(outbox_id: int, *, redelivered: bool = False) -> str:
    """Send one outbox row over SMTP unless it was already sent or failed.

    Idempotent, with the row id as the key. The send first *claims* the row in
    a committed write (``claimed_at``, ``claimed_by``, ``attempts + 1``, a
    compare-and-set on ``attempts`` so two copies of the task never both
    claim), then talks SMTP (``MAIL_TIMEOUT`` socket timeout), then records
    ``sent_at`` as soon as the server accepted the DATA, before QUIT. So:

    * a task for a row already sent or failed does nothing;
    * a row still claimed means an earlier attempt never recorded its outcome.
      If this message is a *redelivery* (RabbitMQ redelivers only after the
      consumer died) or the claim is older than ``MAIL_CLAIM_TIMEOUT`` seconds,
      that attempt crashed: the send is taken over and ``takeovers`` counted (it
      may duplicate a mail whose SMTP transaction finished just before the
      crash; the Message-ID is the same, so receivers can drop it). Otherwise
      another copy is sending right now and this one does nothing.

    Args:
        outbox_id: primary key of an :class:`OutboxMessage`.
        redelivered: the broker's ``redelivered`` flag of the task message.

    Returns:
        ``"sent"``, ``"already-sent"``, ``"already-failed"``, ``"in-progress"``
        or ``"missing"``.

    Raises:
        TransientMailError: SMTP unreachable, too slow or answered 4xx (the
            caller retries); the claim is released.
        PermanentMailError: SMTP answered 5xx; the row is marked failed first.
        KeyError: no builder for the row's kind (nothing is claimed).
    """
    row = db.session.get(OutboxMessage, outbox_id, populate_existing=True)
    if row is None:
        return "missing"
    if row.sent_at is not None:
        return "already-sent"
    if row.failed_at is not None:
        return "already-failed"
    takeover = False
    if row.claimed_at is not None:
        age = (utcnow() - row.claimed_at).total_seconds()
        if not redelivered and age < current_app.config["MAIL_CLAIM_TIMEOUT"]:
            log.info("mail outbox=%s is being sent by %s (%.1fs ago); nothing to do",
                     row.id, row.claimed_by, age)
            db.session.rollback()
            return "in-progress"
        takeover = True
    msg = render(row)
    previous = row.claimed_by
    me = worker_identity()
    claimed = db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row.id, OutboxMessage.attempts == row.attempts,
               OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None))
        .values(claimed_at=utcnow(), claimed_by=me, attempts=OutboxMessage.attempts + 1,
                takeovers=OutboxMessage.takeovers + (1 if takeover else 0))
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if claimed != 1:  # another copy claimed it between our read and write
        return "in-progress"
    if takeover:
        log.warning("mail outbox=%s: taking over a send left unfinished by %s "
                    "(possible duplicate, Message-ID %s)", row.id, previous, msg.msgId)
    row = db.session.get(OutboxMessage, outbox_id, populate_existing=True)
    accepted = False
    try:
        with TimedConnection(current_app.extensions["mail"]) as conn:
            conn.send(msg)
            accepted = True
            # Recorded before QUIT: a crash from here on cannot resend.
            row.sent_at = utcnow()
            row.message_id = msg.msgId
            row.last_error = None
            db.session.commit()
    except (smtplib.SMTPException, OSError, SoftTimeLimitExceeded) as exc:
        if accepted:  # only QUIT failed; the server has the mail
            log.info("mail outbox=%s sent; QUIT failed: %s", outbox_id, exc)
            return "sent"
        db.session.rollback()
        row = db.session.get(OutboxMessage, outbox_id, populate_existing=True)
        kind = classify_smtp_error(exc)
        row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        row.claimed_at = None  # the outcome is known: not delivered
        if kind is PermanentMailError:
            row.failed_at = utcnow()
            db.session.commit()
            log.error("mail outbox=%s kind=%s to=%s failed permanently: %s",
                      row.id, row.kind, row.to_address, row.last_error)
            raise PermanentMailError(row.last_error) from exc
        db.session.commit()
        raise TransientMailError(row.last_error) from exc
    return "sent"


def mark_failed(outbox_id: int, reason: str) -> None:
    """Record that the row will not be sent (retries exhausted), for operators.

    The row keeps ``attempts`` and ``last_error``; ``flask mail-failures`` lists it
    and ``--retry ID`` queues it again.
    """
    row = db.session.get(OutboxMessage, outbox_id, populate_existing=True)
    if row is not None and row.sent_at is None:
        row.failed_at = utcnow()
        row.claimed_at = None
        row.last_error = reason[:2000]
        db.session.commit()
