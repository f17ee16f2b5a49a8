"""SMTP sinks that time acceptance: the test sink's handler plus when each
recipient was accepted, and an optional delay before the 250 answer."""
from __future__ import annotations

import asyncio
import logging
import time

from aiosmtpd.smtp import SMTP as SMTPServer, Envelope, Session

from tests.harness.mail import SinkHandler, SMTPSink
from tests.harness.stack import Stack

# aiosmtpd logs every SMTP command at INFO: thousands of lines per run.
logging.getLogger("mail.log").setLevel(logging.WARNING)


class TimedSinkHandler(SinkHandler):
    """:class:`tests.harness.mail.SinkHandler` plus the acceptance time of each
    recipient (``time.monotonic()`` of this process, in ``accepted_at`` keyed by
    the lower-cased address) and ``delay`` seconds before the 250 answer
    (``asyncio.sleep``, so other sessions go on)."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.accepted_at: dict[str, float] = {}

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        answer = await super().handle_DATA(server, session, envelope)
        now = time.monotonic()
        if answer.startswith("250"):
            with self.lock:
                for rcpt in envelope.rcpt_tos:
                    self.accepted_at.setdefault(rcpt.lower(), now)
        return answer

    def count(self) -> int:
        """Messages accepted so far."""
        with self.lock:
            return len(self.messages)


def timed_sink(stack: Stack, delay: float = 0.0) -> TimedSinkHandler:
    """Make the stack's SMTP sink answer new connections with a
    :class:`TimedSinkHandler`; returns it."""
    return stack.smtp.use(TimedSinkHandler(delay))  # type: ignore[return-value]


def slow_sink(delay: float) -> SMTPSink:
    """A separate SMTP sink (started) answering DATA after ``delay`` seconds; its
    handler is a :class:`TimedSinkHandler`. Call ``.stop()`` when done."""
    return SMTPSink(handler=TimedSinkHandler(delay)).start()
