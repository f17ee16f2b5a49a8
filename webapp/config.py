"""Configuration read from the environment.

Every setting has a safe development default (SQLite under ``instance/``, RabbitMQ on
localhost, a local SMTP catcher on port 1025) except in production, where
``ONBOARD_ENV=production`` makes the missing secrets fail fast at start-up
(cookiecutter-flask's rule: required secrets never fall back silently).

The names are the ones in ``shared/DESIGN.md`` (Configuration).
"""
from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from celery.schedules import crontab
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent
INSTANCE_DIR = Path(os.environ.get("INSTANCE_DIR", BASE_DIR / "instance"))

DEV_SECRET = "dev-only-secret-change-me"


class _Env:
    """Typed reads of environment variables; an unset or empty one gives the default."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def str(self, name: str, default: str) -> str:
        """The variable as text, or ``default`` when unset or empty."""
        raw = self.environ.get(name, "")
        return raw if raw != "" else default

    def bool(self, name: str, default: bool) -> bool:
        """``1/true/yes/on`` (any case) is true; anything else set is false."""
        raw = self.environ.get(name, "").strip()
        return raw.lower() in {"1", "true", "yes", "on"} if raw else default

    def int(self, name: str, default: int) -> int:
        """Raises ``ValueError`` when the variable is set but not an integer."""
        raw = self.environ.get(name, "").strip()
        return int(raw) if raw else default

    def float(self, name: str, default: float) -> float:
        """Raises ``ValueError`` when the variable is set but not a number."""
        raw = self.environ.get(name, "").strip()
        return float(raw) if raw else default


def default_database_url() -> str:
    """SQLite file under ``instance/`` (created on first use)."""
    return f"sqlite:///{INSTANCE_DIR / 'onboard.db'}"


#: Exchange of every task queue. A topic exchange, because RabbitMQ quorum queues
#: delay retries with Celery's native delayed delivery, which cannot route
#: through a direct exchange. (A new name: the first skeleton declared a direct
#: ``onboard`` exchange, and an exchange's type cannot change.)
TASK_EXCHANGE = "onboard.tasks"
#: Dead-letter exchange: a message redelivered more than ``x-delivery-limit``
#: times (a task that keeps killing its worker) goes to ``<queue>.dlq``.
DEAD_LETTER_EXCHANGE = "onboard.dlx"
TASK_QUEUE_NAMES = ("mail", "images", "celery")


def celery_queues(delivery_limit: int = 10, queue_type: str = "quorum") -> tuple[Queue, ...]:
    """The three durable task queues of DESIGN.md: ``mail``, ``images``, ``celery``.

    Each is a RabbitMQ quorum queue (replicated, and it counts redeliveries) bound
    to the topic exchange :data:`TASK_EXCHANGE` by a routing key equal to its
    name, so ``task_routes`` only needs to name the queue. A message delivered
    more than ``delivery_limit`` times is dead-lettered (``at-least-once``, which
    RabbitMQ allows only with ``x-overflow: reject-publish``) to
    ``<name>.dlq``; the outbox relay republishes a mail whose message was lost
    this way (see :func:`webapp.outbox.relay_unpublished`).

    Args:
        delivery_limit: redeliveries (worker crashes, rejects) before a message
            is dead-lettered.
        queue_type: ``"quorum"``; ``"classic"`` for a broker without quorum
            queues (no delivery limit nor dead-lettering then).

    Returns:
        The task queues (their dead-letter queues: :func:`dead_letter_queues`).

    Note: a classic queue of the same name cannot be redeclared as quorum
    (``406 PRECONDITION_FAILED``); on a broker with queues from an older run,
    ``rabbitmqctl delete_queue mail`` (and ``images``, ``celery``) once.
    """
    exchange = Exchange(TASK_EXCHANGE, type="topic", durable=True)
    queues: list[Queue] = []
    for name in TASK_QUEUE_NAMES:
        # Classic: no arguments, so queues declared by older code stay equivalent.
        args: dict[str, Any] = {}
        if queue_type == "quorum":
            args.update({
                "x-queue-type": "quorum",
                "x-delivery-limit": delivery_limit,
                "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                # Retried messages come back from the delayed-delivery exchanges
                # with a longer routing key: dead-letter under the plain name.
                "x-dead-letter-routing-key": name,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            })
        queues.append(Queue(name, exchange, routing_key=name, durable=True,
                            queue_arguments=args))
    return tuple(queues)


def dead_letter_queues() -> tuple[Queue, ...]:
    """``mail.dlq``, ``images.dlq``, ``celery.dlq``: where quorum queues put a
    message delivered more than ``x-delivery-limit`` times.

    Nobody consumes them; workers declare them at start-up (see
    :mod:`webapp.tasks.mail`) so a dead-lettered message is kept for an operator
    (``rabbitmqctl list_queues name messages``). They are not in ``task_queues``,
    so Celery never routes tasks to them.
    """
    dlx = Exchange(DEAD_LETTER_EXCHANGE, type="direct", durable=True)
    return tuple(Queue(f"{name}.dlq", dlx, routing_key=name, durable=True,
                       queue_arguments={"x-queue-type": "quorum"})
                 for name in TASK_QUEUE_NAMES)


def celery_settings(env: _Env, database_url: str) -> dict[str, Any]:
    """Celery settings following DESIGN.md's Celery conventions.

    Args:
        env: the environment to read.
        database_url: the SQLAlchemy URL of the app database; the result backend
            defaults to ``db+`` + this URL so task results live beside the rows.

    Returns:
        A dict of lower-case Celery setting names for ``config_from_object``.
    """
    broker = env.str("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    backend = env.str("CELERY_RESULT_BACKEND", "db+" + database_url)
    return {
        "broker_url": broker,
        "result_backend": backend,
        # JSON only: pickle would let anyone who can publish run code on a worker.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # A task is acked after it ran, and requeued if its worker process dies.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Wait for the broker's confirm: without it a check right after publishing
        # saw 19,916 of 20,000 messages (DESIGN.md, pitfalls).
        "broker_transport_options": {"confirm_publish": True},
        "broker_connection_timeout": env.float("CELERY_BROKER_CONNECTION_TIMEOUT", 3.0),
        "broker_connection_retry_on_startup": True,
        "task_queues": celery_queues(env.int("CELERY_DELIVERY_LIMIT", 10),
                                     env.str("CELERY_QUEUE_TYPE", "quorum")),
        "task_default_queue": "celery",
        "task_default_exchange": TASK_EXCHANGE,
        # Topic: native delayed delivery (retries with a countdown on quorum
        # queues) cannot route through a direct exchange.
        "task_default_exchange_type": "topic",
        "task_default_routing_key": "celery",
        # Queues made on the fly (none expected) are quorum too.
        "task_default_queue_type": env.str("CELERY_QUEUE_TYPE", "quorum"),
        # Quorum queues have no global QoS: let the worker detect them (default).
        "worker_detect_quorum_queues": True,
        "task_routes": {
            "webapp.tasks.mail.*": {"queue": "mail", "routing_key": "mail"},
            "webapp.tasks.images.*": {"queue": "images", "routing_key": "images"},
            "webapp.tasks.periodic.*": {"queue": "celery", "routing_key": "celery"},
            # The upload relay is light: keep it off the CPU-bound images queue.
            "webapp.tasks.images.relay_pending_uploads": {"queue": "celery", "routing_key": "celery"},
        },
        # Images are CPU-heavy: one message in flight per process.
        "worker_prefetch_multiplier": env.int("CELERY_PREFETCH_MULTIPLIER", 1),
        "task_time_limit": env.int("CELERY_TASK_TIME_LIMIT", 300),
        "task_soft_time_limit": env.int("CELERY_TASK_SOFT_TIME_LIMIT", 240),
        # Events so Flower sees sent/received/started/succeeded for every task.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        "result_expires": env.int("CELERY_RESULT_EXPIRES", 7 * 24 * 3600),
        "imports": ("webapp.tasks.mail", "webapp.tasks.periodic", "webapp.tasks.images",
                    "webapp.ops.worker_metrics", "webapp.ops.worker_logging"),
        "beat_schedule_filename": str(INSTANCE_DIR / "celerybeat-schedule"),
        "beat_schedule": {
            "relay-outbox": {
                "task": "webapp.tasks.periodic.relay_outbox",
                "schedule": env.float("OUTBOX_RELAY_INTERVAL", 10.0),
                # A tick queued while no worker runs is useless after the next.
                "options": {"expires": max(2 * env.float("OUTBOX_RELAY_INTERVAL", 10.0), 5.0)},
            },
            # Republish process_image for uploads the web could not publish.
            "relay-uploads": {
                "task": "webapp.tasks.images.relay_pending_uploads",
                "schedule": env.float("UPLOAD_RELAY_INTERVAL", 30.0),
            },
            **operations_schedule(env),
        },
        "timezone": env.str("TIMEZONE", "UTC"),
        "enable_utc": True,
        # Task log lines carry "[task_name(task_id)]" (Celery's task logger format).
        "worker_task_log_format": ("%(asctime)s %(levelname)s %(processName)s "
                                   "[%(task_name)s(%(task_id)s)] %(name)s: %(message)s"),
        "worker_log_format": "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
    }


def operations_schedule(env: _Env) -> dict[str, dict[str, Any]]:
    """Beat entries of the operations jobs (periodic jobs issue), in ``timezone``.

    Crontab entries run at fixed wall-clock times (stats right after midnight,
    backup at night); the purges run on an interval. ``BEAT_TEST_INTERVAL``
    (seconds, tests only) adds a ``beat-test`` entry running ``purge_tokens``
    at that interval, so a test can watch a real beat fire within seconds.
    """
    schedule: dict[str, dict[str, Any]] = {
        "purge-unverified": {
            "task": "webapp.tasks.periodic.purge_unverified",
            "schedule": env.float("PURGE_INTERVAL", 3600.0),
        },
        "purge-tokens": {
            "task": "webapp.tasks.periodic.purge_tokens",
            "schedule": env.float("PURGE_INTERVAL", 3600.0),
        },
        "purge-orphan-media": {
            "task": "webapp.tasks.periodic.purge_orphan_media",
            "schedule": crontab(minute="17"),
        },
        "daily-stats": {
            "task": "webapp.tasks.periodic.daily_stats",
            # 00:05 in TIMEZONE: yesterday is complete by then.
            "schedule": crontab(hour="0", minute="5"),
        },
        "backup-database": {
            "task": "webapp.tasks.periodic.backup_database",
            "schedule": crontab(hour=env.str("BACKUP_HOUR", "3"), minute="30"),
        },
    }
    test_interval = env.float("BEAT_TEST_INTERVAL", 0.0)
    if test_interval > 0:
        schedule["beat-test"] = {"task": "webapp.tasks.periodic.purge_tokens",
                                 "schedule": test_interval}
    return schedule


def from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Build the Flask config from the environment as it is now.

    Args:
        environ: the variables to read; ``os.environ`` when ``None``.

    Returns:
        A dict of Flask config keys (upper case) plus ``CELERY``, a dict of Celery
        settings. Durations are seconds, sizes bytes.
    """
    env = _Env(os.environ if environ is None else environ)
    database_url = env.str("DATABASE_URL", default_database_url())
    base_url = env.str("BASE_URL", "http://127.0.0.1:8000").rstrip("/")
    secure = base_url.startswith("https://")
    return {
        "ENV_NAME": env.str("ONBOARD_ENV", "development"),
        "SECRET_KEY": env.str("SECRET_KEY", DEV_SECRET),
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
        # Transient SMTP failures retry after d*U(0.5, 1) s, d = min(2**n,
        # MAIL_RETRY_BACKOFF_MAX) ("equal jitter"): 16 retries capped at 300 s
        # wait at least 1305 s and at most 2611 s in all, so they always outlast
        # a 10-minute SMTP outage (webapp.mail.retry_span gives the bounds).
        "MAIL_MAX_RETRIES": env.int("MAIL_MAX_RETRIES", 16),
        "MAIL_RETRY_BACKOFF_MAX": env.int("MAIL_RETRY_BACKOFF_MAX", 300),
        # A send claimed this many seconds ago and never finished is taken over
        # by another copy of its task (longer than send_mail's 90 s time limit).
        "MAIL_CLAIM_TIMEOUT": env.float("MAIL_CLAIM_TIMEOUT", 120.0),
        # Maildir written by the dev SMTP catcher; listed at /dev/mail in development.
        "DEV_MAILDIR": env.str("DEV_MAILDIR", str(INSTANCE_DIR / "maildir")),
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
        # Longest a page waits to publish its mail task (connect, write and
        # confirm), seconds; a broker blocked by a memory/disk alarm never confirms.
        "OUTBOX_PUBLISH_TIMEOUT": env.float("OUTBOX_PUBLISH_TIMEOUT", 3.0),
        "MEDIA_ROOT": env.str("MEDIA_ROOT", str(INSTANCE_DIR / "media")),
        # How many reverse proxies in front of the web (0: none); see create_app.
        "PROXY_FIX": env.int("PROXY_FIX", 0),
        "MAX_CONTENT_LENGTH": env.int("MAX_CONTENT_LENGTH", 20 * 1024 * 1024),
        # Declared image size limits checked on the header before anything is stored.
        "UPLOAD_MAX_PIXELS": env.int("UPLOAD_MAX_PIXELS", 50_000_000),
        "UPLOAD_MAX_SIDE": env.int("UPLOAD_MAX_SIDE", 12_000),
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
        "FLOWER_BASIC_AUTH": env.str("FLOWER_BASIC_AUTH", ""),
        # --- operations (periodic jobs issue)
        # Accounts still unverified this many days after sign-up are deleted.
        "UNVERIFIED_TTL_DAYS": env.int("UNVERIFIED_TTL_DAYS", 7),
        # Files under MEDIA_ROOT unreferenced by any upload and older than this
        # (seconds) are deleted; the age spares an upload still being written.
        "ORPHAN_MEDIA_MIN_AGE": env.float("ORPHAN_MEDIA_MIN_AGE", 3600.0),
        # Recipients of the daily statistics mail (comma-separated addresses).
        "ADMINS": [a.strip() for a in env.str("ADMINS", "").split(",") if a.strip()],
        # Nightly database backups: directory and how many to keep.
        "BACKUP_DIR": env.str("BACKUP_DIR", str(INSTANCE_DIR / "backups")),
        "BACKUP_KEEP": env.int("BACKUP_KEEP", 7),
        "PG_DUMP": env.str("PG_DUMP", "pg_dump"),
        # /metrics: a bearer token; when empty only loopback clients are answered.
        "METRICS_TOKEN": env.str("METRICS_TOKEN", ""),
        # Worker task counters (prometheus multiprocess files, one subfolder per
        # worker node) and the worker's own loopback metrics port (0: none).
        "WORKER_METRICS_DIR": env.str("WORKER_METRICS_DIR", str(INSTANCE_DIR / "worker-metrics")),
        "WORKER_METRICS_PORT": env.int("WORKER_METRICS_PORT", 0),
        # /healthz: seconds each check may take (broker connect, worker ping).
        "HEALTH_TIMEOUT": env.float("HEALTH_TIMEOUT", 1.0),
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
        "CELERY": celery_settings(env, database_url),
        # --- health, uploads (sec-ops)
        "UPLOAD_MAX_DECODE_BYTES": env.int("UPLOAD_MAX_DECODE_BYTES", 150_000_000),  # decode buffer cap, bytes (interlaced PNG, progressive JPEG)
        "HEALTH_CACHE_SECONDS": env.float("HEALTH_CACHE_SECONDS", 5.0),  # /healthz result reused this long per process
    }


#: Overrides for unit tests of logic only (no broker is touched by them).
TEST_CONFIG: dict[str, Any] = {
    "TESTING": True,
    "SECRET_KEY": "test-secret",
    "SQLALCHEMY_DATABASE_URI": "sqlite://",
    "REGISTRATION_CAPTCHA": False,
    "RATELIMIT_ENABLED": False,
}


def check(config: Mapping[str, Any]) -> None:
    """Fail fast on unsafe production settings.

    Raises:
        RuntimeError: ``ONBOARD_ENV=production`` with the dev ``SECRET_KEY``, no
            ``FLOWER_BASIC_AUTH``, or a ``BASE_URL`` that is not https.
    """
    if config.get("ENV_NAME") != "production":
        return
    problems = []
    if config.get("SECRET_KEY") in (None, "", DEV_SECRET):
        problems.append("SECRET_KEY must be set")
    if not config.get("FLOWER_BASIC_AUTH"):
        problems.append("FLOWER_BASIC_AUTH must be set")
    if not str(config.get("BASE_URL", "")).startswith("https://"):
        problems.append("BASE_URL must be https")
    if problems:
        raise RuntimeError("Unsafe production configuration: " + "; ".join(problems))
