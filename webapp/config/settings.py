"""Onboard's app settings: the one declared list of what the environment may set.

:func:`from_env` reads every setting once, through :class:`SettingsEnv`
(environs), and is where a new setting is declared: one line in its dict.
Every setting has a safe development default (SQLite under ``INSTANCE_DIR``,
RabbitMQ on localhost, a local SMTP catcher on port 1025) except the secrets in
production, which have none (cookiecutter-flask's rule: required secrets never
fall back silently). Celery's part is :mod:`webapp.config.celery_settings`; the
production rules are :mod:`webapp.config.production`.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from environs import validate
from flask import Flask

from webapp.config.celery_settings import celery_settings, merge_celery_overrides
from webapp.config.env import OWNED_PREFIXES, SettingsEnv, SettingsError

BASE_DIR = Path(__file__).resolve().parent.parent.parent

#: ``SECRET_KEY`` outside production; refused in production.
DEV_SECRET = "dev-only-secret-change-me"
ENV_NAMES = ("development", "test", "production")

#: Keys of Flask extensions that ``create_app`` overrides may set although no
#: environment variable declares them (Flask's own keys are allowed too).
EXTENSION_KEYS = frozenset({
    "WTF_CSRF_TIME_LIMIT", "WTF_CSRF_SSL_STRICT", "WTF_CSRF_CHECK_DEFAULT",
    "SQLALCHEMY_ECHO", "SQLALCHEMY_RECORD_QUERIES",
    "MAIL_SUPPRESS_SEND", "MAIL_DEBUG",
    "RATELIMIT_STRATEGY", "RATELIMIT_STORAGE_OPTIONS", "RATELIMIT_SWALLOW_ERRORS",
})


def from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Build the Flask config from the environment as it is now.

    Every path default derives from ``environ["INSTANCE_DIR"]`` (default
    ``instance/`` beside the code). An unset or empty variable takes its
    default; booleans are ``1/true/yes/on`` or ``0/false/no/off``.

    Args:
        environ: the variables to read (name → text); ``os.environ`` when ``None``.

    Returns:
        A dict of Flask config keys (upper case) plus ``CELERY``, a dict of Celery
        settings (:func:`webapp.config.celery_settings.celery_settings`).
        Durations are seconds, sizes bytes.

    Raises:
        environs.EnvValidationError: a value of the wrong type (``MAIL_PORT=abc``)
            or an ``ONBOARD_ENV`` other than development, test, production.
        environs.EnvNotSetError: ``SECRET_KEY`` or ``FLOWER_BASIC_AUTH`` unset
            with ``ONBOARD_ENV=production``.
        SettingsError: a variable under an owned prefix (``ONBOARD_``, ``MAIL_``,
            … see :data:`webapp.config.env.OWNED_PREFIXES`) that is not declared
            here, e.g. a misspelt name; or a setting read twice.
        All three are ``ValueError``.
    """
    env = SettingsEnv(os.environ if environ is None else environ)
    env_name = env.str("ONBOARD_ENV", "development", validate=validate.OneOf(ENV_NAMES))

    def required_in_production(name: str, dev_default: str) -> str:
        return env.str(name) if env_name == "production" else env.str(name, dev_default)

    instance_dir = env.path("INSTANCE_DIR", BASE_DIR / "instance").absolute()
    database_url = env.str("DATABASE_URL", f"sqlite:///{instance_dir / 'onboard.db'}")
    base_url = env.str("BASE_URL", "http://127.0.0.1:8000").rstrip("/")
    secure = base_url.startswith("https://")
    media_root = env.str("MEDIA_ROOT", str(instance_dir / "media"))
    settings = {
        "ENV_NAME": env_name,
        "SECRET_KEY": required_in_production("SECRET_KEY", DEV_SECRET),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "BASE_URL": base_url,
        "MAIL_SERVER": env.str("MAIL_SERVER", "127.0.0.1"),
        "MAIL_PORT": env.int("MAIL_PORT", 1025),
        "MAIL_USE_TLS": env.bool("MAIL_USE_TLS", False),
        "MAIL_USE_SSL": env.bool("MAIL_USE_SSL", False),
        "MAIL_USERNAME": env.str("MAIL_USERNAME", "") or None,
        "MAIL_PASSWORD": env.str("MAIL_PASSWORD", "") or None,
        "MAIL_DEFAULT_SENDER": env.str("MAIL_DEFAULT_SENDER", "Onboard <no-reply@onboard.localhost>"),
        # SMTP socket timeout in seconds, handed to smtplib.
        "MAIL_TIMEOUT": env.float("MAIL_TIMEOUT", 30.0),
        # PEM bundle of the CAs trusted for the SMTP server's TLS certificate;
        # empty: the system's trust store. Certificates and host names are always verified.
        "MAIL_SSL_CA_FILE": env.str("MAIL_SSL_CA_FILE", "") or None,
        # Transient SMTP failures retry after d*U(0.5, 1) s, d = min(2**n,
        # MAIL_RETRY_BACKOFF_MAX) ("equal jitter"): 16 retries capped at 300 s
        # wait at least 1306 s and at most 2611 s in all, so they always outlast
        # a 10-minute SMTP outage (webapp.tasks.retry.retry_span gives the bounds).
        "MAIL_MAX_RETRIES": env.int("MAIL_MAX_RETRIES", 16),
        "MAIL_RETRY_BACKOFF_MAX": env.int("MAIL_RETRY_BACKOFF_MAX", 300),
        # A send claimed this many seconds ago and never finished is taken over
        # by another copy of its task (longer than send_mail's 90 s time limit).
        "MAIL_CLAIM_TIMEOUT": env.float("MAIL_CLAIM_TIMEOUT", 120.0),
        # Maildir written by the dev SMTP catcher; listed at /dev/mail in development.
        "DEV_MAILDIR": env.str("DEV_MAILDIR", str(instance_dir / "maildir")),
        "VERIFY_TOKEN_MAX_AGE": env.int("VERIFY_TOKEN_MAX_AGE", 24 * 3600),
        # Outbox rows still unpublished after this many seconds are republished.
        "OUTBOX_RELAY_AFTER": env.float("OUTBOX_RELAY_AFTER", 5.0),
        # Rows published this many seconds ago yet neither sent nor failed lost
        # their message (queue deleted, dead-lettered): the relay republishes
        # them. Longer than the whole retry span (2611 s at most by default).
        "OUTBOX_REPUBLISH_AFTER": env.float("OUTBOX_REPUBLISH_AFTER", 3 * 3600.0),
        # After a failed publish the web skips publishing for this many seconds
        # (the relay catches up), so a dead broker port costs one connection
        # timeout, not one per page.
        "OUTBOX_PUBLISH_PAUSE": env.float("OUTBOX_PUBLISH_PAUSE", 5.0),
        # Longest a page waits to publish its task (mail or image: connect, write and
        # confirm), seconds; a broker blocked by a memory/disk alarm never confirms.
        "OUTBOX_PUBLISH_TIMEOUT": env.float("OUTBOX_PUBLISH_TIMEOUT", 3.0),
        "MEDIA_ROOT": media_root,
        # How many reverse proxies in front of the web (0: none); see create_app.
        "PROXY_FIX": env.int("PROXY_FIX", 0),
        "MAX_CONTENT_LENGTH": env.int("MAX_CONTENT_LENGTH", 20 * 1024 * 1024),
        # Declared image size limits checked on the header before anything is stored.
        "UPLOAD_MAX_PIXELS": env.int("UPLOAD_MAX_PIXELS", 50_000_000),
        "UPLOAD_MAX_SIDE": env.int("UPLOAD_MAX_SIDE", 12_000),
        # Largest buffer a decoder may need at once, bytes, computed from the header
        # (interlaced PNG, progressive JPEG); 150 MB is 50 MP of 8-bit RGB.
        "UPLOAD_MAX_DECODE_BYTES": env.int("UPLOAD_MAX_DECODE_BYTES", 150_000_000),
        # Keep the uploaded original after its derivatives exist; off by default
        # because the original carries the camera's metadata (GPS position).
        "KEEP_ORIGINALS": env.bool("KEEP_ORIGINALS", False),
        # Uploads still unpublished after this many seconds are republished.
        "UPLOAD_RELAY_AFTER": env.float("UPLOAD_RELAY_AFTER", 30.0),
        # process_image retries our own failures (disk, libvips saver) this often.
        "UPLOAD_MAX_RETRIES": env.int("UPLOAD_MAX_RETRIES", 3),
        # Starts of processing (retries + redeliveries after a worker died) before
        # an upload ends as failed.
        "UPLOAD_MAX_ATTEMPTS": env.int("UPLOAD_MAX_ATTEMPTS", 6),
        # Uploads per user (Flask-Limiter syntax); each one costs a worker's CPU.
        "UPLOAD_RATE_LIMIT": env.str("UPLOAD_RATE_LIMIT", "20 per minute;300 per day"),
        "FLOWER_BASIC_AUTH": required_in_production("FLOWER_BASIC_AUTH", ""),
        # --- operations: periodic jobs, backups, metrics.
        # Accounts still unverified this many days after sign-up are deleted.
        "UNVERIFIED_TTL_DAYS": env.int("UNVERIFIED_TTL_DAYS", 7),
        # Objects under originals/ and derivatives/ in the store that no upload references,
        # older than this (seconds), are deleted; the age spares an upload being stored.
        "ORPHAN_MEDIA_MIN_AGE": env.float("ORPHAN_MEDIA_MIN_AGE", 3600.0),
        # Recipients of the daily statistics mail (comma-separated addresses).
        "ADMINS": [a.strip() for a in env.list("ADMINS", []) if a.strip()],
        # Nightly database backups (in the store, under backups/): how many to keep.
        "BACKUP_KEEP": env.int("BACKUP_KEEP", 7),
        "PG_DUMP": env.str("PG_DUMP", "pg_dump"),
        # /metrics: a bearer token; when empty only loopback clients are answered.
        "METRICS_TOKEN": env.str("METRICS_TOKEN", ""),
        # /healthz: seconds each check may take (broker connect, worker ping).
        "HEALTH_TIMEOUT": env.float("HEALTH_TIMEOUT", 1.0),
        # Seconds a /healthz answer is reused per process (one check run at a time).
        "HEALTH_CACHE_SECONDS": env.float("HEALTH_CACHE_SECONDS", 5.0),
        "RATELIMIT_STORAGE_URI": env.str("RATELIMIT_STORAGE_URI", "memory://"),
        "REGISTRATION_CAPTCHA": env.bool("REGISTRATION_CAPTCHA", True),
        "WTF_CSRF_ENABLED": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": secure,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": secure,
        # --- account lifecycle: password reset, e-mail change, abuse protection.
        # Seconds a mailed password-reset link stays valid (1 h).
        "PASSWORD_RESET_MAX_AGE": env.int("PASSWORD_RESET_MAX_AGE", 3600),
        # Seconds a mailed e-mail-change code stays valid, and wrong entries allowed.
        "EMAIL_CHANGE_CODE_MAX_AGE": env.int("EMAIL_CHANGE_CODE_MAX_AGE", 15 * 60),
        "EMAIL_CHANGE_MAX_ATTEMPTS": env.int("EMAIL_CHANGE_MAX_ATTEMPTS", 5),
        # Per-account mail throttle (resend, reset, code): at most one mail of a kind
        # per MAIL_THROTTLE_INTERVAL seconds and MAIL_THROTTLE_PER_DAY per 24 h.
        "MAIL_THROTTLE_INTERVAL": env.int("MAIL_THROTTLE_INTERVAL", 60),
        "MAIL_THROTTLE_PER_DAY": env.int("MAIL_THROTTLE_PER_DAY", 5),
        # Flask-Limiter: on unless RATELIMIT_ENABLED=false; Retry-After and
        # X-RateLimit-* headers; keys prefixed so several apps can share one Redis.
        "RATELIMIT_ENABLED": env.bool("RATELIMIT_ENABLED", True),
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_KEY_PREFIX": env.str("RATELIMIT_KEY_PREFIX", "onboard"),
        # Per client IP (limits' syntax, ";" separates several); POST only.
        "RATELIMIT_SIGNUP": env.str("RATELIMIT_SIGNUP", "5 per minute;30 per hour"),
        "RATELIMIT_LOGIN": env.str("RATELIMIT_LOGIN", "10 per minute;100 per hour"),
        "RATELIMIT_MAIL": env.str("RATELIMIT_MAIL", "5 per minute;30 per hour"),
        "RATELIMIT_RESET": env.str("RATELIMIT_RESET", "10 per minute;50 per hour"),
        "RATELIMIT_CODE": env.str("RATELIMIT_CODE", "10 per minute;50 per hour"),
        "RATELIMIT_CAPTCHA": env.str("RATELIMIT_CAPTCHA", "30 per minute"),
        # Where SQLite, the Maildir, beat's schedule, media and backups live by default.
        "INSTANCE_DIR": str(instance_dir),
        # Web processes (gunicorn reads the same variable; the Procfile's default is 2).
        "WEB_CONCURRENCY": env.int("WEB_CONCURRENCY", 2),
        "CELERY": celery_settings(env, database_url, instance_dir),
        # --- mailed codes and bounces (docs/account.md).
        # Wrong entries of a verification or reset code before a new mail is needed.
        "ACCOUNT_CODE_MAX_ATTEMPTS": env.int("ACCOUNT_CODE_MAX_ATTEMPTS", 5),
        # Shared secret of POST /hooks/bounce (Authorization: Bearer …); empty: hook off (404).
        "BOUNCE_HOOK_SECRET": env.str("BOUNCE_HOOK_SECRET", ""),
        # --- storage: every file Onboard keeps (webapp.storage).
        # file:///folder or s3://bucket/prefix; S3 endpoint and credentials come
        # from boto3's own lookup of the AWS_* variables.
        "STORAGE_URL": env.str("STORAGE_URL", "file://" + str(Path(media_root).absolute())),
        # Public base URL (a CDN in front of the bucket's derivatives/); empty:
        # presigned URLs (S3) or GET /media (a local folder).
        "MEDIA_URL": env.str("MEDIA_URL", ""),
        # Presigned derivative URLs live between half this and this (seconds);
        # SigV4 allows 7 days at most.
        "UPLOAD_URL_MAX_AGE": env.int("UPLOAD_URL_MAX_AGE", 3600,
                                      validate=validate.Range(min=2, max=7 * 24 * 3600)),
        # Kept SMTP session per worker process (webapp.smtp_pool): closed after this
        # many idle seconds, and replaced after this many mails.
        "MAIL_CONNECTION_IDLE": env.float("MAIL_CONNECTION_IDLE", 30.0),
        "MAIL_CONNECTION_MAX_MAILS": env.int("MAIL_CONNECTION_MAX_MAILS", 100),
        # Seconds before the relay republishes a row written marked published at
        # sign-up that no worker has tried (its publisher died before publishing).
        "OUTBOX_UNCLAIMED_AFTER": env.float("OUTBOX_UNCLAIMED_AFTER", 60.0),
        # Sent mails' outbox rows older than this many days are deleted (purge-sent-mail).
        "OUTBOX_RETENTION_DAYS": env.int("OUTBOX_RETENTION_DAYS", 30,
                                         validate=validate.Range(min=1)),
    }
    undeclared = env.undeclared()
    if undeclared:
        raise SettingsError(
            "undeclared setting(s) " + ", ".join(undeclared) + ": Onboard owns the prefixes "
            + ", ".join(OWNED_PREFIXES) + "; fix the name or declare it in "
            "webapp.config.settings.from_env")
    return settings


def apply_overrides(settings: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``settings`` with ``overrides`` (``create_app``'s argument) applied.

    Args:
        settings: a :func:`from_env` result.
        overrides: Flask config keys → values; a ``CELERY`` entry is merged into
            the Celery settings key by key, not replaced.

    Returns:
        A new dict.

    Raises:
        SettingsError: a key that is neither a declared setting (a key of
            ``settings``), a Flask key (``TESTING``, ``SERVER_NAME``, …) nor one of
            :data:`EXTENSION_KEYS`; or an unknown Celery setting name.
    """
    overrides = dict(overrides or {})
    allowed = set(settings) | set(Flask.default_config) | EXTENSION_KEYS
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise SettingsError("unknown setting(s) in create_app overrides: " + ", ".join(unknown)
                            + " (declared settings: webapp.config.settings.from_env)")
    merged = {**settings, **overrides}
    if "CELERY" in overrides:
        merged["CELERY"] = merge_celery_overrides(settings["CELERY"], overrides["CELERY"])
    return merged
