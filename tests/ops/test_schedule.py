"""The beat schedule as configuration (pure logic: no broker involved)."""
from __future__ import annotations

from celery.schedules import crontab

from webapp.config import from_env


def test_schedule_has_interval_and_crontab_entries_in_timezone() -> None:
    celery = from_env({"TIMEZONE": "Europe/Paris", "PURGE_INTERVAL": "600"})["CELERY"]
    schedule = celery["beat_schedule"]
    assert celery["timezone"] == "Europe/Paris"
    assert schedule["relay-outbox"]["task"] == "webapp.tasks.periodic.relay_outbox"
    assert schedule["purge-tokens"]["schedule"] == 600.0
    assert isinstance(schedule["daily-stats"]["schedule"], crontab)
    assert isinstance(schedule["backup-database"]["schedule"], crontab)
    assert "beat-test" not in schedule
    assert celery["beat_schedule_filename"].endswith("celerybeat-schedule")


def test_beat_test_entry_only_from_env() -> None:
    schedule = from_env({"BEAT_TEST_INTERVAL": "1"})["CELERY"]["beat_schedule"]
    assert schedule["beat-test"] == {"task": "webapp.tasks.periodic.purge_tokens", "schedule": 1.0}


def test_admins_parsed_from_comma_list() -> None:
    assert from_env({"ADMINS": " a@example.com, b@example.com ,,"})["ADMINS"] == \
        ["a@example.com", "b@example.com"]
