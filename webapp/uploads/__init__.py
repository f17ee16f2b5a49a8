"""Photo uploads (blueprint ``uploads``): upload, status, derivatives, delete, avatar."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("uploads", __name__)

from webapp.uploads import views  # noqa: E402,F401  (registers the routes)
