"""The object store stopped while a photo waits to be processed, on a private SeaweedFS.

The worker's attempts fail while the store is down and are retried (the upload
stays ``processing``, the worker keeps serving); once the store is back the
upload ends ``done`` with every derivative readable. An upload POSTed during the
outage gets a clear error page and leaves no row and no object.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from tests.harness.seaweed import SeaweedS3
from tests.harness.stack import Stack
from tests.uploads import samples
from tests.uploads.conftest import status, upload, upload_id_from, verified_client, wait_finished
from webapp.extensions import db
from webapp.models import Upload


@pytest.fixture
def outage_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stack, SeaweedS3]]:
    server = SeaweedS3(tmp_path / "seaweed", bucket="onboard-outage").start()
    env = server.env("outage")
    for name, value in env.items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)  # boto3 in this process reads them here
    stack = Stack("postgresql", tmp_path / "stack", env_overrides={
        **env,
        # Enough retries and starts to outlast the outage plus the store's restart.
        "UPLOAD_MAX_RETRIES": "10", "UPLOAD_MAX_ATTEMPTS": "20",
    }).start()
    try:
        yield stack, server
    finally:
        stack.stop()
        server.stop()


def test_store_outage_during_processing(outage_stack: tuple[Stack, SeaweedS3]) -> None:
    stack, server = outage_stack
    client, _ = verified_client(stack, "outage")
    assert stack.celery.control.cancel_consumer("images", reply=True, timeout=5)
    upload_id = upload_id_from(upload(client, samples.camera_jpeg(640, 480, gps=True)))
    objects_before = server.keys()
    assert len(objects_before) == 1  # the original, stored while the store was up

    server.stop()
    outage_started = time.monotonic()
    stack.celery.control.add_consumer("images", reply=True, timeout=5)

    # The worker's attempts fail and are retried: the upload is not lost, not failed.
    def attempts() -> int:
        with stack.app.app_context():
            n = db.session.scalar(select(Upload.attempts).where(Upload.id == upload_id))
            db.session.rollback()
            return n or 0

    deadline = time.monotonic() + 60
    while attempts() < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    doc = status(client, upload_id)
    assert attempts() >= 2 and doc["status"] == "processing", (attempts(), doc)

    # An upload during the outage: a clear page, no row.
    with stack.app.app_context():
        rows_before = db.session.scalar(select(func.count()).select_from(Upload))
    started = time.monotonic()
    resp = upload(client, samples.camera_jpeg(320, 240))
    refused_s = time.monotonic() - started
    assert resp.status_code == 502 and b"Photos cannot be stored right now" in resp.data
    with stack.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Upload)) == rows_before
    assert all(p.alive() for p in stack.workers)

    server.start()
    outage_s = time.monotonic() - outage_started
    doc = wait_finished(client, upload_id, timeout=180)
    recovered_s = time.monotonic() - outage_started
    assert doc["status"] == "done", doc
    for d in doc["derivatives"].values():
        got = requests.get(d["url"], timeout=10)
        assert got.status_code == 200 and len(got.content) == d["bytes"]
    keys = server.keys()
    assert len(keys) == 3 and all("/derivatives/" in k for k in keys), keys  # original dropped

    # The worker is alive and keeps serving.
    next_id = upload_id_from(upload(client, samples.camera_jpeg(300, 200)))
    assert wait_finished(client, next_id)["status"] == "done"
    print(f"\nstore outage: {attempts()} processing attempts, store down {outage_s:.0f} s "
          f"(restart included), upload done {recovered_s:.0f} s after the stop; "
          f"an upload POST during the outage refused with 502 in {refused_s:.1f} s; "
          f"lost 0, objects without a row 0")
