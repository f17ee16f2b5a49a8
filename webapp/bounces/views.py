"""Where bounce reports come in: ``POST /hooks/bounce`` (for a mail provider's
webhook or a mailbox-to-HTTP relay) and ``flask --app wsgi bounce`` (for an
operator, or a mail server's pipe). Both read the report with
:func:`webapp.bounces.services.parse` and record it with
:func:`webapp.bounces.services.apply`."""
from __future__ import annotations

import hmac
import sys

import click
from flask import Response, abort, current_app, jsonify, request

from webapp.bounces import bp, services
from webapp.extensions import csrf


def _authorised() -> bool:
    """``Authorization: Bearer <BOUNCE_HOOK_SECRET>``, compared in constant time
    (:func:`hmac.compare_digest`, so the answer time does not tell how much of a
    guess was right)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    secret = current_app.config["BOUNCE_HOOK_SECRET"]
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              secret.encode())


def _error(status: int, code: str, message: str) -> tuple[Response, int]:
    return jsonify(error={"status": status, "code": code, "message": message}), status


@bp.post("/hooks/bounce")
@csrf.exempt  # a machine posts here; the shared secret authenticates it
def bounce_hook() -> tuple[Response, int]:
    """Take a bounce report: an RFC 3464 DSN (``multipart/report`` or
    ``message/rfc822`` body) or JSON ``{"message_id", "recipient", "status"}``
    (``Content-Type: application/json``).

    Answers 200 ``{"outcomes": [...]}`` (one per recipient, see
    :func:`webapp.bounces.services.apply`); 400 ``{"error": …}`` for a report
    that cannot be read (nothing recorded); 401 without the right secret; 404
    when ``BOUNCE_HOOK_SECRET`` is empty (the hook is off).
    """
    if not current_app.config["BOUNCE_HOOK_SECRET"]:
        abort(404)
    if not _authorised():
        resp, status = _error(401, "unauthorised", "Authorization: Bearer <secret> required")
        resp.headers["WWW-Authenticate"] = "Bearer"
        return resp, status
    try:
        reports = services.parse(request.get_data(), request.content_type or "")
    except services.BadReport as exc:
        return _error(400, "bad_report", str(exc))
    outcomes = [{"recipient": r.recipient, "status": r.status, "outcome": services.apply(r)}
                for r in reports]
    return jsonify(outcomes=outcomes), 200


@bp.cli.command("bounce")
@click.argument("report", type=click.File("rb"), default="-")
@click.option("--json", "as_json", is_flag=True,
              help="The report is JSON {message_id, recipient, status}, not a DSN.")
def bounce_cmd(report: click.utils.LazyFile, as_json: bool) -> None:
    """Record a bounce report read from REPORT (a file, or - for stdin): an
    RFC 3464 delivery status notification, or JSON with --json. Prints one line
    per recipient; exit status 1 when the report cannot be read."""
    raw = report.read()
    try:
        reports = services.parse(raw, "application/json" if as_json else "message/rfc822")
    except services.BadReport as exc:
        click.echo(f"cannot read the report: {exc}", err=True)
        sys.exit(1)
    for r in reports:
        click.echo(f"{r.recipient} {r.status} {services.apply(r)}")
