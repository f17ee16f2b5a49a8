"""Publish-after-commit for mail and images while RabbitMQ blocks publishers.

A memory alarm on the private node makes RabbitMQ accept connections but never
confirm a publish. ``POST /uploads`` and ``POST /register`` must still answer
within ``OUTBOX_PUBLISH_TIMEOUT`` + 1 s, leave their rows unpublished, and once
the alarm clears the relays (run by a real celery beat) publish both rows: the
mail reaches the SMTP sink and a real worker processes the upload.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from tests.conftest import new_email, register
from tests.harness.counts import Counts, elapsed, message_ids
from tests.harness.rabbit import RabbitNode
from tests.harness.stack import Stack
from tests.uploads import samples
from tests.uploads.conftest import upload, upload_id_from, verified_client, wait_finished
from webapp.extensions import db
from webapp.mail import message_id_for
from webapp.models import OutboxMessage, Upload

PUBLISH_TIMEOUT = 2.0


class Timed:
    """Run ``call`` on a thread so a hung page cannot hang the test; ``seconds``
    is how long it took (measured when it ends, however late)."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.seconds: float | None = None
        self._start = time.monotonic()

        def run() -> None:
            self.result = call()
            self.seconds = round(time.monotonic() - self._start, 2)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def wait(self, timeout: float) -> bool:
        """True when the call ended within ``timeout`` seconds of its start."""
        self.thread.join(max(0.0, timeout - (time.monotonic() - self._start)))
        return not self.thread.is_alive()


def test_upload_and_signup_answer_while_broker_is_blocked(fault_stack: Any,
                                                         rabbit: RabbitNode) -> None:
    stack: Stack = fault_stack("sqlite", env={
        "OUTBOX_PUBLISH_TIMEOUT": str(PUBLISH_TIMEOUT), "OUTBOX_PUBLISH_PAUSE": "5",
        "UPLOAD_RELAY_AFTER": "1", "UPLOAD_RELAY_INTERVAL": "1"})
    uploader, _ = verified_client(stack, "alarm-up")
    photos = [samples.camera_jpeg(300, 200), samples.camera_jpeg(200, 300)]
    signup, email = stack.client(), new_email("alarm-reg")
    limit = PUBLISH_TIMEOUT + 1.0

    with rabbit.memory_alarm():
        # The first upload meets the blocked broker and times out; the second
        # upload and the sign-up then find publishing paused (one pause for both
        # tasks: one broker). The rows of those two never reach the broker, so
        # only the relays can publish them.
        pages = [Timed(lambda: upload(uploader, photos[0]))]
        in_time = [pages[0].wait(limit)]
        pages.append(Timed(lambda: upload(uploader, photos[1])))
        in_time.append(pages[1].wait(limit))
        pages.append(Timed(lambda: register(signup, email)))
        in_time.append(pages[2].wait(limit))
        # A hung page ends when the alarm clears; assert after that.
        if all(in_time):
            upload_ids = [upload_id_from(page.result) for page in pages[:2]]
            with stack.app.app_context():
                unpublished = [_upload(upload_ids[0]).published_at is None,
                               _upload(upload_ids[1]).published_at is None,
                               _mail_row(email).published_at is None]
    cleared = time.monotonic()
    for page in pages:
        page.wait(60)
    seconds = {"page_s": [page.seconds for page in pages]}
    assert all(in_time), f"a page waited for the blocked broker: {seconds}"
    assert [page.result.status_code for page in pages] == [303, 303, 303]
    assert unpublished == [True, True, True]

    stack.start_beat()  # relay_outbox and relay_pending_uploads, every second
    docs = [wait_finished(uploader, upload_id, timeout=30) for upload_id in upload_ids]
    stack.smtp.wait_for(email, timeout=30)
    with stack.app.app_context():
        relayed = [_upload(upload_ids[1]).published_at is not None,
                   _mail_row(email).published_at is not None]
        expected = {message_id_for(_mail_row(email))}
    counts = Counts("broker-blocked-upload+signup", attempted=3, answered=3, extra={
        **seconds, "uploads": [d["status"] for d in docs],
        "done_after_alarm_s": elapsed(cleared)}).tally(message_ids(stack), expected)
    counts.report()
    # The timed-out upload's publish goes through late (its row stays
    # unpublished and done); the two that never reached the broker were relayed.
    assert [d["status"] for d in docs] == ["done", "done"], docs
    assert relayed == [True, True]
    assert counts.lost == 0 and counts.duplicated == 0


def _upload(upload_id: int) -> Upload:
    return db.session.get(Upload, upload_id)


def _mail_row(email: str) -> OutboxMessage:
    return db.session.scalar(select(OutboxMessage).where(OutboxMessage.to_address == email))
