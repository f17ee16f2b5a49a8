"""Photo uploads over real parts: web app, RabbitMQ vhost, a real celery worker
subprocess processing the ``images`` queue, SQLite and PostgreSQL, files in a
local folder or on a real S3 store (SeaweedFS)."""
from __future__ import annotations

import hashlib
import html as html_lib
import io
import tempfile
from pathlib import Path

import pytest
from PIL import ExifTags, Image
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage

from tests.conftest import csrf_from
from tests.harness.stack import Stack
from tests.uploads import samples
from tests.uploads.conftest import (avatar_upload, fetch, status, stored_keys, upload,
                                   upload_id_from, verified_client, wait_finished)
from webapp.extensions import db
from webapp.models import Upload, UploadDerivative, User
from webapp.storage import StoreUnavailable
from webapp.uploads import services

MEDIA_KEYS = {"url", "width", "height", "bytes", "format"}


def media_files(stack: Stack, sub: str) -> set[str]:
    """Names of the objects in the stack's store under ``sub/``."""
    return {k.rsplit("/", 1)[1] for k in stored_keys(stack, sub + "/")}


def upload_count(stack: Stack, email: str) -> int:
    with stack.app.app_context():
        return db.session.scalar(select(func.count()).select_from(Upload)
                                 .join(User, User.id == Upload.user_id).where(User.email == email))


def test_upload_is_oriented_stripped_and_reported(stack: Stack) -> None:
    client, email = verified_client(stack)
    original = samples.camera_jpeg(640, 480, orientation=6, gps=True)
    originals_before = media_files(stack, "originals")
    resp = upload(client, original, "IMG_0001.jpg")
    upload_id = upload_id_from(resp)

    # The page exists at once and polls; the JSON shape is exact from the start.
    page = client.get(f"/uploads/{upload_id}")
    assert page.status_code == 200
    assert b'data-status-url="/uploads/%d"' % upload_id in page.data
    assert b"uploads.js" in page.data and b"<script>" not in page.data
    first = status(client, upload_id)
    assert set(first) == {"id", "status", "error", "original", "derivatives"}
    assert first["id"] == upload_id and first["status"] in ("pending", "processing", "done")
    assert first["original"] == {"bytes": len(original), "width": 640, "height": 480}

    doc = wait_finished(client, upload_id)
    assert doc["status"] == "done" and doc["error"] is None, doc
    assert set(doc["derivatives"]) == {"display", "display_webp", "avatar"}
    for d in doc["derivatives"].values():
        assert set(d) == MEDIA_KEYS
    display, webp, avatar = (doc["derivatives"][n] for n in ("display", "display_webp", "avatar"))
    # Orientation 6 applied: 640x480 stored sideways is 480x640 upright.
    assert (display["width"], display["height"]) == (480, 640)
    assert (webp["width"], webp["height"], webp["format"]) == (480, 640, "webp")
    assert (avatar["width"], avatar["height"], avatar["format"]) == (256, 256, "jpeg")
    assert display["format"] == "jpeg"

    for name, d in doc["derivatives"].items():
        assert "IMG_0001" not in d["url"]  # never the client's file name
        code, body = fetch(client, d["url"])
        assert code == 200 and len(body) == d["bytes"], name
        im = Image.open(io.BytesIO(body))
        assert im.format == {"jpeg": "JPEG", "webp": "WEBP"}[d["format"]]
        assert im.size == (d["width"], d["height"])
        exif = im.getexif()
        assert not exif.get_ifd(ExifTags.IFD.GPSInfo), f"GPS left in {name}"
        assert ExifTags.Base.Orientation not in exif and ExifTags.Base.Make not in exif
        assert "exif" not in im.info
    # The red block stored top-left is top-right once upright.
    im = Image.open(io.BytesIO(fetch(client, display["url"])[1])).convert("RGB")
    r, g, b = im.getpixel((display["width"] - 10, 10))
    assert r > 150 and b < 100, (r, g, b)
    r, g, b = im.getpixel((10, 10))
    assert b > 150 and r < 100, (r, g, b)

    # The original (with the GPS position) is gone from disk and from the row.
    with stack.app.app_context():
        row = db.session.get(Upload, upload_id)
        assert row.original_key is None and row.attempts == 1
        assert row.published_at is not None and row.finished_at is not None
    assert media_files(stack, "originals") == originals_before

    # The HTML page shows results and bytes saved; the list shows the photo.
    page = client.get(f"/uploads/{upload_id}").data.decode()
    assert 'data-testid="display-img"' in page and "Saved" in page and "%" in page
    listing = client.get("/uploads").data.decode()
    assert f'data-upload-id="{upload_id}"' in listing

    # Originals are never served, and paths cannot leave the media folder.
    assert client.get("/media/originals/x.jpg").status_code == 404
    assert client.get("/media/derivatives/../../instance/onboard.db").status_code == 404

    # Re-running the task for a done upload changes nothing (real worker).
    files_before = {n: hashlib.sha256(fetch(client, d["url"])[1]).hexdigest()
                    for n, d in doc["derivatives"].items()}
    result = stack.celery.send_task("webapp.tasks.images.process_image", args=[upload_id])
    assert result.get(timeout=30, interval=0.1) == "already-done"
    assert status(client, upload_id) == doc
    assert {n: hashlib.sha256(fetch(client, d["url"])[1]).hexdigest()
            for n, d in doc["derivatives"].items()} == files_before


def test_png_with_alpha_and_webp_accepted(stack: Stack) -> None:
    client, _ = verified_client(stack)
    upload_id = upload_id_from(upload(client, samples.png_bytes(300, 200), "x.bin", "application/octet-stream"))
    doc = wait_finished(client, upload_id)
    assert doc["status"] == "done"
    assert (doc["derivatives"]["display"]["width"], doc["derivatives"]["display"]["height"]) == (300, 200)
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), "orange").save(buf, "WEBP")
    upload_id = upload_id_from(upload(client, buf.getvalue(), "y.webp", "image/webp"))
    assert wait_finished(client, upload_id)["status"] == "done"


def test_other_user_gets_404_and_delete_removes_files_and_rows(stack: Stack) -> None:
    owner, _ = verified_client(stack, "owner")
    other, _ = verified_client(stack, "other")
    upload_id = upload_id_from(upload(owner, samples.camera_jpeg(400, 300)))
    doc = wait_finished(owner, upload_id)
    assert doc["status"] == "done"
    urls = [d["url"] for d in doc["derivatives"].values()]
    with stack.app.app_context():
        keys = {d.storage_key for d in db.session.get(Upload, upload_id).derivatives}
    assert len(keys) == 3 and keys <= stored_keys(stack, "derivatives/")

    assert other.get(f"/uploads/{upload_id}").status_code == 404
    assert other.get(f"/uploads/{upload_id}", headers={"Accept": "application/json"}).get_json() == {
        "error": {"status": 404, "code": "not_found", "message": "There is nothing at this address."}}
    token = csrf_from(other.get("/uploads").data)
    assert other.post(f"/uploads/{upload_id}/delete", data={"csrf_token": token}).status_code == 404
    assert f'data-upload-id="{upload_id}"'.encode() not in other.get("/uploads").data
    assert keys <= stored_keys(stack, "derivatives/")

    # Deleting needs the CSRF token.
    assert owner.post(f"/uploads/{upload_id}/delete").status_code == 400
    token = csrf_from(owner.get(f"/uploads/{upload_id}").data)
    resp = owner.post(f"/uploads/{upload_id}/delete", data={"csrf_token": token})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/uploads")
    assert not keys & stored_keys(stack, "derivatives/")
    assert owner.get(f"/uploads/{upload_id}").status_code == 404
    assert all(fetch(owner, u)[0] in (403, 404) for u in urls)  # S3 answers 403 to a missing key
    with stack.app.app_context():
        assert db.session.get(Upload, upload_id) is None
        assert db.session.scalar(select(func.count()).select_from(UploadDerivative)
                                 .where(UploadDerivative.upload_id == upload_id)) == 0


def test_login_required(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/uploads")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    assert client.get("/uploads/1").status_code == 302


@pytest.mark.parametrize("json", [False, True], ids=["html", "json"])
def test_bad_files_refused_at_the_door(stack: Stack, json: bool) -> None:
    client, email = verified_client(stack, "bad")
    headers = {"Accept": "application/json"} if json else {}
    cases = [
        ("bomb.png", samples.png_bomb(), "image/png", "the limit is 50 megapixels"),
        ("wide.png", samples.png_bomb(12_001, 10), "image/png", "12,000 pixels on the longest side"),
        ("notes.jpg", samples.TEXT, "image/jpeg", "not a JPEG, PNG or WebP image"),
        ("drawing.svg", samples.SVG, "image/svg+xml", "SVG drawing"),
        ("empty.jpg", b"", "image/jpeg", "The file is empty."),
        ("IMG_1.heic", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64, "image/heic",
         "HEIC/AVIF images are not accepted"),
    ]
    originals = media_files(stack, "originals")
    for filename, data, ctype, message in cases:
        resp = upload(client, data, filename, ctype, **headers)
        assert resp.status_code == 400, (filename, resp.status_code)
        if json:
            err = resp.get_json()["error"]
            assert err["status"] == 400 and err["code"] == "invalid_upload"
            assert message in err["message"], (filename, err)
        else:
            text = resp.data.decode()
            assert message in text, (filename, text[:3000])
            assert 'id="upload-form"' in text and 'name="photo"' in text
    # No file chosen at all.
    token = csrf_from(client.get("/uploads").data)
    resp = client.post("/uploads", data={"csrf_token": token}, headers=headers)
    assert resp.status_code == 400 and b"Choose a photo to upload." in resp.data
    # Over MAX_CONTENT_LENGTH (20 MiB): a clear 413, nothing read or stored.
    big = samples.camera_jpeg(64, 64) + b"\0" * (20 * 1024 * 1024)
    resp = upload(client, big, "huge.jpg", **headers)
    assert resp.status_code == 413
    assert b"The file is larger than 20 MiB." in resp.data
    # CSRF is required.
    resp = client.post("/uploads", data={"photo": (io.BytesIO(samples.camera_jpeg()), "a.jpg")},
                       content_type="multipart/form-data", headers=headers)
    assert resp.status_code == 400

    assert upload_count(stack, email) == 0
    assert media_files(stack, "originals") <= originals | _in_flight(stack)

    # A good upload afterwards still completes.
    upload_id = upload_id_from(upload(client, samples.camera_jpeg(320, 240)))
    assert wait_finished(client, upload_id)["status"] == "done"


def _in_flight(stack: Stack) -> set[str]:
    """Originals of other users' uploads that may appear meanwhile (none in a serial run)."""
    with stack.app.app_context():
        return {Path(k).name for k in db.session.scalars(
            select(Upload.original_key).where(Upload.original_key.is_not(None)))}


def test_bad_pixels_fail_with_a_reason_and_the_worker_keeps_serving(stack: Stack) -> None:
    client, _ = verified_client(stack, "trunc")
    upload_id = upload_id_from(upload(client, samples.truncated_jpeg(), "cut.jpg"))
    doc = wait_finished(client, upload_id)
    assert doc["status"] == "failed", doc
    assert doc["error"] == "The file is damaged or incomplete (truncated JPEG)."
    assert doc["derivatives"] == {}
    page = client.get(f"/uploads/{upload_id}").data.decode()
    assert "truncated JPEG" in page and 'data-status="failed"' in page
    with stack.app.app_context():
        row = db.session.get(Upload, upload_id)
        assert row.original_key is None  # not kept: it may hold metadata
    # Failed is final: the task does not run it again.
    result = stack.celery.send_task("webapp.tasks.images.process_image", args=[upload_id])
    assert result.get(timeout=30, interval=0.1) == "already-failed"

    good = upload_id_from(upload(client, samples.camera_jpeg(500, 400)))
    assert wait_finished(client, good)["status"] == "done"


def test_processing_twice_gives_the_same_files(stack: Stack) -> None:
    """Idempotency of the worker's service, run in this process against the real
    database and media folder on a row no worker was told about."""
    _, email = verified_client(stack, "idem")
    app = stack.app
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        storage = services.get_store()
        key = f"originals/idem-test-{email[5:13]}.jpg"
        size = storage.save(key, io.BytesIO(samples.camera_jpeg(800, 600)))
        row = Upload(user_id=user.id, key="idemtest" + email[5:13], original_key=key,
                     original_format="jpeg", original_bytes=size, original_width=800,
                     original_height=600, published_at=services.utcnow())
        db.session.add(row)
        db.session.commit()
        upload_id = row.id
    app.config["KEEP_ORIGINALS"] = True
    try:
        with app.app_context():
            assert services.process(upload_id) == "done"
            first = {d.name: (d.storage_key, d.bytes, _sha(stack, d.storage_key))
                     for d in db.session.get(Upload, upload_id).derivatives}
            # As if the message were redelivered mid-way: back to processing.
            db.session.get(Upload, upload_id).status = "processing"
            db.session.commit()
            assert services.process(upload_id) == "done"
            db.session.expire_all()
            again = db.session.get(Upload, upload_id)
            second = {d.name: (d.storage_key, d.bytes, _sha(stack, d.storage_key))
                      for d in again.derivatives}
            assert first == second and len(second) == 3
            assert again.original_key == key and storage.exists(key)  # kept when configured
            assert services.process(upload_id) == "already-done"
    finally:
        app.config["KEEP_ORIGINALS"] = False
    with app.app_context():
        # A row started too often (a worker killed each time) ends as failed.
        stuck = Upload(user_id=db.session.get(Upload, upload_id).user_id, key="stuck" + email[5:13],
                       status="processing", original_key="originals/none.jpg",
                       original_format="jpeg", original_bytes=1, original_width=1,
                       original_height=1, attempts=app.config["UPLOAD_MAX_ATTEMPTS"])
        db.session.add(stuck)
        db.session.commit()
        assert services.process(stuck.id) == "failed"
        assert db.session.get(Upload, stuck.id).error == services.TOO_MANY_ATTEMPTS
    with app.app_context():
        # With KEEP_ORIGINALS off again, a repeated run cleans the original up.
        assert services.process(upload_id) == "already-done"
        assert db.session.get(Upload, upload_id).original_key is None
        assert not services.get_store().exists(key)


def _sha(stack: Stack, key: str) -> str:
    with stack.app.app_context(), tempfile.TemporaryDirectory() as tmp:
        services.get_store().fetch(key, Path(tmp) / "f")
        return hashlib.sha256((Path(tmp) / "f").read_bytes()).hexdigest()


def test_unpublished_upload_is_relayed(stack: Stack) -> None:
    """The broker is unreachable when the web publishes: the row stays pending,
    the relay publishes it later, and the worker completes it."""
    from webapp import config as config_module
    from webapp import create_app
    from tests.harness.wait import free_port

    client, email = verified_client(stack, "relay")
    dead = create_app({**config_module.from_env(stack.env), "TESTING": True,
                       "CELERY": {"broker_url": f"amqp://guest:guest@127.0.0.1:{free_port()}//",
                                  "broker_connection_timeout": 1}})
    with dead.test_request_context("/uploads", method="POST"):
        user = db.session.scalar(select(User).where(User.email == email))
        data = samples.camera_jpeg(300, 200)
        row = services.create_upload(user.id, FileStorage(io.BytesIO(data), "a.jpg"))
        upload_id = row.id
        db.engine.dispose()
    doc = status(client, upload_id)
    assert doc["status"] == "pending"
    with stack.app.app_context():
        assert db.session.get(Upload, upload_id).published_at is None
        assert services.relay_pending(older_than=3600) == 0  # too young to relay
        assert services.relay_pending(older_than=0) >= 1
        assert db.session.get(Upload, upload_id).published_at is not None
    assert wait_finished(client, upload_id)["status"] == "done"


def test_avatar_upload(stack: Stack) -> None:
    """An avatar set through the real ``/account`` page, whose form posts the file
    field ``photo`` to ``POST /account/avatar``."""
    client, email = verified_client(stack, "avatar")
    page = client.get("/account")
    assert page.status_code == 200 and b'name="photo"' in page.data
    assert b'action="/account/avatar"' in page.data
    token = csrf_from(page.data)

    def post(data: bytes, name: str = "me.jpg"):  # type: ignore[no-untyped-def]
        return client.post("/account/avatar", data={"photo": (io.BytesIO(data), name),
                                                    "csrf_token": token},
                           content_type="multipart/form-data")

    resp = post(samples.SVG, "me.svg")
    assert resp.status_code == 400 and b"SVG drawing" in resp.data
    assert b'action="/account/avatar"' in resp.data and b'name="photo"' in resp.data
    resp = post(samples.camera_jpeg(600, 400, orientation=6))
    assert resp.status_code == 303 and resp.headers["Location"] == "/account"

    with stack.app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        avatar = db.session.scalar(select(Upload).where(Upload.user_id == user.id))
        assert avatar.purpose == "avatar"
    assert wait_finished(client, avatar.id)["status"] == "done"
    with stack.app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        assert user.avatar_upload_id == avatar.id
    html = client.get("/account").data.decode()
    url = status(client, avatar.id)["derivatives"]["avatar"]["url"]
    assert f'src="{html_lib.escape(url)}"' in html and 'data-testid="avatar-img"' in html
    assert fetch(client, url)[0] == 200

    # Deleting the upload clears the avatar (ON DELETE SET NULL).
    token = csrf_from(client.get("/uploads").data)
    assert client.post(f"/uploads/{avatar.id}/delete", data={"csrf_token": token}).status_code == 303
    with stack.app.app_context():
        assert db.session.scalar(select(User.avatar_upload_id).where(User.email == email)) is None


def test_failed_insert_leaves_no_file_and_failed_store_no_row(stack: Stack) -> None:
    """Nothing half-written: the insert fails (no such user: foreign key) → the
    stored original is removed; the store fails → no row, and the page says so."""
    from sqlalchemy.exc import IntegrityError

    before = media_files(stack, "originals")
    with stack.app.test_request_context("/uploads", method="POST"):
        count = db.session.scalar(select(func.count()).select_from(Upload))
        with pytest.raises(IntegrityError):
            services.create_upload(2_000_000_000, FileStorage(io.BytesIO(samples.camera_jpeg()), "a.jpg"))
        assert media_files(stack, "originals") == before
        assert db.session.scalar(select(func.count()).select_from(Upload)) == count

    # The store fails: a local folder that is a file, a bucket that does not exist.
    client, email = verified_client(stack, "store")
    blocker = stack.tmp / "not-a-folder"
    blocker.write_bytes(b"")
    url = stack.app.config["STORAGE_URL"]
    broken = f"file://{blocker}" if url.startswith("file:") else "s3://no-such-bucket-onboard"
    stack.app.config["STORAGE_URL"] = broken
    try:
        with stack.app.test_request_context("/uploads", method="POST"):
            user_id = db.session.scalar(select(User.id).where(User.email == email))
            with pytest.raises(StoreUnavailable):
                services.create_upload(user_id, FileStorage(io.BytesIO(samples.camera_jpeg()), "a.jpg"))
        # Through the page: a clear error (not 503: the site is up), nothing stored.
        resp = upload(client, samples.camera_jpeg())
        assert resp.status_code == 502 and b"Photos cannot be stored right now" in resp.data
        resp = upload(client, samples.camera_jpeg(), Accept="application/json")
        assert resp.status_code == 502 and resp.get_json()["error"]["code"] == "store_unavailable"
    finally:
        stack.app.config["STORAGE_URL"] = url
    assert upload_count(stack, email) == 0
    assert media_files(stack, "originals") == before


def test_uploads_are_rate_limited_per_user(make_app) -> None:  # type: ignore[no-untyped-def]
    """Flask-Limiter on POST /uploads, keyed by user (pure web: the fast app)."""
    from tests.harness.fastapp import add_verified_user
    from tests.harness.forms import PASSWORD, login, new_email

    app = make_app(RATELIMIT_ENABLED=True, UPLOAD_RATE_LIMIT="2 per minute")
    email = new_email("limit")
    add_verified_user(app, email, PASSWORD)
    client = app.test_client()
    assert login(client, email).status_code == 303
    codes = [upload(client, b"").status_code for _ in range(3)]
    assert codes == [400, 400, 429]
    assert client.get("/uploads").status_code == 200  # GET is not limited


def test_one_upload_limit_across_uploads_and_avatar(stack: Stack) -> None:
    """``UPLOAD_RATE_LIMIT`` (default 20 per minute) is one count per user over every
    route that takes a file: the 21st upload, whichever route, answers 429 and
    stores and publishes nothing; ``POST /account`` takes no photo at all."""
    from tests.account_helpers import own_app
    from tests.conftest import login

    _, email = verified_client(stack, "shared-limit")
    photo = samples.png_bytes(40, 30)
    with own_app(stack, RATELIMIT_ENABLED=True) as app:
        assert app.config["UPLOAD_RATE_LIMIT"].startswith("20 per minute")
        client = app.test_client()
        assert login(client, email).status_code == 303

        # The account form's own route takes no file: refused, nothing stored.
        token = csrf_from(client.get("/account").data)
        resp = client.post("/account", data={"photo": (io.BytesIO(photo), "me.png"),
                                             "csrf_token": token},
                           content_type="multipart/form-data")
        assert resp.status_code == 400
        assert upload_count(stack, email) == 0

        codes = [upload(client, photo, "p.png", "image/png").status_code for _ in range(10)]
        codes += [avatar_upload(client, photo).status_code for _ in range(10)]
        assert codes == [303] * 20
        assert avatar_upload(client, photo).status_code == 429
        assert upload(client, photo, "p.png", "image/png").status_code == 429
        assert client.get("/uploads").status_code == 200  # GET is not limited
    with stack.app.app_context():
        rows = db.session.scalars(select(Upload).join(User, User.id == Upload.user_id)
                                  .where(User.email == email)).all()
        # 20 rows, each published once; the two refused uploads left nothing.
        assert len(rows) == 20 and all(r.published_at is not None for r in rows)
        assert sorted(r.purpose for r in rows) == ["avatar"] * 10 + ["photo"] * 10


def test_delete_before_the_worker_runs(stack: Stack) -> None:
    """Deleted while still queued: the task finds no row and writes nothing."""
    client, _ = verified_client(stack, "early")
    paused = stack.celery.control.cancel_consumer("images", reply=True, timeout=5)
    assert paused
    try:
        upload_id = upload_id_from(upload(client, samples.camera_jpeg(400, 300)))
        assert status(client, upload_id)["status"] == "pending"
        with stack.app.app_context():
            name_token = db.session.get(Upload, upload_id).key
        token = csrf_from(client.get(f"/uploads/{upload_id}").data)
        assert client.post(f"/uploads/{upload_id}/delete", data={"csrf_token": token}).status_code == 303
    finally:
        stack.celery.control.add_consumer("images", reply=True, timeout=5)
    result = stack.celery.send_task("webapp.tasks.images.process_image", args=[upload_id])
    assert result.get(timeout=30, interval=0.1) == "missing"
    # Nothing of this upload was written (other tests' uploads may still be finishing).
    assert not [k for k in stored_keys(stack, "derivatives/") if name_token in k]
    assert client.get(f"/uploads/{upload_id}").status_code == 404


def test_interlaced_png_refused_by_decode_memory_bound(stack: Stack, tmp_path: Path) -> None:
    """An interlaced 16-bit RGBA 7000x7000 PNG (~380 KB, 392 MB to decode) is refused
    at the door with the reason and nothing stored; one that got past a web with a
    laxer limit ends ``failed`` on the worker with the same reason."""
    from tests.imaging_samples import zero_png

    client, email = verified_client(stack, "adam7")
    data = zero_png(tmp_path / "adam7.png", 7000, 7000).read_bytes()
    resp = upload(client, data, "big.png", "image/png", Accept="application/json")
    assert resp.status_code == 400
    assert "interlaced PNG would need 392 MB" in resp.get_json()["error"]["message"]
    assert upload_count(stack, email) == 0

    limit = stack.app.config["UPLOAD_MAX_DECODE_BYTES"]
    stack.app.config["UPLOAD_MAX_DECODE_BYTES"] = 10**12
    try:
        upload_id = upload_id_from(upload(client, data, "big.png", "image/png"))
    finally:
        stack.app.config["UPLOAD_MAX_DECODE_BYTES"] = limit
    doc = wait_finished(client, upload_id)
    assert doc["status"] == "failed" and "interlaced PNG would need 392 MB" in doc["error"], doc
