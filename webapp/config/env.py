"""Reading Onboard's environment: environs over a given mapping, with three rules.

* An unset or empty variable takes its default (``X=`` in a shell, a Procfile
  or a compose file means "not set").
* Each variable is read once: a second read of the same name is a setting
  declared twice and raises :class:`SettingsError`.
* Onboard owns the name prefixes in :data:`OWNED_PREFIXES`. A variable that
  starts with one of them but was never read (a typo such as ``MAIL_PASWORD``,
  ``ONBOARD_ENVIROMENT``) is reported by :meth:`SettingsEnv.undeclared`, and
  :func:`webapp.config.from_env` refuses to start with it. ``CELERY_`` and
  ``FLOWER_`` are not owned: Celery and Flower read variables of their own
  under those prefixes.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import environs

#: Name prefixes reserved for Onboard's own settings (see the module docstring).
OWNED_PREFIXES: tuple[str, ...] = (
    "ONBOARD_", "MAIL_", "OUTBOX_", "UPLOAD_", "RATELIMIT_", "BACKUP_",
    "EMAIL_CHANGE_", "PASSWORD_RESET_",
)


class SettingsError(environs.EnvError):
    """A setting declared twice, an undeclared variable under an owned prefix,
    or an unknown override key. A ``ValueError``, like environs' own errors."""


class SettingsEnv(environs.Env):
    """environs' typed reader (``str``, ``int``, ``float``, ``bool``, ``list``,
    ``path``, with ``validate=``) over ``environ`` instead of ``os.environ``.

    Args:
        environ: the variables to read (name → text).

    Raises (from each read):
        environs.EnvNotSetError: a variable read without default is unset.
        environs.EnvValidationError: a value of the wrong type (``MAIL_PORT=abc``,
            ``MAIL_USE_TLS=maybe``) or refused by ``validate``.
        SettingsError: the same name read a second time.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(eager=True)
        self.environ = environ
        #: Every name read so far: the declared settings.
        self.declared: set[str] = set()

    # environs' one lookup hook (environs 15): every typed read comes through it.
    def _get_value(self, env_key: str, default: Any) -> Any:
        if env_key in self.declared:
            raise SettingsError(f"setting {env_key} is declared twice; read it once")
        self.declared.add(env_key)
        raw = self.environ.get(env_key, "")
        return raw if raw != "" else default

    def undeclared(self, prefixes: tuple[str, ...] = OWNED_PREFIXES) -> list[str]:
        """Names in ``environ`` starting with one of ``prefixes`` that were never
        read, sorted."""
        return sorted(name for name in self.environ
                      if name.startswith(prefixes) and name not in self.declared)
