"""A real SMTP server for tests (aiosmtpd on 127.0.0.1) and mail body helpers."""
from __future__ import annotations

import email
import threading
from email.message import Message

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer, Envelope, Session

from tests.harness.wait import free_port, wait_until


class SinkHandler:
    """aiosmtpd handler that keeps every accepted message.

    ``mode`` picks the answer to DATA: ``"ok"`` (250), ``"reject"`` (550, a
    permanent failure, RFC 5321 §4.2.1) or ``"tempfail"`` (451, a transient one).
    """

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.mode = "ok"
        self.refused = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.mode == "reject":
            self.refused += 1
            return "550 5.1.1 Mailbox unavailable"
        if self.mode == "tempfail":
            self.refused += 1
            return "451 4.3.0 Try again later"
        msg = email.message_from_bytes(envelope.original_content or b"")
        with self.lock:
            self.messages.append(msg)
        return "250 OK"


class SMTPSink:
    """A real SMTP server on 127.0.0.1 (aiosmtpd) that tests can read and break.

    Args:
        port: TCP port; a free one when None.
        handler: the DATA handler; a new :class:`SinkHandler` when None.
    """

    def __init__(self, port: int | None = None, handler: SinkHandler | None = None) -> None:
        self.port = port or free_port()
        self.handler = handler or SinkHandler()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> SMTPSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def use(self, handler: SinkHandler) -> SinkHandler:
        """Answer new connections with ``handler`` (aiosmtpd builds one ``SMTP``
        per connection from the controller's handler); returns it."""
        self.controller.handler = handler
        self.handler = handler
        return handler

    @property
    def messages(self) -> list[Message]:
        with self.handler.lock:
            return list(self.handler.messages)

    def to(self, address: str) -> list[Message]:
        """Messages whose To header names ``address`` (a raw UTF-8 header, as an
        SMTPUTF8 mail has, is parsed as a ``Header`` object: compare its text)."""
        return [m for m in self.messages if address in str(m.get("To") or "")]

    def wait_for(self, address: str, count: int = 1, timeout: float = 30.0) -> list[Message]:
        """Wait until ``count`` messages to ``address`` arrived; returns them.

        Raises:
            TimeoutError: fewer arrived within ``timeout`` seconds.
        """
        return wait_until(lambda: (msgs := self.to(address)) and len(msgs) >= count and msgs,
                          timeout, what=f"{count} mail(s) to {address}")


def _part(msg: Message, content_type: str) -> str:
    for part in msg.walk():
        if part.get_content_type() == content_type:
            return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
    raise AssertionError(f"no {content_type} part")


def text_body(msg: Message) -> str:
    """The ``text/plain`` part of a message, decoded; AssertionError if none."""
    return _part(msg, "text/plain")


def html_body(msg: Message) -> str:
    """The ``text/html`` part of a message, decoded; AssertionError if none."""
    return _part(msg, "text/html")
