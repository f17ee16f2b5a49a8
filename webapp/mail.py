"""Mail: render a ``.txt``/``.html`` template pair into a message and deliver
outbox rows over SMTP.

The kinds of mail and their builders are listed in :mod:`webapp.mail_kinds`; a
builder turns an :class:`OutboxMessage` into a subject and a template context.
Delivery is idempotent per outbox row (see :func:`deliver`), verifies the SMTP
server's TLS certificate and host name (:func:`tls_context`), and speaks
SMTPUTF8 (RFC 6531) for addresses that are not ASCII.

Over 300 lines on purpose: rendering and the idempotent delivery of one outbox row
(claim, send, record, classify a failure) are one protocol whose steps must be read
together; the SMTP session itself lives in smtp_pool.py and TLS in its functions here.
"""
from __future__ import annotations

import functools
import logging
import os
import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app, render_template
from flask_mail import Connection
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from webapp import smtp_pool
from webapp.bounces import services as bounces
from webapp.extensions import db
from webapp.models import OutboxMessage, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rendered:
    """What a builder returns: the subject and the template context."""

    subject: str
    context: dict[str, Any]


Builder = Callable[[OutboxMessage], Rendered]


class PermanentMailError(Exception):
    """SMTP refused the mail for good (a 5xx reply): retrying cannot help."""


class TransientMailError(Exception):
    """SMTP could not take the mail now (connection failed, 4xx): retry later."""


class SMTPUTF8Unsupported(PermanentMailError):
    """An address is not ASCII and the SMTP server does not offer SMTPUTF8
    (RFC 6531 section 3.4): the server cannot take this mail at all."""


def classify_smtp_error(exc: BaseException) -> type[Exception]:
    """Sort an SMTP failure into permanent or transient (RFC 5321 reply classes).

    Args:
        exc: what ``smtplib``/``socket``/``ssl`` raised.

    Returns:
        :class:`PermanentMailError` for 5xx replies (every refused recipient 5xx)
        and :class:`SMTPUTF8Unsupported`; :class:`TransientMailError` for 4xx
        replies, timeouts, refused or broken connections, TLS failures (an
        untrusted certificate may be fixed by the operator) and anything else
        from the network.
    """
    if isinstance(exc, PermanentMailError):
        return PermanentMailError
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


def render(outbox: OutboxMessage) -> EmailMessage:
    """Build the message for an outbox row: ``multipart/alternative`` with the
    plain text and HTML parts.

    The standard library's :class:`~email.message.EmailMessage` builds it, not
    Flask-Mail's ``Message``: Flask-Mail 0.10 cannot put a non-ASCII local part
    (``jörg@example.com``) into a header, while ``EmailMessage`` keeps it as
    UTF-8 for an SMTPUTF8 send.

    Args:
        outbox: the row; ``kind`` must be a key of :data:`webapp.mail_kinds.KINDS`.

    Returns:
        The message with Subject, From, To, Date and Message-ID
        (:func:`message_id_for`) set.

    Raises:
        KeyError: ``outbox.kind`` is not in the table of kinds.
        ValueError: a header would hold a line break (a forged address or subject).
        jinja2.TemplateError: a template is missing or broken.
    """
    # Imported here: the builders' modules import Rendered from this one.
    from webapp.mail_kinds import KINDS

    rendered = KINDS[outbox.kind](outbox)
    ctx = {"base_url": current_app.config["BASE_URL"], **rendered.context}
    msg = EmailMessage()
    msg["Subject"] = rendered.subject
    msg["From"] = current_app.config["MAIL_DEFAULT_SENDER"]
    msg["To"] = outbox.to_address
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = message_id_for(outbox)
    msg.set_content(render_template(f"email/{outbox.kind}.txt", **ctx))
    msg.add_alternative(render_template(f"email/{outbox.kind}.html", **ctx), subtype="html")
    return msg


def needs_smtputf8(msg: EmailMessage) -> bool:
    """True when the sender or a recipient address is not ASCII, so the mail can
    only travel with the SMTPUTF8 extension (RFC 6531)."""
    fields = [str(msg[name]) for name in ("From", "To", "Cc") if msg[name] is not None]
    return any(not address.isascii() for _name, address in getaddresses(fields))


@functools.lru_cache(maxsize=4)
def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The TLS context for SMTP: certificates and host names verified.

    ``ssl.create_default_context`` (Python's "secure defaults": CERT_REQUIRED,
    ``check_hostname``, TLS 1.2 or newer) against the system's trust store, or
    against ``ca_file`` alone for a private CA (``MAIL_SSL_CA_FILE``). Without a
    context, ``smtplib`` encrypts but accepts any certificate, so anyone on the
    path could pose as the server and read ``MAIL_PASSWORD``. Cached per file:
    making a context loads the trust store, about 18 ms each on the 2-core test
    machine, twice a whole mail's worker CPU (9 ms, bench/README.md). A changed
    CA file is read at the next worker start.

    Args:
        ca_file: path of a PEM bundle of trusted CAs, or ``None`` for the system store.

    Raises:
        OSError: ``ca_file`` cannot be read. ssl.SSLError: it holds no certificate.
    """
    return ssl.create_default_context(cafile=ca_file)


class TimedConnection(Connection):
    """Flask-Mail's SMTP connection with a socket timeout and verified TLS.

    Flask-Mail opens ``smtplib.SMTP`` without a timeout (a server that stops
    answering would hold the task until its time limit; here ``MAIL_TIMEOUT``
    seconds) and calls ``starttls()``/``SMTP_SSL`` without an SSL context (no
    certificate check; here :func:`tls_context` with ``MAIL_SSL_CA_FILE``).
    ``host`` is ``None`` when ``MAIL_SUPPRESS_SEND`` is on.
    """

    def configure_host(self) -> smtplib.SMTP:
        cfg = current_app.config
        timeout = cfg["MAIL_TIMEOUT"]
        context = None
        if self.mail.use_ssl or self.mail.use_tls:
            context = tls_context(cfg.get("MAIL_SSL_CA_FILE") or None)
        if self.mail.use_ssl:
            host: smtplib.SMTP = smtplib.SMTP_SSL(self.mail.server, self.mail.port,
                                                  timeout=timeout, context=context)
        else:
            host = smtplib.SMTP(self.mail.server, self.mail.port, timeout=timeout)
        host.set_debuglevel(int(self.mail.debug))
        if self.mail.use_tls:
            host.starttls(context=context)
        if self.mail.username and self.mail.password:
            host.login(self.mail.username, self.mail.password)
        return host


def send_message(host: smtplib.SMTP, msg: EmailMessage) -> None:
    """Hand ``msg`` to the SMTP server, with SMTPUTF8 when an address needs it.

    ``smtplib.SMTP.send_message`` adds ``SMTPUTF8`` and ``BODY=8BITMIME`` to MAIL
    FROM and sends the headers as UTF-8 when an address is not ASCII (RFC 6531).

    Raises:
        SMTPUTF8Unsupported: an address is not ASCII and the server's EHLO does
            not offer SMTPUTF8 (checked before MAIL FROM, so nothing is sent).
        smtplib.SMTPException, OSError: from the SMTP conversation.
    """
    if needs_smtputf8(msg):
        host.ehlo_or_helo_if_needed()
        if not host.has_extn("smtputf8"):
            raise SMTPUTF8Unsupported(
                f"the address {msg['To']} is not ASCII and the SMTP server does not "
                "offer SMTPUTF8 (RFC 6531); it cannot take this mail")
    host.send_message(msg)


def worker_identity() -> str:
    """``host:pid`` of this process, written into a claimed outbox row."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _smtp_key() -> tuple[object, ...]:
    """What a kept SMTP session is bound to (see :mod:`webapp.smtp_pool`)."""
    cfg = current_app.config
    return (cfg["MAIL_SERVER"], cfg["MAIL_PORT"], cfg["MAIL_USE_SSL"], cfg["MAIL_USE_TLS"],
            cfg["MAIL_USERNAME"], cfg.get("MAIL_SSL_CA_FILE"))


def _claim(outbox_id: int, redelivered: bool) -> tuple[OutboxMessage | None, str]:
    """Claim the row in the open transaction; the caller commits or rolls back.

    The common case is one statement: ``UPDATE … WHERE id = ? AND sent_at IS
    NULL AND failed_at IS NULL AND claimed_at IS NULL RETURNING *`` claims the
    row and loads it (PostgreSQL and SQLite 3.35+ both have ``RETURNING``; on
    PostgreSQL the row stays locked until the caller's commit). Only when that
    matches nothing is the row read to say why, and a takeover claimed with a
    compare-and-set on ``attempts``.

    Returns:
        ``(row, "claimed" | "takeover")`` with the claimed row, or ``(None,
        outcome)`` with ``"missing"``, ``"already-sent"``, ``"already-failed"``
        or ``"in-progress"``.
    """
    me = worker_identity()
    now = utcnow()
    open_row = (OutboxMessage.id == outbox_id, OutboxMessage.sent_at.is_(None),
                OutboxMessage.failed_at.is_(None))
    row = db.session.scalar(
        update(OutboxMessage)
        .where(*open_row, OutboxMessage.claimed_at.is_(None))
        .values(claimed_at=now, claimed_by=me, attempts=OutboxMessage.attempts + 1)
        .returning(OutboxMessage),
        execution_options={"synchronize_session": False, "populate_existing": True})
    if row is not None:
        return row, "claimed"
    row = db.session.get(OutboxMessage, outbox_id, populate_existing=True)
    if row is None:
        return None, "missing"
    if row.sent_at is not None:
        return None, "already-sent"
    if row.failed_at is not None:
        return None, "already-failed"
    if row.claimed_at is None:  # released between the two statements: next delivery
        return None, "in-progress"
    age = (now - row.claimed_at).total_seconds()
    if not redelivered and age < current_app.config["MAIL_CLAIM_TIMEOUT"]:
        log.info("mail outbox=%s is being sent by %s (%.1fs ago); nothing to do",
                 row.id, row.claimed_by, age)
        return None, "in-progress"
    previous = row.claimed_by
    row = db.session.scalar(
        update(OutboxMessage)
        .where(*open_row, OutboxMessage.attempts == row.attempts)
        .values(claimed_at=now, claimed_by=me, attempts=OutboxMessage.attempts + 1,
                takeovers=OutboxMessage.takeovers + 1)
        .returning(OutboxMessage),
        execution_options={"synchronize_session": False, "populate_existing": True})
    if row is None:  # another copy claimed it between our read and write
        return None, "in-progress"
    log.warning("mail outbox=%s: taking over a send left unfinished by %s "
                "(possible duplicate, Message-ID %s)", row.id, previous, message_id_for(row))
    return row, "takeover"


def deliver(outbox_id: int, *, redelivered: bool = False) -> str:
    """Send one outbox row over SMTP unless it was already sent or failed.

    Idempotent, with the row id as the key. The send first *claims* the row
    (``claimed_at``, ``claimed_by``, ``attempts + 1``; see :func:`_claim`),
    builds the mail inside the claiming transaction and commits the claim, then
    talks SMTP over this worker process's kept session (:mod:`webapp.smtp_pool`:
    ``MAIL_TIMEOUT`` socket timeout, verified TLS, RSET before reuse), then
    records ``sent_at`` as soon as the server accepted the DATA, in one
    ``UPDATE``. So:

    * a task for a row already sent or failed does nothing;
    * a row still claimed means an earlier attempt never recorded its outcome.
      If this message is a *redelivery* (RabbitMQ redelivers only after the
      consumer died) or the claim is older than ``MAIL_CLAIM_TIMEOUT`` seconds,
      that attempt crashed: the send is taken over and ``takeovers`` counted (it
      may duplicate a mail whose SMTP transaction finished just before the
      crash; the Message-ID is the same, so receivers can drop it). Otherwise
      another copy is sending right now and this one does nothing.

    Every attempt ends the row in a known state: sent, failed (``failed_at``
    and ``last_error`` set, one log line) or released for a retry
    (``claimed_at`` cleared, ``last_error`` set). A failure that no retry can
    mend (an SMTP 5xx reply, a non-ASCII address on a server without SMTPUTF8,
    a mail that cannot be built, any unexpected error) fails the row at once. A
    mail that cannot be built rolls its claim back first, so ``attempts`` counts
    SMTP attempts only.

    An address on the suppression list (a hard bounce,
    :func:`webapp.bounces.services.suppressed`) fails the row without a send.

    Database round trips of a sent mail: claim (``UPDATE … RETURNING``), the
    suppression lookup and the commit; record (``UPDATE``) and commit.

    Args:
        outbox_id: primary key of an :class:`OutboxMessage`.
        redelivered: the broker's ``redelivered`` flag of the task message.

    Returns:
        ``"sent"``, ``"failed"``, ``"already-sent"``, ``"already-failed"``,
        ``"in-progress"`` or ``"missing"``.

    Raises:
        TransientMailError: SMTP unreachable, too slow, TLS refused (untrusted
            certificate, wrong host name) or answered 4xx; the claim is released
            and the caller retries.
        sqlalchemy.exc.SQLAlchemyError: the database failed; nothing was claimed
            if it failed before the SMTP conversation.
    """
    row, outcome = _claim(outbox_id, redelivered)
    if row is None:
        db.session.rollback()
        return outcome
    hard = bounces.suppressed(row.to_address)
    if hard is not None:  # a hard bounce: no second try until the person acts
        db.session.rollback()  # the claim is undone: attempts count SMTP attempts only
        return _fail(outbox_id, f"not sent: {row.to_address} is on the suppression list "
                                f"(bounced {hard.status} on {hard.created_at:%Y-%m-%d})")
    try:
        msg = render(row)
    except (SQLAlchemyError, SoftTimeLimitExceeded):
        db.session.rollback()  # the database or the clock, not the mail: claim undone
        raise
    except Exception as exc:  # noqa: BLE001 - a mail that cannot be built never will be
        db.session.rollback()
        return _fail(outbox_id, f"could not build the mail: {type(exc).__name__}: {exc}")
    db.session.commit()  # the claim: from here on a crash is detected
    cfg = current_app.config
    mail = current_app.extensions["mail"]
    try:
        if not mail.suppress:  # MAIL_SUPPRESS_SEND: nothing goes out, the row is marked sent
            with smtp_pool.session(_smtp_key(), TimedConnection(mail).configure_host,
                                   idle=cfg["MAIL_CONNECTION_IDLE"],
                                   max_mails=cfg["MAIL_CONNECTION_MAX_MAILS"]) as host:
                send_message(host, msg)
    except Exception as exc:  # noqa: BLE001 - every outcome is recorded, see below
        network = isinstance(exc, (smtplib.SMTPException, OSError, SoftTimeLimitExceeded))
        db.session.rollback()
        reason = f"{type(exc).__name__}: {exc}"
        if not network and not isinstance(exc, PermanentMailError):
            return _fail(outbox_id, f"unexpected error while sending: {reason}")
        if classify_smtp_error(exc) is PermanentMailError:
            return _fail(outbox_id, reason, bounce=bounces.smtp_failure(exc))
        if isinstance(exc, ssl.SSLCertVerificationError):
            log.error("mail outbox=%s not sent: the TLS certificate of SMTP server %s:%s "
                      "was refused (%s); trust its CA with MAIL_SSL_CA_FILE", outbox_id,
                      cfg["MAIL_SERVER"], cfg["MAIL_PORT"], exc.verify_message)
        _release(outbox_id, reason)
        raise TransientMailError(reason) from exc
    # Recorded as soon as the server took the DATA: a crash from here on cannot resend.
    db.session.execute(
        update(OutboxMessage).where(OutboxMessage.id == outbox_id)
        .values(sent_at=utcnow(), message_id=str(msg["Message-ID"]), last_error=None)
        .execution_options(synchronize_session=False))
    db.session.commit()
    return "sent"


def _release(outbox_id: int, reason: str) -> None:
    """Clear the claim of a row whose attempt failed transiently (it will be retried)."""
    row = db.session.get(OutboxMessage, outbox_id, populate_existing=True)
    row.last_error = reason[:2000]
    row.claimed_at = None  # the outcome is known: not delivered
    db.session.commit()


def _fail(outbox_id: int, reason: str, bounce: bounces.Failure | None = None) -> str:
    """Mark a row failed for good (and record ``bounce``), log it in one line,
    return ``"failed"``."""
    mark_failed(outbox_id, reason, bounce=bounce)
    row = db.session.get(OutboxMessage, outbox_id)
    log.error("mail outbox=%s kind=%s to=%s failed permanently: %s", outbox_id,
              row.kind if row else "?", row.to_address if row else "?", reason[:2000])
    return "failed"


def mark_failed(outbox_id: int, reason: str, *, bounce: bounces.Failure | None = None) -> None:
    """Record that the row will not be sent, for operators (and the person).

    Args:
        outbox_id: primary key of an :class:`OutboxMessage`.
        reason: why, kept in ``last_error`` (first 2000 characters).
        bounce: a delivery failure the person should see (an SMTP 5xx reply,
            retries given up): recorded in ``mail_bounces`` in the same commit
            (:func:`webapp.bounces.services.record`; a hard one suppresses the address).

    The row keeps ``attempts``; its claim is cleared. ``flask mail-failures``
    lists it and ``--retry ID`` queues it again. A row already sent is left alone.
    """
    row = db.session.get(OutboxMessage, outbox_id, populate_existing=True)
    if row is not None and row.sent_at is None:
        row.failed_at = utcnow()
        row.claimed_at = None
        row.last_error = reason[:2000]
        if bounce is not None:
            bounces.record(row.to_address, bounce, outbox_id=row.id)
        db.session.commit()
