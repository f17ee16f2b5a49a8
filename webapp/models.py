"""Database models (SQLAlchemy 2.0 ``Mapped[]`` style).

The schema is owned by the Alembic migrations in ``migrations/``; every change
here needs a migration (``flask --app wsgi db migrate``), never ``create_all``.
Times are timezone-aware UTC.

Over 300 lines on purpose: every table in one module, so a reader (and Alembic's
autogenerate) sees the whole schema and its relationships in one place.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (JSON, BigInteger, Boolean, Date, DateTime, ForeignKey, Index, Integer,
                        String, Text, UniqueConstraint, false, func, text)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from webapp.extensions import db


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A DateTime that always comes back timezone-aware UTC, on SQLite too.

    SQLite has no time-zone type and returns naive values; comparing those with
    aware ones raises ``TypeError``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use webapp.models.utcnow()")
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class User(UserMixin, db.Model):  # type: ignore[name-defined]
    """An account. ``email`` is stored normalised (email-validator), so it is unique
    as people mean it; ``password_hash`` is an argon2id PHC string."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Bumped to end every session of the user (password reset or change).
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The upload shown as the user's avatar; NULL when it is deleted.
    # use_alter: users and uploads reference each other.
    avatar_upload_id: Mapped[int | None] = mapped_column(
        ForeignKey("uploads.id", ondelete="SET NULL", use_alter=True), nullable=True)

    @property
    def is_verified(self) -> bool:
        """True once the address was confirmed by the mailed link."""
        return self.verified_at is not None

    def get_id(self) -> str:
        """Flask-Login's session id: ``"<id>.<session_epoch>"``, so bumping the
        epoch invalidates sessions and remember cookies made before."""
        return f"{self.id}.{self.session_epoch}"


#: The rows still to send (neither sent nor failed): the partial index's predicate.
UNSENT = "sent_at IS NULL AND failed_at IS NULL"
#: The sent rows: the predicate of the partial ``sent_at`` index.
SENT = "sent_at IS NOT NULL"
#: The failed rows: the predicate of the partial ``failed_at`` index.
FAILED = "failed_at IS NOT NULL"


class OutboxMessage(db.Model):  # type: ignore[name-defined]
    """A mail to send, written in the same transaction as the change that causes it.

    The row id is the idempotency key of the send: the task sends only while
    ``sent_at`` is empty, and the Message-ID header is derived from it.
    ``kind`` names the templates (``email/<kind>.txt`` and ``.html``) and the
    builder in :mod:`webapp.mail_kinds`; ``context`` holds plain JSON values.
    """

    __tablename__ = "outbox_messages"
    # The relay and /metrics look for unsent rows: a partial index holds only
    # those, so it stays small however many sent rows the table keeps.
    # Sent and failed rows have their own partial indexes (the retention
    # purge's sent_at < cutoff, the counts, the failure list); being partial,
    # neither is a candidate for the relay's "IS NULL" filter.
    __table_args__ = (Index("ix_outbox_messages_unsent", "id",
                            postgresql_where=text(UNSENT), sqlite_where=text(UNSENT)),
                      Index("ix_outbox_messages_sent_at", "sent_at",
                            postgresql_where=text(SENT), sqlite_where=text(SENT)),
                      Index("ix_outbox_messages_failed_at", "failed_at",
                            postgresql_where=text(FAILED), sqlite_where=text(FAILED)))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    to_address: Mapped[str] = mapped_column(String(320))
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    message_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Outbox reliability (migration 0005): the send claims the row (committed)
    # before talking SMTP, so a redelivery after a crash mid-send is detected.
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Sends resumed over a claim left by a crashed attempt: each may have
    # delivered a duplicate (same Message-ID).
    takeovers: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Times the send task was published (web, relay, republish, operator retry).
    publish_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Set when a delivery status notification (or a permanent SMTP refusal) said
    # the mail did not arrive; the details are in ``mail_bounces``.
    bounced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class UsedToken(db.Model):  # type: ignore[name-defined]
    """A token that has been used once: its ``jti`` can never be used again.

    The primary key makes "use once" a single INSERT that fails on a second use,
    even when two requests race.
    """

    __tablename__ = "used_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32))
    used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())


# --- uploads (photos and their derivatives) ----------------------------------------


class Upload(db.Model):  # type: ignore[name-defined]
    """A photo a user uploaded, and where its processing stands.

    ``status`` goes ``pending`` → ``processing`` → ``done`` or ``failed`` (with
    ``error``, a sentence for the user). ``original_key`` is the storage key of the
    file as uploaded (a generated name, never the client's); it becomes NULL once the
    original is deleted (``KEEP_ORIGINALS=false``). ``original_*`` are the bytes and
    the pixel size declared in its header. ``key`` is a random token that names the
    derivative files, so their URLs cannot be guessed from the id.
    ``published_at`` is set once ``process_image`` was published; the relay
    republishes rows left pending without it.
    """

    __tablename__ = "uploads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16), default="photo")  # photo | avatar
    key: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    original_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    original_format: Mapped[str] = mapped_column(String(16))
    original_bytes: Mapped[int] = mapped_column(Integer)
    original_width: Mapped[int] = mapped_column(Integer)
    original_height: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    derivatives: Mapped[list[UploadDerivative]] = relationship(
        back_populates="upload", cascade="all, delete-orphan", passive_deletes=True,
        order_by="UploadDerivative.id")

    def derivative(self, name: str) -> UploadDerivative | None:
        """The derivative called ``name`` (``display``, ``display_webp``, ``avatar``)."""
        return next((d for d in self.derivatives if d.name == name), None)


class UploadDerivative(db.Model):  # type: ignore[name-defined]
    """One stored file made from an upload (see :func:`webapp.imaging.make_derivatives`).

    ``storage_key`` is its key in the media storage; ``width``/``height`` pixels;
    ``bytes`` its size; ``format`` ``jpeg`` or ``webp``.
    """

    __tablename__ = "upload_derivatives"
    __table_args__ = (UniqueConstraint("upload_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    upload_id: Mapped[int] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    storage_key: Mapped[str] = mapped_column(String(255))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))

    upload: Mapped[Upload] = relationship(back_populates="derivatives")


# --- account lifecycle (password reset, e-mail change) -----------------------------


class MailedCodeColumns:
    """Columns of a row behind a mailed code (see :mod:`webapp.auth.codes`): the
    random ``code_salt`` it is derived from, the HMAC it is checked against,
    the entries claimed so far, and its lifetime."""

    code_salt: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class EmailChangeRequest(MailedCodeColumns, db.Model):  # type: ignore[name-defined]
    """A pending change of a user's address, confirmed by a 6-digit code mailed to
    the new address.

    The code itself is never stored: the worker derives it at send time from
    ``code_salt`` with a keyed HMAC (``SECRET_KEY``), and the row keeps only an
    HMAC of it (``code_hash``) to compare against in constant time. A request
    lives ``EMAIL_CHANGE_CODE_MAX_AGE`` seconds (``expires_at``) and allows
    ``EMAIL_CHANGE_MAX_ATTEMPTS`` wrong entries (``attempts``); a user has at most
    one open request (a new one replaces the old).
    """

    __tablename__ = "email_change_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    new_email: Mapped[str] = mapped_column(String(320))
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AccountCode(MailedCodeColumns, db.Model):  # type: ignore[name-defined]
    """The 6-digit code mailed with a verification or password-reset link.

    One open code per account and ``purpose`` (the mail kind: ``verify`` or
    ``password_reset``); a new mail replaces it. Like :class:`EmailChangeRequest`
    the code is never stored: the worker derives it at send time from
    ``code_salt`` (:func:`webapp.auth.codes.derive`) and the row keeps an HMAC of
    it (``code_hash``). ``attempts`` counts entries, claimed atomically before
    each comparison; the row is deleted when the code is used.
    """

    __tablename__ = "account_codes"
    __table_args__ = (UniqueConstraint("user_id", "purpose"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(32))


# --- bounces and the suppression list -----------------------------------------------


class MailBounce(db.Model):  # type: ignore[name-defined]
    """A mail that did not arrive: an SMTP refusal, retries given up, or a
    delivery status notification (RFC 3464) received later.

    ``status`` is the RFC 3463 enhanced status code (``5.1.1``); ``reason`` says
    it in plain words for the person; ``diagnostic`` is the server's own text,
    for operators. A ``hard`` bounce (the address or mailbox does not exist)
    puts ``address`` on the suppression list: no mail goes there while a hard
    row for it has ``cleared_at`` empty (the person asking to try again clears it).
    """

    __tablename__ = "mail_bounces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(320), index=True)
    outbox_id: Mapped[int | None] = mapped_column(
        ForeignKey("outbox_messages.id", ondelete="SET NULL"), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(16))
    hard: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    reason: Mapped[str] = mapped_column(Text)
    diagnostic: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str] = mapped_column(String(16))  # smtp | retries | dsn | json
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


# --- operations (daily statistics) --------------------------------------------------


class DailyStats(db.Model):  # type: ignore[name-defined]
    """One row of statistics per calendar day (in ``TIMEZONE``).

    ``day`` is unique, so two beats computing the same day cannot both insert:
    the second INSERT fails and that run does nothing (no second mail).
    ``logins`` counts accounts whose latest log-in fell on the day (only
    ``users.last_login_at`` is stored). ``bytes_saved`` is original bytes minus
    stored derivative bytes over uploads processed that day.
    """

    __tablename__ = "daily_stats"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date, unique=True)
    signups: Mapped[int] = mapped_column(Integer, default=0)
    verifications: Mapped[int] = mapped_column(Integer, default=0)
    logins: Mapped[int] = mapped_column(Integer, default=0)
    uploads: Mapped[int] = mapped_column(Integer, default=0)
    bytes_saved: Mapped[int] = mapped_column(BigInteger, default=0)
    mails_sent: Mapped[int] = mapped_column(Integer, default=0)
    mails_failed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

