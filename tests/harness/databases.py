"""Fresh databases for tests: a SQLite file or a new PostgreSQL database."""
from __future__ import annotations

import os
from pathlib import Path

import psycopg

#: A maintenance connection (CREATE/DROP DATABASE); the server trusts local users.
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
#: SQLAlchemy URL prefix; the database name is appended.
PG_BASE = os.environ.get("TEST_PG_BASE", "postgresql+psycopg://postgres@127.0.0.1:5432/")


def create_database(backend: str, tmp: Path, name: str) -> str:
    """A new empty database; returns its SQLAlchemy URL.

    Args:
        backend: ``"sqlite"`` (a file ``tmp/name.db``) or ``"postgresql"``.
        name: database name, unique per stack.
    """
    if backend == "sqlite":
        return f"sqlite:///{tmp / (name + '.db')}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_BASE + name


def drop_database(backend: str, name: str) -> None:
    """Drop a PostgreSQL database made by :func:`create_database` (connections
    closed by force); nothing for SQLite (the file goes with its folder)."""
    if backend != "postgresql":
        return
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
