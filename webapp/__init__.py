"""Onboard: a Flask registration site whose slow work runs on Celery workers.

:func:`create_app` is the only way to build the app: config → extensions →
blueprints → errors → CLI (cookiecutter-flask's small ``register_*`` steps).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from webapp import config as config_module


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app and its Celery app.

    Args:
        config: overrides applied on top of :func:`webapp.config.from_env`; a
            ``"CELERY"`` entry is merged into the Celery settings, not replaced.
            Keys must be declared settings, Flask's own keys or a few extension
            keys (:func:`webapp.config.apply_overrides`).

    Returns:
        The Flask app; ``app.extensions["celery"]`` is its Celery app.

    Raises:
        RuntimeError: unsafe production settings (see :func:`webapp.config.check`).
        ValueError: a bad environment variable or override key (see
            :func:`webapp.config.from_env`, :func:`webapp.config.apply_overrides`).
    """
    app = Flask(__name__)
    register_config(app, config)
    register_extensions(app)
    register_blueprints(app)
    register_errors(app)
    register_cli(app)
    if app.config["PROXY_FIX"]:
        # Behind N reverse proxies: trust their X-Forwarded-For/-Proto so rate
        # limits see the client's address, not the proxy's. Never the Host header.
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = app.config["PROXY_FIX"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]
    return app


def register_config(app: Flask, overrides: Mapping[str, Any] | None) -> None:
    """Load :func:`webapp.config.from_env` (``os.environ``), apply ``overrides``
    (:func:`webapp.config.apply_overrides`: ``CELERY`` merged key by key, unknown
    keys raise ``ValueError``), check it (:func:`webapp.config.check` raises
    ``RuntimeError`` on an unsafe production setting), point the app's instance
    folder at ``INSTANCE_DIR`` and create it and the media folder."""
    app.config.update(config_module.apply_overrides(config_module.from_env(), overrides))
    config_module.check(app.config)
    app.instance_path = app.config["INSTANCE_DIR"]
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    Path(app.config["MEDIA_ROOT"]).mkdir(parents=True, exist_ok=True)
    if not app.debug and not app.testing:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        # Alembic announces each of its plugins at INFO whenever Flask-Migrate loads it.
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def register_extensions(app: Flask) -> None:
    """Bind SQLAlchemy, Flask-Migrate, Flask-Mail, CSRF, Flask-Login, Flask-Limiter and
    the Celery app (``app.extensions["celery"]``) to ``app``."""
    from webapp.extensions import celery_init_app, csrf, db, limiter, login_manager, mail, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"))
    mail.init_app(app)
    csrf.init_app(app)
    login_manager.init_app(app)
    limiter.init_app(app)
    celery_init_app(app)


def register_blueprints(app: Flask) -> None:
    """Mount every blueprint; ``/dev/mail`` only in development with a Maildir."""
    from webapp import devmail, health, main, metrics
    from webapp.account import bp as account_bp
    from webapp.auth import bp as auth_bp
    from webapp.bounces import bp as bounces_bp
    from webapp.uploads import bp as uploads_bp

    app.register_blueprint(main.bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(account_bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(uploads_bp)
    app.register_blueprint(bounces_bp)
    if app.config["ENV_NAME"] == "development" and app.config["DEV_MAILDIR"]:
        app.register_blueprint(devmail.bp)


def register_errors(app: Flask) -> None:
    """Error pages/JSON errors and the security headers on every response."""
    from webapp import errors, security

    errors.register(app)
    security.register(app)


def register_cli(app: Flask) -> None:
    """The ``flask`` commands for operators (:mod:`webapp.cli`)."""
    from webapp import cli

    cli.register(app)
