"""Account lifecycle (blueprint ``account``): the account page (password and
e-mail change) and forgotten passwords."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("account", __name__)

from webapp.account import views  # noqa: E402,F401  (registers the routes)
