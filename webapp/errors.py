"""Error answers: an HTML page, or JSON when the client asks for JSON.

APIs answer ``{"error": {"status", "code", "message"}}`` with the right status.
"""
from __future__ import annotations

import time

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

MESSAGES = {
    400: "The request could not be understood.",
    404: "There is nothing at this address.",
    405: "This address does not take that method.",
    413: "The file is too large.",
    429: "Too many requests. Wait a moment and try again.",
    500: "Something went wrong on our side. Please try again.",
}


def wants_json() -> bool:
    """Whether the client prefers JSON to HTML (``Accept`` header)."""
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def error_response(status: int, message: str, code: str | None = None) -> tuple[Response | str, int]:
    """Answer ``status`` with ``message`` as JSON or as the error page."""
    code = code or {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
                    413: "too_large", 429: "rate_limited", 500: "server_error"}.get(status, "error")
    if wants_json():
        return jsonify(error={"status": status, "code": code, "message": message}), status
    return render_template("error.html", status=status, message=message), status


def register(app: Flask) -> None:
    """Install the error handlers on ``app``."""

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> tuple[Response | str, int]:
        """400 for a missing or stale CSRF token, with what to do about it."""
        return error_response(400, "The form has expired or was not sent from this site. "
                                   "Go back, reload the page and try again.", "csrf")

    @app.errorhandler(429)
    def rate_limited(exc: HTTPException) -> tuple[Response | str, int, dict[str, str]]:
        """429 from Flask-Limiter: say when to come back, and send ``Retry-After``
        (seconds) whatever the limiter's header settings."""
        from webapp.extensions import limiter

        current = limiter.current_limit
        wait = max(1, int(current.reset_at - time.time())) if current is not None else 60
        body, status = error_response(
            429, f"Too many requests. Wait {wait} second{'s' if wait != 1 else ''} and try again.")
        return body, status, {"Retry-After": str(wait)}

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response | str, int]:
        """Any other HTTP error as a page or JSON (see :func:`error_response`);
        413 names the configured size cap."""
        status = exc.code or 500
        if status == 413:  # name the limit, e.g. "The file is larger than 20 MiB."
            limit = app.config["MAX_CONTENT_LENGTH"] or 0
            return error_response(413, f"The file is larger than {limit / 1048576:g} MiB."
                                  if limit else MESSAGES[413])
        return error_response(status, MESSAGES.get(status, exc.description or ""))

    @app.errorhandler(Exception)
    def server_error(exc: Exception) -> tuple[Response | str, int]:
        """Log the traceback; show a plain 500 without internals."""
        app.logger.exception("unhandled error: %s", exc)
        return error_response(500, MESSAGES[500])
