"""Security headers on every response.

A Content-Security-Policy without ``'unsafe-inline'`` (scripts only from
``/static``; images also as ``data:`` URIs), no framing (clickjacking), no MIME
sniffing and a conservative Referrer-Policy, following the OWASP HTTP Headers
Cheat Sheet. HSTS is sent only when ``BASE_URL`` is https, where the session and
remember cookies are also ``Secure`` (see :func:`webapp.config.from_env`).
"""
from __future__ import annotations

from flask import Flask
from werkzeug.wrappers import Response

CSP = "; ".join([
    "default-src 'self'",
    "img-src 'self' data:",
    "media-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# One year, the value HSTS preload lists ask for.
HSTS = "max-age=31536000; includeSubDomains"


def register(app: Flask) -> None:
    """Add :data:`HEADERS` (and HSTS on https) to every response of ``app``;
    a header a view set itself is left alone."""
    https = str(app.config["BASE_URL"]).startswith("https://")

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if https:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response
