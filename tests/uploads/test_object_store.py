"""The S3 store on a real SeaweedFS: privacy of originals, cacheable presigned URLs,
streaming without a whole-file copy, the purge and backups listing the bucket."""
from __future__ import annotations

import io
import os
import time
import tracemalloc
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from tests.harness.seaweed import SeaweedS3
from tests.harness.stack import Stack
from tests.uploads import samples
from tests.uploads.conftest import stored_keys, upload, upload_id_from, verified_client, wait_finished
from webapp.extensions import db
from webapp.models import Upload
from webapp.ops import backup, purge
from webapp.storage import S3Store, StoreUnavailable, open_store, public_url


@pytest.fixture
def s3_stack(stack_factory) -> Stack:  # type: ignore[no-untyped-def]
    return stack_factory("postgresql-s3")


@pytest.fixture
def store(seaweed: SeaweedS3) -> S3Store:
    """An S3 store on the session's SeaweedFS under a fresh prefix."""
    return S3Store(f"s3://{seaweed.bucket}/unit-{uuid.uuid4().hex[:8]}")


def test_originals_need_credentials_and_get_no_url(s3_stack: Stack, seaweed: SeaweedS3) -> None:
    client, _ = verified_client(s3_stack, "private")
    # The worker deletes the original once done: look while the images queue is paused.
    assert s3_stack.celery.control.cancel_consumer("images", reply=True, timeout=5)
    try:
        upload_id = upload_id_from(upload(client, samples.camera_jpeg(320, 240, gps=True)))
        with s3_stack.app.app_context():
            original = db.session.get(Upload, upload_id).original_key
            store = open_store(s3_stack.app.config["STORAGE_URL"])
            full_key = store.prefix + original  # type: ignore[attr-defined]
            with pytest.raises(ValueError):
                public_url(store, original)
        # The object is there, but an anonymous GET (no signature) is refused.
        anonymous = requests.get(f"{seaweed.endpoint}/{seaweed.bucket}/{full_key}", timeout=10)
        assert anonymous.status_code == 403, anonymous.status_code
        assert seaweed.client().head_object(Bucket=seaweed.bucket, Key=full_key)["ContentLength"] > 0
        assert client.get(f"/media/{original}").status_code == 404
    finally:
        s3_stack.celery.control.add_consumer("images", reply=True, timeout=5)
    doc = wait_finished(client, upload_id)
    assert doc["status"] == "done"
    # Derivative URLs are absolute presigned URLs; stripped of the query they are refused too.
    url = doc["derivatives"]["display"]["url"]
    assert url.startswith(seaweed.endpoint + "/") and "X-Amz-Signature=" in url
    assert requests.get(url, timeout=10).status_code == 200
    assert requests.get(url.split("?")[0], timeout=10).status_code == 403


def test_presigned_urls_are_stable_within_a_window(store: S3Store) -> None:
    store.save("derivatives/a_display.jpg", io.BytesIO(b"jpeg bytes"), "image/jpeg")
    past = int(time.time()) - 2 * 86400
    t = past - past % 1800  # the start of a 30-minute window two days ago
    first = store.presign("derivatives/a_display.jpg", 3600, now=t + 5)
    assert store.presign("derivatives/a_display.jpg", 3600, now=t + 1799) == first
    later = store.presign("derivatives/a_display.jpg", 3600, now=t + 1800)
    assert later != first  # the next window signs anew
    # A URL signed now works, with the object's headers.
    now_url = store.presign("derivatives/a_display.jpg", 3600)
    resp = requests.get(now_url, timeout=10)
    assert resp.status_code == 200 and resp.content == b"jpeg bytes"
    assert resp.headers["Content-Type"] == "image/jpeg"
    # One signed in a window long gone has expired: refused.
    assert requests.get(first, timeout=10).status_code == 403


def test_page_rendered_twice_gives_the_same_urls(s3_stack: Stack) -> None:
    client, _ = verified_client(s3_stack, "cache")
    upload_id = upload_id_from(upload(client, samples.camera_jpeg(320, 240)))
    first = wait_finished(client, upload_id)
    second = client.get(f"/uploads/{upload_id}", headers={"Accept": "application/json"}).get_json()
    assert first["status"] == "done" and first == second
    resp = requests.get(first["derivatives"]["display"]["url"], timeout=10)
    assert "immutable" in resp.headers.get("Cache-Control", "")


def test_save_streams_without_a_whole_file_copy(store: S3Store, tmp_path: Path) -> None:
    size = 20 * 1024 * 1024  # MAX_CONTENT_LENGTH
    body = tmp_path / "body"
    with open(body, "wb") as f:
        for _ in range(size // (1024 * 1024)):
            f.write(os.urandom(1024 * 1024))
    with open(body, "rb") as f:
        tracemalloc.start()
        try:
            assert store.save("originals/big.jpg", f, "image/jpeg") == size
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    print(f"peak Python memory while storing {size >> 20} MiB: {peak / 2**20:.1f} MiB")
    assert peak < size / 2, peak  # one 8 MiB part at most, never the 20 MiB file
    back = tmp_path / "back"
    store.fetch("originals/big.jpg", back)
    assert back.read_bytes() == body.read_bytes()


def test_purge_lists_the_bucket(store: S3Store) -> None:
    for key in ("originals/kept.jpg", "originals/orphan.jpg", "derivatives/orphan_display.jpg",
                "backups/onboard-2000-01-01.pgdump"):
        store.save(key, io.BytesIO(b"x"))
    # Everything was written just now: nothing is old enough yet.
    assert purge.purge_orphan_files(store, {"originals/kept.jpg"}, 3600) == []
    later = time.time() + 7200
    deleted = purge.purge_orphan_files(store, {"originals/kept.jpg"}, 3600, now=later)
    assert sorted(deleted) == ["derivatives/orphan_display.jpg", "originals/orphan.jpg"]
    assert sorted(o.key for o in store.list()) == ["backups/onboard-2000-01-01.pgdump",
                                                   "originals/kept.jpg"]


def test_backup_goes_to_the_bucket(s3_stack: Stack, seaweed: SeaweedS3) -> None:
    with s3_stack.app.app_context():
        key = backup.backup_database()
        store = open_store(s3_stack.app.config["STORAGE_URL"])
        assert key.startswith("backups/onboard-") and key.endswith(".pgdump")
        assert store.exists(key)
        size = next(o.size for o in store.list("backups/") if o.key == key)
        assert size > 1000  # a real pg_dump of the schema
        assert backup.backup_database() == key  # second run: kept
    scratch = Path(s3_stack.app.config["INSTANCE_DIR"]) / "scratch"
    assert not scratch.exists() or not any(scratch.iterdir())


def test_store_down_is_store_unavailable(tmp_path: Path) -> None:
    """Nothing listens on the endpoint: every operation says so with one error type."""
    import boto3
    from botocore.config import Config

    from tests.harness.wait import free_port

    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{free_port()}",
                          region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="y",
                          config=Config(retries={"max_attempts": 1}, connect_timeout=1))
    dead = S3Store("s3://bucket-down", client=client)
    for call in (lambda: dead.check(), lambda: dead.save("originals/a.jpg", io.BytesIO(b"x")),
                 lambda: dead.fetch("originals/a.jpg", tmp_path / "a"),
                 lambda: list(dead.list()), lambda: dead.delete("originals/a.jpg")):
        with pytest.raises(StoreUnavailable):
            call()


def test_upload_rows_match_objects(s3_stack: Stack) -> None:
    """After uploads finish, every key a row references is in the bucket."""
    client, _ = verified_client(s3_stack, "rows")
    ids = [upload_id_from(upload(client, samples.camera_jpeg(200 + i, 150))) for i in range(2)]
    for upload_id in ids:
        assert wait_finished(client, upload_id)["status"] == "done"
    with s3_stack.app.app_context():
        keys = set(db.session.scalars(select(Upload.key).where(Upload.id.in_(ids))))
    stored = stored_keys(s3_stack, "derivatives/")
    for token in keys:
        assert {f"derivatives/{token}_display.jpg", f"derivatives/{token}_display.webp",
                f"derivatives/{token}_avatar.jpg"} <= stored


def test_healthz_reports_the_store(s3_stack: Stack, seaweed: SeaweedS3) -> None:
    client = s3_stack.client()
    body = client.get("/healthz").get_json()  # the test client is loopback: details shown
    assert body["checks"]["store"] == {"ok": True,
                                       "detail": f"HEAD s3://{seaweed.bucket} answered"}
    # A bucket that is not there: the store check fails with its reason.
    s3_stack.app.config["STORAGE_URL"] = "s3://no-such-bucket-onboard"
    s3_stack.app.config["HEALTH_CACHE_SECONDS"] = 0
    try:
        resp = client.get("/healthz")
        store = resp.get_json()["checks"]["store"]
        assert resp.status_code == 503 and store["ok"] is False
        assert "StoreUnavailable" in store["detail"] and "404" in store["detail"], store
    finally:
        s3_stack.app.config["STORAGE_URL"] = s3_stack.env["STORAGE_URL"]
        s3_stack.app.config["HEALTH_CACHE_SECONDS"] = 5
