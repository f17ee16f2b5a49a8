"""Bench-only WSGI app: read the request body to the end and answer 200.

The floor for an upload: what gunicorn and the loopback cost to receive N bytes.
Served with the same gunicorn settings as the real app
(``gunicorn ... bench.body_read_app:app``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

CHUNK = 64 * 1024  # bytes per read


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Read ``wsgi.input`` in 64 KiB chunks; answer the byte count as text."""
    stream = environ["wsgi.input"]
    total = 0
    while chunk := stream.read(CHUNK):
        total += len(chunk)
    body = str(total).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
