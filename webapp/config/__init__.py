"""Onboard's configuration, one module per concern:

* :mod:`webapp.config.settings`: :func:`from_env`, the declared app settings
  (the one place a setting is added), and ``create_app``'s override rules.
* :mod:`webapp.config.env`: the environment reader (environs) and the name
  prefixes Onboard owns.
* :mod:`webapp.config.celery_settings`, :mod:`webapp.config.queues`,
  :mod:`webapp.config.beat`: Celery's settings, the broker topology, beat's schedule.
* :mod:`webapp.config.production`: :func:`check`, the production start-up rules.
"""
from webapp.config.production import check
from webapp.config.settings import apply_overrides, from_env

__all__ = ["apply_overrides", "check", "from_env"]
