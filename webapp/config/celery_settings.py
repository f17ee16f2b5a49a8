"""Celery's settings (README, *Celery conventions*), read from the environment."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from celery.app.defaults import NAMESPACES, flatten
from environs import validate

from webapp.config.beat import beat_schedule
from webapp.config.env import SettingsEnv, SettingsError
from webapp.config.queues import TASK_EXCHANGE, celery_queues

#: RedBeat's settings (celery-redbeat's documentation, "Configuration").
REDBEAT_SETTING_NAMES = frozenset({
    "redbeat_redis_url", "redbeat_redis_use_ssl", "redbeat_redis_options",
    "redbeat_key_prefix", "redbeat_lock_key", "redbeat_lock_timeout"})

#: Every setting name Celery knows (lower case), and RedBeat's: an override
#: outside it is a typo.
CELERY_SETTING_NAMES = frozenset(name for name, _ in flatten(NAMESPACES)) | REDBEAT_SETTING_NAMES


def celery_settings(env: SettingsEnv, database_url: str, instance_dir: Path) -> dict[str, Any]:
    """Celery settings following the README's Celery conventions.

    Args:
        env: the reader of the environment (each variable is read once).
        database_url: the SQLAlchemy URL of the app database; the result backend
            defaults to ``db+`` + this URL so task results live beside the rows.
        instance_dir: where beat keeps its schedule file.

    Returns:
        A dict of lower-case Celery setting names for ``config_from_object``;
        times in seconds.

    Raises:
        environs.EnvValidationError: a value of the wrong type, or a
            ``CELERY_QUEUE_TYPE`` other than ``quorum`` / ``classic``.
    """
    queue_type = env.str("CELERY_QUEUE_TYPE", "quorum",
                         validate=validate.OneOf(("quorum", "classic")))
    return {
        "broker_url": env.str("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
        "result_backend": env.str("CELERY_RESULT_BACKEND", "db+" + database_url),
        # JSON only: pickle would let anyone who can publish run code on a worker.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # A task is acked after it ran, and requeued if its worker process dies.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Wait for the broker's confirm: without it a check right after publishing
        # saw 19,916 of 20,000 messages.
        "broker_transport_options": {"confirm_publish": True},
        "broker_connection_timeout": env.float("CELERY_BROKER_CONNECTION_TIMEOUT", 3.0),
        "broker_connection_retry_on_startup": True,
        "task_queues": celery_queues(env.int("CELERY_DELIVERY_LIMIT", 10), queue_type),
        "task_default_queue": "celery",
        "task_default_exchange": TASK_EXCHANGE,
        # Topic: native delayed delivery (retries with a countdown on quorum
        # queues) cannot route through a direct exchange.
        "task_default_exchange_type": "topic",
        "task_default_routing_key": "celery",
        # Queues made on the fly (none expected) are of the same type.
        "task_default_queue_type": queue_type,
        # Quorum queues have no global QoS: let the worker detect them (default).
        "worker_detect_quorum_queues": True,
        "task_routes": {
            "webapp.tasks.mail.*": {"queue": "mail", "routing_key": "mail"},
            # Reset/resend requests are light and mail-bound.
            "webapp.tasks.account.*": {"queue": "mail", "routing_key": "mail"},
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
        "imports": ("webapp.tasks.mail", "webapp.tasks.account", "webapp.tasks.periodic",
                    "webapp.tasks.images",
                    "webapp.ops.worker_logging"),
        "beat_schedule_filename": str(instance_dir / "celerybeat-schedule"),
        "beat_schedule": beat_schedule(env),
        **redbeat_settings(env),
        "timezone": env.str("TIMEZONE", "UTC"),
        "enable_utc": True,
        # Task log lines carry "[task_name(task_id)]" (Celery's task logger format).
        "worker_task_log_format": ("%(asctime)s %(levelname)s %(processName)s "
                                   "[%(task_name)s(%(task_id)s)] %(name)s: %(message)s"),
        "worker_log_format": "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
    }


def redbeat_settings(env: SettingsEnv) -> dict[str, Any]:
    """beat's schedule and lock in Redis (RedBeat) when ``REDBEAT_REDIS_URL`` is set.

    Reads ``REDBEAT_REDIS_URL`` (empty: celery's file scheduler under
    ``INSTANCE_DIR``, the ``make run`` default), ``REDBEAT_KEY_PREFIX`` (default
    ``onboard:redbeat``, so apps can share a Redis) and ``REDBEAT_LOCK_TIMEOUT``
    (seconds, default 60: a standby beat takes over at most this long after the
    active one died without releasing its lock).

    With RedBeat the last-run times live in Redis, so a beat restarted on a
    fresh disk neither loses nor repeats a crontab job, and its lock lets
    exactly one beat run while others wait as standbys (docs/deploy.md).

    Returns:
        Celery settings (``beat_scheduler``, ``redbeat_*``), or ``{}``.
    """
    url = env.str("REDBEAT_REDIS_URL", "")
    prefix = env.str("REDBEAT_KEY_PREFIX", "onboard:redbeat")
    lock_timeout = env.int("REDBEAT_LOCK_TIMEOUT", 60)
    if not url:
        return {}
    return {"beat_scheduler": "redbeat.RedBeatScheduler", "redbeat_redis_url": url,
            "redbeat_key_prefix": prefix, "redbeat_lock_timeout": lock_timeout,
            # The lock is renewed every loop: keep loops well inside its timeout.
            "beat_max_loop_interval": max(1, lock_timeout // 5)}


def merge_celery_overrides(settings: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with ``overrides`` applied key by key.

    Raises:
        SettingsError: a key that is not a Celery setting name (a typo such as
            ``broker_conection_timeout`` would otherwise be ignored by Celery).
    """
    unknown = sorted(set(overrides) - CELERY_SETTING_NAMES)
    if unknown:
        raise SettingsError("unknown Celery setting(s) in overrides: " + ", ".join(unknown))
    return {**settings, **overrides}
