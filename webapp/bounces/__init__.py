"""Bounces (blueprint ``bounces``): mails that did not arrive, said in plain words,
the suppression list, and the ways a bounce comes in: the SMTP reply itself
(:mod:`webapp.mail`), ``POST /hooks/bounce`` and ``flask --app wsgi bounce``."""
from __future__ import annotations

from flask import Blueprint

# cli_group=None: the command is ``flask bounce``, not ``flask bounces bounce``.
bp = Blueprint("bounces", __name__, cli_group=None)

from webapp.bounces import views  # noqa: E402,F401  (registers the route and command)
