"""Fixtures. The parts themselves live in :mod:`tests.harness`.

* ``app`` / ``client`` / ``runner`` / ``make_app``: the fast app (no broker, no
  worker, SQLite built by the migrations) for pure web behaviour;
* ``stack`` (parametrized over SQLite and PostgreSQL) and ``sqlite_stack``: the
  real stack, one per backend per session (vhost, SMTP sink, database, worker).

Tests keep out of each other's way by using fresh e-mail addresses
(:func:`new_email`), not by wiping tables.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.harness.fastapp import fast_app, migrate_sqlite
# Re-exported: test modules import these helpers from here.
from tests.harness.forms import (confirm_link, csrf_from, link_from, login,  # noqa: F401
                                 new_email, register)
from tests.harness.seaweed import SeaweedS3
from tests.harness.stack import Stack

_STACKS: dict[str, Stack] = {}


# --- the fast app ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def app_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session; each fast app copies it."""
    return migrate_sqlite(tmp_path_factory.mktemp("fastapp") / "template.db")


@pytest.fixture
def make_app(app_template: Path, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``make_app(**overrides)``: a fast app with these settings (e.g.
    ``RATELIMIT_ENABLED=True``), on its own copy of the database; closed after
    the test."""
    with ExitStack() as stack:
        made = 0

        def make(**overrides: Any) -> Any:
            nonlocal made
            made += 1
            return stack.enter_context(fast_app(tmp_path / f"app{made}", app_template,
                                                **overrides))

        yield make


@pytest.fixture
def app(make_app: Callable[..., Any]) -> Any:
    """The fast app with the unit-test settings (limits and captcha off)."""
    return make_app()


@pytest.fixture
def client(app: Any) -> Any:
    """A test client of the fast app."""
    return app.test_client()


@pytest.fixture
def runner(app: Any) -> Any:
    """A CLI runner of the fast app (``runner.invoke(args=[...])``)."""
    return app.test_cli_runner()


# --- the real stack --------------------------------------------------------------------


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """The session's SeaweedFS (a real S3 store), started on first use.

    The standard AWS variables pointing at it are put in ``os.environ`` for the
    session: boto3 reads them there, in the test process as in the workers."""
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed")).start()
    saved = {k: os.environ.get(k) for k in server.env() if k.startswith("AWS_")}
    os.environ.update({k: v for k, v in server.env().items() if k.startswith("AWS_")})
    yield server
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@pytest.fixture(scope="session")
def stack_factory(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Stack]]:
    """Returns ``get(backend)``: the session's shared stack for ``"sqlite"``,
    ``"postgresql"`` or ``"postgresql-s3"`` (PostgreSQL with its files on the
    SeaweedFS S3 store, under a prefix of its own), started on first use and
    stopped at session end."""

    def get(backend: str) -> Stack:
        if backend not in _STACKS:
            db_backend, _, store = backend.partition("-")
            env = {}
            if store == "s3":
                server: SeaweedS3 = request.getfixturevalue("seaweed")
                env = server.env(prefix=uuid.uuid4().hex[:8])
            _STACKS[backend] = Stack(db_backend, tmp_path_factory.mktemp(backend),
                                     env_overrides=env).start()
        return _STACKS[backend]

    yield get
    for s in list(_STACKS.values()):
        s.stop()
    _STACKS.clear()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def stack(request: pytest.FixtureRequest, stack_factory: Callable[[str], Stack]) -> Stack:
    """The shared stack, once per database backend."""
    return stack_factory(request.param)


@pytest.fixture(scope="session")
def sqlite_stack(stack_factory: Callable[[str], Stack]) -> Stack:
    """The shared SQLite stack, for tests that need one backend only."""
    return stack_factory("sqlite")


@pytest.fixture(scope="session")
def root() -> Path:
    from tests.harness.paths import ROOT

    return ROOT
