"""Development-only mail viewer: ``/dev/mail`` lists what the local SMTP catcher
caught, so a newcomer can read the verification mail and click its link.

The catcher is aiosmtpd's own ``Mailbox`` handler writing a Maildir
(``python -m aiosmtpd -n -l 127.0.0.1:1025 -c aiosmtpd.handlers.Mailbox <dir>``,
see ``Procfile.dev``). Registered only when ``ONBOARD_ENV=development``.
"""
from __future__ import annotations

import mailbox
from email.message import Message
from pathlib import Path

from flask import Blueprint, abort, current_app, render_template

bp = Blueprint("devmail", __name__, url_prefix="/dev/mail")


def _maildir() -> mailbox.Maildir | None:
    path = Path(current_app.config["DEV_MAILDIR"])
    return mailbox.Maildir(path, create=False) if (path / "new").is_dir() else None


def _text_part(msg: Message) -> str:
    """The plain-text body of ``msg`` (first ``text/plain`` part)."""
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True) or b""
            return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return ""


@bp.get("/")
def inbox() -> str:
    """Newest first: date, recipient, subject."""
    box = _maildir()
    items = []
    if box is not None:
        for key, msg in box.items():
            items.append({"key": key, "to": msg["To"], "subject": msg["Subject"],
                          "date": msg["Date"], "ts": msg.get_date() if hasattr(msg, "get_date") else 0})
    items.sort(key=lambda m: m["ts"], reverse=True)
    return render_template("dev/inbox.html", items=items,
                           maildir=current_app.config["DEV_MAILDIR"])


@bp.get("/<key>")
def show(key: str) -> str:
    """One mail's headers and plain-text body (links are clickable)."""
    box = _maildir()
    if box is None:
        abort(404)
    try:
        msg = box[key]
    except KeyError:
        abort(404)
    return render_template("dev/message.html", msg=msg, body=_text_part(msg))
