"""Web and worker as a Procfile platform runs them: separate hosts sharing no disk.

The web (the in-process app) and a real ``celery worker`` get different
``MEDIA_ROOT`` and ``INSTANCE_DIR``; everything they share is the database, the
broker and the S3 store (a real SeaweedFS). A camera photo with EXIF orientation
and GPS goes through upload, processing, serving from its presigned URLs and
delete; then a worker started afresh on an empty folder takes the next upload.
"""
from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PIL import ExifTags, Image

from tests.conftest import csrf_from
from tests.harness.seaweed import SeaweedS3
from tests.harness.stack import Stack
from tests.uploads import samples
from tests.uploads.conftest import upload, upload_id_from, verified_client, wait_finished

IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"RIFF")


@pytest.fixture
def two_hosts(seaweed: SeaweedS3, tmp_path: Path) -> Iterator[tuple[Stack, str]]:
    """A PostgreSQL stack on the S3 store whose web host is the test process
    (``tmp/instance``, ``tmp/media``); no worker yet. Yields ``(stack, prefix)``."""
    prefix = "two-hosts-" + uuid.uuid4().hex[:8]
    stack = Stack("postgresql", tmp_path / "web", env_overrides=seaweed.env(prefix)).start(worker=False)
    try:
        yield stack, prefix
    finally:
        stack.stop()


def start_worker_host(stack: Stack, folder: Path) -> object:
    """A worker on a 'host' of its own: its own empty MEDIA_ROOT and INSTANCE_DIR."""
    folder.mkdir(parents=True)
    return stack.start_worker(extra_env={"MEDIA_ROOT": str(folder / "media"),
                                         "INSTANCE_DIR": str(folder / "instance")})


def image_files(root: Path) -> list[Path]:
    """Files under ``root`` that start like a JPEG, PNG or WebP."""
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                if f.read(4).startswith(IMAGE_MAGIC):
                    found.append(path)
    return found


def test_web_and_worker_share_no_disk(two_hosts: tuple[Stack, str], seaweed: SeaweedS3,
                                      tmp_path: Path) -> None:
    stack, prefix = two_hosts
    worker = start_worker_host(stack, tmp_path / "worker-a")
    client, _ = verified_client(stack, "hosts")
    photo = samples.camera_jpeg(640, 480, orientation=6, gps=True)

    started = time.perf_counter()
    resp = upload(client, photo, "IMG_2001.jpg")
    post_ms = (time.perf_counter() - started) * 1000
    upload_id = upload_id_from(resp)
    doc = wait_finished(client, upload_id)
    done_ms = (time.perf_counter() - started) * 1000
    assert doc["status"] == "done", doc

    # Served from the store over HTTP, without the site's cookies: upright, GPS-free.
    fetched = 0
    for name, d in doc["derivatives"].items():
        assert d["url"].startswith(seaweed.endpoint + f"/{seaweed.bucket}/{prefix}/derivatives/")
        got = requests.get(d["url"], timeout=10)
        assert got.status_code == 200 and len(got.content) == d["bytes"], name
        fetched += len(got.content)
        im = Image.open(io.BytesIO(got.content))
        assert im.size == (d["width"], d["height"])
        exif = im.getexif()
        assert not exif.get_ifd(ExifTags.IFD.GPSInfo) and ExifTags.Base.Orientation not in exif
    display = doc["derivatives"]["display"]
    assert (display["width"], display["height"]) == (480, 640)
    im = Image.open(io.BytesIO(requests.get(display["url"], timeout=10).content)).convert("RGB")
    r, g, b = im.getpixel((display["width"] - 10, 10))  # top-left block is top-right upright
    assert r > 150 and b < 100, (r, g, b)

    # Neither host's folders hold an image; the store holds exactly the derivatives.
    web_root, worker_root = Path(stack.tmp), tmp_path / "worker-a"
    assert image_files(web_root) == [] and image_files(worker_root) == []
    objects = seaweed.keys(prefix + "/")
    assert len(objects) == 3 and all("/derivatives/" in k for k in objects), objects

    # Delete removes every object.
    token = csrf_from(client.get(f"/uploads/{upload_id}").data)
    assert client.post(f"/uploads/{upload_id}/delete", data={"csrf_token": token}).status_code == 303
    assert seaweed.keys(prefix + "/") == []

    # A worker started afresh on an empty folder processes the next upload.
    stack.stop_worker(worker)  # type: ignore[arg-type]
    start_worker_host(stack, tmp_path / "worker-b")
    started = time.perf_counter()
    resp = upload(client, samples.camera_jpeg(800, 600), "IMG_2002.jpg")
    next_post_ms = (time.perf_counter() - started) * 1000
    next_id = upload_id_from(resp)
    assert wait_finished(client, next_id)["status"] == "done"
    next_done_ms = (time.perf_counter() - started) * 1000
    assert image_files(tmp_path / "worker-b") == [] and image_files(web_root) == []
    print(f"\ntwo hosts: first upload POST {post_ms:.0f} ms (includes making the web's "
          f"S3 client), done after {done_ms:.0f} ms; original {len(photo)} B, 3 derivatives "
          f"{fetched} B fetched from the store; objects after delete 0; fresh worker: "
          f"POST {next_post_ms:.0f} ms, done after {next_done_ms:.0f} ms")
