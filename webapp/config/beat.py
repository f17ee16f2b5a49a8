"""celery beat's schedule: the relays and the operations jobs.

Every job is idempotent (see :mod:`webapp.tasks.periodic`), so a tick that runs
twice or late does no harm; run exactly one beat.
"""
from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from webapp.config.env import SettingsEnv


def beat_schedule(env: SettingsEnv) -> dict[str, dict[str, Any]]:
    """Beat entries, interval ones in seconds, crontab ones in ``TIMEZONE``.

    Reads ``OUTBOX_RELAY_INTERVAL`` (s, default 10), ``UPLOAD_RELAY_INTERVAL``
    (s, 30), ``PURGE_INTERVAL`` (s, 3600, the account, token and sent-mail purges), ``BACKUP_HOUR`` (crontab
    hour field, ``"3"``) and ``BEAT_TEST_INTERVAL`` (s, tests only: adds a
    ``beat-test`` entry running ``purge_tokens`` at that interval, so a test can
    watch a real beat fire within seconds; 0 = none).

    Args:
        env: the reader of the environment (each variable is read once).

    Returns:
        ``beat_schedule`` for Celery: entry name → ``{"task", "schedule"[, "options"]}``.

    Raises:
        environs.EnvValidationError: a value that is not a number.
    """
    relay_interval = env.float("OUTBOX_RELAY_INTERVAL", 10.0)
    purge_interval = env.float("PURGE_INTERVAL", 3600.0)
    schedule: dict[str, dict[str, Any]] = {
        "relay-outbox": {
            "task": "webapp.tasks.periodic.relay_outbox",
            "schedule": relay_interval,
            # A tick queued while no worker runs is useless after the next.
            "options": {"expires": max(2 * relay_interval, 5.0)},
        },
        # Republish process_image for uploads the web could not publish.
        "relay-uploads": {
            "task": "webapp.tasks.images.relay_pending_uploads",
            "schedule": env.float("UPLOAD_RELAY_INTERVAL", 30.0),
        },
        "purge-unverified": {
            "task": "webapp.tasks.periodic.purge_unverified",
            "schedule": purge_interval,
        },
        "purge-tokens": {
            "task": "webapp.tasks.periodic.purge_tokens",
            "schedule": purge_interval,
        },
        "purge-sent-mail": {
            "task": "webapp.tasks.periodic.purge_sent_mail",
            "schedule": purge_interval,
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
