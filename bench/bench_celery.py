"""Celery app module for benchmark workers: the real app with settings overridden.

``celery -A bench.bench_celery worker ...`` builds the app exactly as
``celery_app`` does (``create_app()``), then merges the JSON object in the
environment variable ``BENCH_CELERY_OVERRIDES`` into its Celery settings (for
example ``{"worker_send_task_events": false}``), so a benchmark can compare a
setting with the configured one on the same code.
"""
from __future__ import annotations

import json
import os

from webapp import create_app

overrides = json.loads(os.environ.get("BENCH_CELERY_OVERRIDES", "{}"))
flask_app = create_app({"CELERY": overrides})
celery = flask_app.extensions["celery"]
