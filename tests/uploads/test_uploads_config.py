"""Unit tests of pure configuration: queues, routes and the relay's schedule."""
from __future__ import annotations

from tests.unit_config import TEST_CONFIG
from webapp import config as config_module
from webapp import create_app


def test_image_tasks_routed_and_scheduled() -> None:
    app = create_app({**TEST_CONFIG, "CELERY": {}})
    celery = app.extensions["celery"]
    conf = celery.conf
    assert "webapp.tasks.images" in conf.imports
    assert conf.worker_prefetch_multiplier == 1
    route = celery.amqp.router.route({}, "webapp.tasks.images.process_image")
    assert route["queue"].name == "images"
    route = celery.amqp.router.route({}, "webapp.tasks.images.relay_pending_uploads")
    assert route["queue"].name == "celery"
    entry = conf.beat_schedule["relay-uploads"]
    assert entry["task"] == "webapp.tasks.images.relay_pending_uploads"
    import webapp.tasks.images as tasks

    assert tasks.process_image.time_limit and tasks.process_image.soft_time_limit
    assert tasks.process_image.acks_late


def test_upload_settings_from_env() -> None:
    cfg = config_module.from_env({"KEEP_ORIGINALS": "yes", "UPLOAD_MAX_SIDE": "4000"})
    assert cfg["KEEP_ORIGINALS"] is True and cfg["UPLOAD_MAX_SIDE"] == 4000
    cfg = config_module.from_env({})
    assert cfg["KEEP_ORIGINALS"] is False
    assert (cfg["UPLOAD_MAX_PIXELS"], cfg["UPLOAD_MAX_SIDE"]) == (50_000_000, 12_000)
    assert cfg["MAX_CONTENT_LENGTH"] == 20 * 1024 * 1024
