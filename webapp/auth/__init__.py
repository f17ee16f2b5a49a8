"""Sign-up, verification, log-in (blueprint ``auth``)."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("auth", __name__)

from webapp.auth import views  # noqa: E402,F401  (registers the routes)
