"""Bounce rules: what a failed delivery means in plain words, which failures
suppress an address, and how a delivery status notification is read and applied.

Sources of a bounce (``MailBounce.source``):

* ``smtp``: the SMTP server refused the mail with a 5xx reply
  (:func:`webapp.mail.deliver`);
* ``retries``: transient failures (4xx, no connection) until ``MAIL_MAX_RETRIES``
  ran out (:func:`webapp.tasks.mail.send_mail`);
* ``dsn``: a delivery status notification (RFC 3464 ``multipart/report``)
  handed to ``POST /hooks/bounce`` or ``flask bounce``; many providers accept a
  mail and bounce it later;
* ``json``: ``{"message_id", "recipient", "status"}`` to the same two entries.

Status codes are RFC 3463 enhanced status codes (``class.subject.detail``); an
SMTP reply without one is mapped from its basic code (RFC 5321 4.2). A *hard*
bounce (class 5, subject 1 "addressing", or 5.2.1 "mailbox disabled": the
address will never work) puts the address on the suppression list: nothing more
is sent to it until the person asks to try again or changes the address. Other
permanent failures (a full mailbox, a spam filter) are shown but do not suppress.
"""
from __future__ import annotations

import email
import email.policy
import json
import re
import smtplib
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from typing import Any

from email_validator import EmailNotValidError
from sqlalchemy import select, update

from webapp.extensions import db
from webapp.models import MailBounce, OutboxMessage, utcnow

#: An RFC 3463 enhanced status code anywhere in a text.
ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")

#: Basic SMTP reply codes (RFC 5321 4.2.2) → the enhanced code they mean most often.
BASIC = {550: "5.1.1", 551: "5.1.6", 552: "5.2.2", 553: "5.1.3", 554: "5.0.0",
         521: "5.3.2", 556: "5.1.10", 450: "4.2.0", 451: "4.3.0", 452: "4.2.2", 421: "4.3.2"}

#: Plain words for RFC 3463 codes: exact ``subject.detail`` first, then ``subject``.
_DETAIL = {
    "1.1": "there is no mailbox with that address",
    "1.2": "the domain of the address does not exist or takes no mail",
    "1.3": "the address is not written correctly",
    "1.6": "the mailbox has moved and left no forwarding address",
    "1.10": "the domain of the address takes no mail",
    "2.1": "the mailbox has been disabled",
    "2.2": "the mailbox is full",
    "3.4": "the message is larger than the receiving server accepts",
    "6.7": "the address has characters our mail server cannot send to",
    "7.1": "the receiving server refused it (often a spam or security filter)",
}
_SUBJECT = {
    "1": "the address was refused",
    "2": "the mailbox cannot take mail",
    "3": "the receiving mail system has a problem",
    "4": "the receiving mail server could not be reached",
    "5": "the receiving mail server broke off the delivery",
    "6": "the receiving server could not handle the message",
    "7": "the receiving server's security or spam policy refused it",
}


class BadReport(ValueError):
    """A bounce report that cannot be read; the message says why. Nothing is written."""


@dataclass(frozen=True)
class Failure:
    """A delivery failure to record: RFC 3463 ``status``, the server's text, the source."""

    status: str
    diagnostic: str
    source: str


@dataclass(frozen=True)
class Report:
    """One recipient's entry of a bounce report.

    ``recipient``: normalised address; ``status``: RFC 3463 code; ``action``:
    RFC 3464 ``Action`` (``failed``, ``delayed``, ``delivered``, ``relayed``,
    ``expanded``); ``message_id``: the Message-ID of the mail that bounced, with
    angle brackets, when the report names it.
    """

    recipient: str
    status: str
    action: str
    message_id: str | None
    diagnostic: str | None
    source: str


# --- plain words ---------------------------------------------------------------------


def plain_reason(status: str) -> str:
    """The reason of a failure, for the person (RFC 3463 status code → words).

    Args:
        status: ``"5.1.1"`` and the like; anything else gives a generic reason.

    Returns:
        A lower-case clause, e.g. ``"there is no mailbox with that address"``.
    """
    m = ENHANCED.fullmatch(status.strip())
    if m is None:
        return "the receiving server did not accept it"
    cls, subject, detail = m.groups()
    words = _DETAIL.get(f"{subject}.{detail}") or _SUBJECT.get(subject)
    words = words or "the receiving server did not accept it"
    if cls == "4":
        return f"{words}; we kept trying for a while and then gave up"
    return words


def is_hard(status: str) -> bool:
    """Whether a status means the address itself will never work (see the module
    docstring): class 5 with subject 1, or 5.2.1."""
    m = ENHANCED.fullmatch(status.strip())
    return bool(m) and m.group(1) == "5" and (m.group(2) == "1" or status.strip() == "5.2.1")


def status_of_smtp_reply(code: int | None, text: str) -> str:
    """The RFC 3463 code of an SMTP reply: the enhanced code in ``text`` if any,
    else mapped from the basic ``code`` (:data:`BASIC`), else ``"<class>.0.0"``."""
    m = ENHANCED.search(text or "")
    if m is not None:
        return m.group(0)
    if code in BASIC:
        return BASIC[code]
    return f"{str(code)[0]}.0.0" if code and 400 <= code < 600 else "5.0.0"


def smtp_failure(exc: BaseException) -> Failure:
    """The :class:`Failure` of a permanent SMTP error (``source="smtp"``).

    Args:
        exc: an ``smtplib`` exception carrying a 5xx reply, or
            :class:`webapp.mail.SMTPUTF8Unsupported` (RFC 6531: status 5.6.7).
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        code, raw = next(iter(exc.recipients.values()))
    elif isinstance(exc, smtplib.SMTPResponseException):
        code, raw = exc.smtp_code, exc.smtp_error
    else:
        return Failure("5.6.7", str(exc), "smtp")
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return Failure(status_of_smtp_reply(code, text), f"{code} {text}".strip(), "smtp")


def retries_failure(reason: str) -> Failure:
    """The :class:`Failure` of a mail given up after its retries
    (``source="retries"``): the enhanced code in the last error, else 4.4.1
    ("no answer from host", RFC 3463)."""
    m = ENHANCED.search(reason)
    code = m.group(0) if m and m.group(1) == "4" else "4.4.1"
    return Failure(code, reason, "retries")


# --- records and the suppression list ------------------------------------------------


def record(address: str, failure: Failure, outbox_id: int | None = None) -> MailBounce:
    """Add a bounce row in the caller's transaction (the caller commits).

    Args:
        address: the recipient, normalised.
        failure: status, server text and source.
        outbox_id: the outbox row of the mail, when known.
    """
    row = MailBounce(address=address, outbox_id=outbox_id, status=failure.status[:16],
                     hard=is_hard(failure.status), reason=plain_reason(failure.status),
                     diagnostic=(failure.diagnostic or "")[:2000] or None, source=failure.source)
    db.session.add(row)
    return row


def suppressed(address: str) -> MailBounce | None:
    """The hard bounce that keeps ``address`` on the suppression list, or ``None``."""
    return db.session.scalar(
        select(MailBounce).where(MailBounce.address == address, MailBounce.hard.is_(True),
                                 MailBounce.cleared_at.is_(None))
        .order_by(MailBounce.id.desc()).limit(1))


def lift(address: str) -> None:
    """Take ``address`` off the suppression list (in the caller's transaction):
    the person who holds the account asked to try it again."""
    db.session.execute(update(MailBounce)
                       .where(MailBounce.address == address, MailBounce.cleared_at.is_(None))
                       .values(cleared_at=utcnow())
                       .execution_options(synchronize_session=False))


def for_outbox(outbox_id: int) -> MailBounce | None:
    """The latest bounce recorded for an outbox row, or ``None``."""
    return db.session.scalar(select(MailBounce).where(MailBounce.outbox_id == outbox_id)
                             .order_by(MailBounce.id.desc()).limit(1))


# --- reports (RFC 3464 DSN or JSON) --------------------------------------------------


def _address(value: str | None) -> str:
    # Imported here: the auth package imports webapp.mail, which imports this module.
    from webapp.auth.forms import normalize_email

    # Final-Recipient is "rfc822; user@example.com" (RFC 3464 2.3.2).
    raw = (value or "").partition(";")[2] if ";" in (value or "") else (value or "")
    try:
        return normalize_email(raw.strip().strip("<>"))
    except EmailNotValidError as exc:
        raise BadReport(f"recipient {raw.strip()!r} is not an e-mail address") from exc


def _message_id(value: str | None) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    return value if value.startswith("<") else f"<{value}>"


def _original_message_id(report: Message) -> str | None:
    for part in report.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(inner, Message) and inner.get("Message-ID"):
                return _message_id(str(inner["Message-ID"]))
        elif ctype == "text/rfc822-headers":
            headers = HeaderParser().parsestr(part.get_payload(decode=True).decode("utf-8", "replace"))
            if headers.get("Message-ID"):
                return _message_id(headers["Message-ID"])
    return None


def parse_dsn(raw: bytes) -> list[Report]:
    """Read a delivery status notification (RFC 3464 ``multipart/report;
    report-type=delivery-status``).

    Args:
        raw: the whole message, headers included.

    Returns:
        One :class:`Report` per recipient block; ``message_id`` from the returned
        message or its headers (``message/rfc822``, ``text/rfc822-headers``).

    Raises:
        BadReport: not a DSN, no recipient block, or a block without
            ``Final-Recipient``/``Status``, or a malformed status.
    """
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    status_part = next((p for p in msg.walk() if p.get_content_type() == "message/delivery-status"),
                       None)
    if status_part is None:
        raise BadReport("not a delivery status notification (no message/delivery-status part)")
    blocks = status_part.get_payload()
    if not isinstance(blocks, list) or len(blocks) < 2:
        raise BadReport("the delivery status has no per-recipient fields")
    message_id = _original_message_id(msg)
    reports = []
    for block in blocks[1:]:
        status = (block.get("Status") or "").strip().split(" ")[0]
        if not ENHANCED.fullmatch(status):
            raise BadReport(f"status {status!r} is not an RFC 3463 code")
        reports.append(Report(
            recipient=_address(block.get("Final-Recipient") or block.get("Original-Recipient")),
            status=status, action=(block.get("Action") or "failed").strip().lower(),
            message_id=message_id, diagnostic=(block.get("Diagnostic-Code") or "").strip() or None,
            source="dsn"))
    return reports


def parse_json(data: bytes | str | dict[str, Any]) -> Report:
    """Read a JSON bounce: ``{"message_id": str, "recipient": str, "status": str}``
    (``status`` an RFC 3463 code such as ``"5.1.1"``; optional ``"action"``,
    default ``failed`` for class 5 and ``delayed`` otherwise; optional
    ``"diagnostic"``).

    Raises:
        BadReport: not a JSON object, a missing or malformed field.
    """
    try:
        obj = json.loads(data) if isinstance(data, (bytes, str)) else data
    except ValueError as exc:
        raise BadReport(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise BadReport("expected a JSON object")
    status = obj.get("status")
    if not isinstance(status, str) or not ENHANCED.fullmatch(status.strip()):
        raise BadReport('"status" must be an RFC 3463 code such as "5.1.1"')
    recipient = obj.get("recipient")
    if not isinstance(recipient, str):
        raise BadReport('"recipient" is required (an e-mail address)')
    message_id = obj.get("message_id")
    if message_id is not None and not isinstance(message_id, str):
        raise BadReport('"message_id" must be a string')
    action = obj.get("action") or ("failed" if status.strip().startswith("5") else "delayed")
    return Report(recipient=_address(recipient), status=status.strip(), action=str(action).lower(),
                  message_id=_message_id(message_id), diagnostic=obj.get("diagnostic") or None,
                  source="json")


def parse(raw: bytes, content_type: str) -> list[Report]:
    """Read a report by its media type: ``application/json`` → :func:`parse_json`,
    anything else is taken as a DSN (:func:`parse_dsn`)."""
    if content_type.split(";")[0].strip().lower() == "application/json":
        return [parse_json(raw)]
    return parse_dsn(raw)


def apply(report: Report) -> str:
    """Record one report: mark the matching outbox row bounced and the address.

    The row is the one whose ``message_id`` the report names (and whose
    recipient matches); without one the address alone is recorded. Only
    ``Action: failed`` counts (a ``delayed`` notice is not a bounce). Applying
    the same report twice records it once. Commits.

    Returns:
        ``"bounced"`` (row and address), ``"address"`` (no matching row),
        ``"duplicate"`` or ``"ignored"`` (not a failure).
    """
    if report.action != "failed":
        return "ignored"
    row = None
    if report.message_id is not None:
        row = db.session.scalar(select(OutboxMessage).where(
            OutboxMessage.message_id == report.message_id,
            OutboxMessage.to_address == report.recipient))
    same_row = (MailBounce.outbox_id == row.id) if row is not None else MailBounce.outbox_id.is_(None)
    seen = db.session.scalar(select(MailBounce.id).where(
        MailBounce.address == report.recipient, MailBounce.status == report.status[:16],
        MailBounce.source == report.source, same_row).limit(1))
    if seen is not None:
        db.session.rollback()
        return "duplicate"
    if row is not None and row.bounced_at is None:
        row.bounced_at = utcnow()
    record(report.recipient, Failure(report.status, report.diagnostic or "", report.source),
           outbox_id=row.id if row is not None else None)
    db.session.commit()
    return "bounced" if row is not None else "address"
