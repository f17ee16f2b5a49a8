"""Nightly database backups into the store, keeping the newest ``BACKUP_KEEP``.

SQLite is copied with the online backup API (``sqlite3.Connection.backup``),
which gives a consistent copy while web and workers keep writing; PostgreSQL
with ``pg_dump -Fc`` (custom format, restore with ``pg_restore``).

A backup is made in the worker's scratch folder, then uploaded to the store
(``STORAGE_URL``) as ``backups/onboard-YYYY-MM-DD.sqlite3`` / ``.pgdump``, so it
outlives the worker's throw-away disk; the scratch copy is removed either way.
An upload replaces its object whole, so a reader never sees half a backup, and
a second run the same day finds the object and does nothing.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
from datetime import date
from pathlib import Path

from flask import current_app
from sqlalchemy.engine import make_url

from webapp.extensions import db
from webapp.storage import BACKUPS, Store, get_store, scratch_dir

log = logging.getLogger(__name__)

PREFIX = "onboard-"
SUFFIXES = {"sqlite": ".sqlite3", "postgresql": ".pgdump"}


class BackupError(Exception):
    """The backup could not be made (pg_dump failed, unsupported database)."""


def backup_name(backend: str, day: date) -> str:
    """File name of the backup of ``day``."""
    return f"{PREFIX}{day.isoformat()}{SUFFIXES[backend]}"


def _sqlite_backup(source: str, dest: Path) -> None:
    src = sqlite3.connect(source, timeout=30)
    try:
        out = sqlite3.connect(dest)
        try:
            src.backup(out, pages=1024)  # copy in steps so writers are not held up
        finally:
            out.close()
    finally:
        src.close()


def _pg_dump(url: str, dest: Path, pg_dump: str) -> None:
    parsed = make_url(url)
    env = {**os.environ}
    if parsed.password:
        env["PGPASSWORD"] = parsed.password  # not on the command line, where ps shows it
    libpq = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    proc = subprocess.run([pg_dump, "-Fc", "--no-password", "-f", str(dest), libpq],
                          env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise BackupError(f"pg_dump failed ({proc.returncode}): {proc.stderr.strip()[:500]}")


def prune(store: Store, backend: str, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` backups of ``backend`` in ``store``.

    Names sort by date, so the newest are the last in name order.

    Returns:
        The deleted keys.
    """
    backups = sorted(o.key for o in store.list(f"{BACKUPS}/{PREFIX}")
                     if o.key.endswith(SUFFIXES[backend]))
    doomed = backups[:-keep] if keep > 0 else backups
    for key in doomed:
        store.delete(key)
    return doomed


def backup_database(day: date | None = None) -> str:
    """Back up the app database for ``day`` (today in ``TIMEZONE`` when ``None``).

    Returns:
        The store key of the backup (existing or new), ``backups/onboard-….``

    Raises:
        BackupError: pg_dump failed or the database is neither SQLite nor PostgreSQL.
        webapp.storage.StoreUnavailable: the store could not be reached.
    """
    from webapp.ops.stats import local_today

    day = day or local_today()
    url = db.engine.url
    backend = url.get_backend_name()
    if backend not in SUFFIXES:
        raise BackupError(f"no backup method for {backend}")
    store = get_store()
    key = f"{BACKUPS}/{backup_name(backend, day)}"
    if store.exists(key):
        log.info("backup %s exists; nothing to do", key)
    else:
        with scratch_dir() as tmp:
            dump = Path(tmp) / "dump"
            if backend == "sqlite":
                _sqlite_backup(url.database or "", dump)
            else:
                _pg_dump(url.render_as_string(hide_password=False), dump,
                         current_app.config["PG_DUMP"])
            size = store.put_file(dump, key, "application/octet-stream")
        log.info("backup written: %s (%d bytes)", key, size)
    prune(store, backend, current_app.config["BACKUP_KEEP"])
    return key
