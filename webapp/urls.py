"""Absolute links for mails, built from ``BASE_URL``.

Links in mails are never taken from the request's Host header (a forged Host
would send people's reset links to an attacker's site), and workers have no
request at all, so the URL map is bound to ``BASE_URL`` directly.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import current_app


def external_url(endpoint: str, **values: Any) -> str:
    """Absolute URL of ``endpoint`` under ``BASE_URL``.

    Args:
        endpoint: a Flask endpoint name, e.g. ``"auth.verify"``.
        **values: the endpoint's URL arguments.

    Returns:
        e.g. ``"https://onboard.example.com/verify/<token>"``.

    Raises:
        werkzeug.routing.BuildError: unknown endpoint or missing arguments.
    """
    base = urlsplit(current_app.config["BASE_URL"])
    adapter = current_app.url_map.bind(base.netloc, script_name=base.path or "/",
                                       url_scheme=base.scheme or "http")
    return adapter.build(endpoint, values, force_external=True)
