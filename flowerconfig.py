"""Flower configuration: ``celery -A celery_app flower --conf=flowerconfig.py``.

Flower executes this file and reads its module-level names as options (Flower
2.2 option names, see ``flower/options.py``). Before anything else it applies
Onboard's production check (:func:`webapp.config.check`, the rule every
process applies) and exits with its message when it fails: with
``ONBOARD_ENV=production``, ``FLOWER_BASIC_AUTH`` must be set, without a
published or short password, and the rest of the configuration must pass too.

* ``FLOWER_BASIC_AUTH`` ``user:password`` (comma-separated for several users).
* ``FLOWER_ADDRESS`` (default ``127.0.0.1``), ``FLOWER_PORT`` (default 5555).
  Flower's own ``/metrics`` and ``/healthcheck`` need no login, so keep it on
  loopback and put a proxy with TLS in front if it must be reached remotely.
* ``FLOWER_BROKER_API``: RabbitMQ management API for the Broker tab
  (default ``http://guest:guest@127.0.0.1:15672/api/``).
* ``FLOWER_MAX_TASKS`` (default 10000): Flower keeps about 6.5 kB per tracked
  task in memory (51 MB → 409 MB after 60k tasks measured here), so the bound
  caps it near 65 MB.
* ``FLOWER_DB`` (default ``$INSTANCE_DIR/flower``), ``FLOWER_STATE_SAVE_INTERVAL``
  (ms, default 60000): persistent state survives restarts.
* ``FLOWER_PURGE_OFFLINE_WORKERS`` (s, default 3600).

Flower also applies ``FLOWER_*`` variables itself; the values here are the same.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from webapp.config import check, from_env
from webapp.config.env import SettingsEnv

try:
    _settings = from_env(os.environ)
    check(_settings)
except (RuntimeError, ValueError) as _exc:
    sys.exit(f"flowerconfig.py: Flower will not start: {_exc}")

_instance = Path(_settings["INSTANCE_DIR"])
_instance.mkdir(parents=True, exist_ok=True)
_env = SettingsEnv(os.environ)

if _settings["FLOWER_BASIC_AUTH"]:
    basic_auth = [pair.strip() for pair in _settings["FLOWER_BASIC_AUTH"].split(",")
                  if pair.strip()]
address = _env.str("FLOWER_ADDRESS", "127.0.0.1")
port = _env.int("FLOWER_PORT", 5555)
max_tasks = _env.int("FLOWER_MAX_TASKS", 10000)
persistent = True
db = _env.str("FLOWER_DB", str(_instance / "flower"))
state_save_interval = _env.int("FLOWER_STATE_SAVE_INTERVAL", 60000)
broker_api = _env.str("FLOWER_BROKER_API", "http://guest:guest@127.0.0.1:15672/api/")
# Offline workers disappear from the dashboard after an hour instead of piling up.
purge_offline_workers = _env.int("FLOWER_PURGE_OFFLINE_WORKERS", 3600)
