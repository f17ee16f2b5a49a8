"""Where the browser may be sent after log-in: local paths only (no open redirect).

The ``next`` parameter of ``/login`` comes from the query string, so anyone can
put a link to ``/login?next=…`` in a mail. OWASP's Unvalidated Redirects and
Forwards Cheat Sheet: accept only targets that stay on this site.
"""
from __future__ import annotations

from urllib.parse import urlsplit

#: The WHATWG URL Standard (which browsers follow) removes ASCII tab, LF and CR
#: anywhere in a URL before parsing, so ``/\t/evil.example`` is ``//evil.example``
#: to a browser. They are removed here first, so the check sees what the browser
#: would see, and the header never carries a line break.
_REMOVED_BY_BROWSERS = str.maketrans("", "", "\t\n\r")


def local_path(target: str | None) -> str | None:
    """The redirect target if it is a path on this site, else ``None``.

    The rules, applied after removing tab, LF and CR as browsers do:

    * no other control character (C0 or DEL) and no backslash (browsers read
      ``\\`` as ``/`` in http(s) URLs, so ``/\\evil.example`` is ``//evil.example``);
    * ``urllib.parse.urlsplit`` finds neither a scheme (``javascript:``,
      ``https:evil.example``) nor a host (``//evil.example``);
    * it starts with exactly one ``/``.

    Percent-escapes are kept as they are: ``/%2F%2Fevil.example`` is a path on
    this site to a browser (escapes are not decoded before the host is parsed).

    Args:
        target: the raw ``next`` value (already decoded from the query string
            once, by Werkzeug), or ``None``.

    Returns:
        The cleaned path (str, safe to put in a ``Location`` header) or ``None``.
    """
    if not target:
        return None
    cleaned = target.translate(_REMOVED_BY_BROWSERS)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in cleaned) or "\\" in cleaned:
        return None
    parts = urlsplit(cleaned)
    if parts.scheme or parts.netloc:
        return None
    if not cleaned.startswith("/") or cleaned.startswith("//"):
        return None
    return cleaned
