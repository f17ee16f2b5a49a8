"""The fast app: Onboard's Flask app with no broker, no worker and no SMTP
server, for pure web behaviour (forms re-rendering with errors, the captcha form,
security headers, redirects, rate limits, error pages, CSRF).

The settings are the unit-test ones (``tests/unit_config.py``); the database is
a SQLite file whose schema the real migrations built (Flask-Migrate ``upgrade()``
in-process, once per session into a template that each app copies). Celery
publishes to kombu's in-memory transport, so a sign-up that succeeds queues its
mail nowhere: mail delivery is proven on the real stack, not here.

Flask-Limiter and Celery keep process-wide state (the one module-level
``limiter``, Celery's default app); :func:`app_scope` restores both afterwards so
other apps in the session (the real stacks') are as before.
"""
from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.unit_config import TEST_CONFIG

#: Overrides for the fast app on top of :data:`tests.unit_config.TEST_CONFIG`.
FAST_CONFIG: dict[str, Any] = {
    **TEST_CONFIG,
    "BASE_URL": "http://127.0.0.1:8000",
    "CELERY": {"broker_url": "memory://", "result_backend": "cache+memory://"},
}


@contextmanager
def _logging_kept() -> Iterator[None]:
    """Alembic's env.py runs ``logging.config.fileConfig``, which disables every
    logger that exists and replaces the root's handlers; undo that afterwards so
    the tests' own log capture keeps working."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    loggers = {name: lg.disabled for name, lg in logging.root.manager.loggerDict.items()
               if isinstance(lg, logging.Logger)}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, lg in logging.root.manager.loggerDict.items():
            if isinstance(lg, logging.Logger):
                lg.disabled = loggers.get(name, False)


@contextmanager
def app_scope() -> Iterator[None]:
    """Keep Flask-Limiter's module-level state and Celery's default app as they
    are around building and using another app.

    ``limiter.init_app`` keeps some settings from the first app it saw
    ("x = x or config"); they are cleared so the new app's config counts.
    """
    from celery import current_app as current_celery

    from webapp.extensions import limiter

    saved_limiter = dict(limiter.__dict__)
    saved_celery = current_celery._get_current_object()
    limiter._key_prefix = ""
    limiter._headers_enabled = None
    limiter._strategy = None
    limiter._retry_after = None
    try:
        yield
    finally:
        limiter.__dict__.clear()
        limiter.__dict__.update(saved_limiter)
        saved_celery.set_default()


def migrate_sqlite(path: Path) -> Path:
    """Build Onboard's schema in the SQLite file ``path`` with the real
    migrations (Flask-Migrate ``upgrade()`` in this process); returns ``path``."""
    from flask_migrate import upgrade

    from webapp import create_app
    from webapp.extensions import db

    with app_scope():
        app = create_app({**FAST_CONFIG, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}"})
        with app.app_context(), _logging_kept():
            upgrade()
            db.engine.dispose()
    return path


@contextmanager
def fast_app(tmp: Path, template: Path, **overrides: Any) -> Iterator[Any]:
    """An app on a copy of the migrated SQLite ``template`` under ``tmp``.

    Args:
        tmp: a folder of the test's own (database copy, instance, media).
        template: a file made by :func:`migrate_sqlite`.
        overrides: settings on top of :data:`FAST_CONFIG`, e.g.
            ``RATELIMIT_ENABLED=True`` or ``REGISTRATION_CAPTCHA=True``.

    Yields:
        The Flask app (``TESTING`` on, rate limits and captcha off unless overridden).
    """
    from webapp import create_app
    from webapp.extensions import db

    tmp.mkdir(parents=True, exist_ok=True)
    database = shutil.copy(template, tmp / "onboard.db")
    with app_scope():
        app = create_app({**FAST_CONFIG, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}",
                          "INSTANCE_DIR": str(tmp / "instance"),
                          "MEDIA_ROOT": str(tmp / "media"), **overrides})
        try:
            yield app
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


def add_verified_user(app: Any, email: str, password: str) -> int:
    """Create an account through the sign-up service and mark it verified (the
    mailed link is proven on the real stack); returns its id."""
    from webapp.auth.services import register_user
    from webapp.extensions import db
    from webapp.models import User, utcnow

    with app.app_context():
        user_id = register_user(email, password)
        db.session.get(User, user_id).verified_at = utcnow()
        db.session.commit()
        return user_id
