"""Nightly database backups to ``BACKUP_DIR``, keeping the newest ``BACKUP_KEEP``.

SQLite is copied with the online backup API (``sqlite3.Connection.backup``),
which gives a consistent copy while web and workers keep writing; PostgreSQL
with ``pg_dump -Fc`` (custom format, restore with ``pg_restore``).

A backup is named by date (``onboard-YYYY-MM-DD.sqlite3`` / ``.pgdump``) and
written to a temporary file in the same folder, then renamed into place, so a
reader never sees a half-written file and a second run the same day does
nothing.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import tempfile
from datetime import date
from pathlib import Path

from flask import current_app
from sqlalchemy.engine import make_url

from webapp.extensions import db

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


def prune(folder: Path, backend: str, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups of ``backend`` in ``folder``.

    Names sort by date, so the newest are the last in name order.

    Returns:
        The deleted paths.
    """
    backups = sorted(folder.glob(f"{PREFIX}*{SUFFIXES[backend]}"))
    doomed = backups[:-keep] if keep > 0 else backups
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def backup_database(day: date | None = None) -> Path:
    """Back up the app database for ``day`` (today in ``TIMEZONE`` when ``None``).

    Returns:
        The path of the backup (existing or new).

    Raises:
        BackupError: pg_dump failed or the database is neither SQLite nor PostgreSQL.
    """
    from webapp.ops.stats import local_today

    day = day or local_today()
    url = db.engine.url
    backend = url.get_backend_name()
    if backend not in SUFFIXES:
        raise BackupError(f"no backup method for {backend}")
    folder = Path(current_app.config["BACKUP_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / backup_name(backend, day)
    if final.exists():
        log.info("backup %s exists; nothing to do", final.name)
    else:
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=final.suffix, dir=folder)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            if backend == "sqlite":
                tmp.unlink()  # sqlite3 wants to create the file itself
                _sqlite_backup(url.database or "", tmp)
            else:
                _pg_dump(url.render_as_string(hide_password=False), tmp,
                         current_app.config["PG_DUMP"])
            os.replace(tmp, final)  # atomic on one filesystem
        finally:
            tmp.unlink(missing_ok=True)
        log.info("backup written: %s (%d bytes)", final, final.stat().st_size)
    prune(folder, backend, current_app.config["BACKUP_KEEP"])
    return final
