"""``POST /uploads`` time for a 7 MB photo against the raw body-read time.

Both run under ``gunicorn -w 2 -k gthread --threads 8`` with the stack's
environment: the real app (a logged-in user, the CSRF token from ``GET /uploads``,
multipart field ``photo``) and :mod:`bench.body_read_app`, which only reads the
body. The same pre-encoded multipart body goes to both, one request at a time,
alternating. No worker runs: the ``images`` tasks wait in RabbitMQ, so image
processing does not compete with the web for the 2 cores (this measures the
route, not the pipeline).

Target: upload p50 ≤ body-read p50 + 50 ms.

If the app has no ``/uploads`` route (the ``uploads`` branch not merged), the
script says so, prints the body-read figures only and exits 0 with
``"skipped"`` set in its JSON.

Run: ``python bench/upload_time.py [--quick] [--db sqlite|postgresql]``.
"""
from __future__ import annotations

import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import Report, header, parser, percentile  # noqa: E402
from bench.stacks import start_stack, stop_stack  # noqa: E402
from bench.web import PASSWORD, Gunicorn, csrf_from  # noqa: E402
from tests.harness.stack import Stack  # noqa: E402

TARGET_BYTES = 7 * 1000 * 1000


def make_photo(path: Path, target: int = TARGET_BYTES) -> bytes:
    """A JPEG of about ``target`` bytes (random noise at quality 95 barely
    compresses, so its size follows the pixel count). Cached at ``path``."""
    import random

    from PIL import Image

    if path.exists():
        return path.read_bytes()
    rng = random.Random(7)
    width, height = 2400, 1800
    for _ in range(6):
        img = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
        out = io.BytesIO()
        img.save(out, "JPEG", quality=95)
        data = out.getvalue()
        if abs(len(data) - target) < target * 0.05:
            break
        scale = (target / len(data)) ** 0.5
        width, height = int(width * scale), int(height * scale)
    path.write_bytes(data)
    return data


def verified_user(stack: Stack, email: str) -> None:
    """Insert a verified account (the upload page needs a logged-in user)."""
    from webapp.auth.passwords import hash_password
    from webapp.extensions import db
    from webapp.models import User, utcnow

    with stack.app.app_context():
        db.session.add(User(email=email, password_hash=hash_password(PASSWORD),
                            verified_at=utcnow()))
        db.session.commit()


def main() -> int:
    import requests
    from urllib3 import encode_multipart_formdata

    args = parser(__doc__.splitlines()[0]).parse_args()
    header("Upload POST time", args)
    report = Report("upload_time")
    n = 3 if args.quick else 25
    stack = start_stack(args.db, worker=False)
    servers: list[Gunicorn] = []
    try:
        photo = make_photo(stack.tmp / "photo.jpg")
        web = Gunicorn("wsgi:app", stack.env, stack.tmp / "gunicorn.log")
        servers.append(web)
        raw = Gunicorn("bench.body_read_app:app", stack.env, stack.tmp / "gunicorn-raw.log",
                       ready_path="/")
        servers.append(raw)
        report.process(f"{web.describe()} (Onboard) and {raw.describe()} (body read only); "
                       f"no celery worker (images tasks wait in the queue); Flower off; "
                       f"database {args.db}; RabbitMQ vhost {stack.name}")
        report.figure("photo bytes", len(photo), "B")

        email = "uploader@example.com"
        verified_user(stack, email)
        s = requests.Session()
        token = csrf_from(s.get(web.url + "/login", timeout=30).text)
        resp = s.post(web.url + "/login", data={"email": email, "password": PASSWORD,
                                                  "csrf_token": token},
                      allow_redirects=False, timeout=30)
        if resp.status_code != 303:
            raise RuntimeError(f"log-in answered {resp.status_code}")
        page = s.get(web.url + "/uploads", timeout=30)
        has_route = page.status_code == 200
        token = csrf_from(page.text) if has_route else "none"
        body, content_type = encode_multipart_formdata(
            {"csrf_token": token, "photo": ("photo.jpg", photo, "image/jpeg")})
        headers = {"Content-Type": content_type}

        def post(url: str) -> tuple[float, int]:
            t0 = time.perf_counter()
            r = s.post(url, data=body, headers=headers, allow_redirects=False, timeout=60)
            return time.perf_counter() - t0, r.status_code

        post(raw.url + "/")  # warm-up
        if has_route:
            post(web.url + "/uploads")
        raw_times, up_times, errors = [], [], 0
        for _ in range(n):
            seconds, status = post(raw.url + "/")
            raw_times.append(seconds)
            if has_route:
                seconds, status = post(web.url + "/uploads")
                if status == 303:
                    up_times.append(seconds)
                else:
                    errors += 1
        r50 = percentile(raw_times, 50) * 1000
        report.figure("body read only p50 ms", r50, "ms")
        report.figure("body read only p99 ms", percentile(raw_times, 99) * 1000, "ms")
        report.figure("body read MB/s (p50)", len(body) / 1e6 / (r50 / 1000), "MB/s")
        if not has_route:
            report.skipped = (f"GET /uploads answered {page.status_code}: this branch has no "
                              "upload route (merge the 'uploads' branch to measure it)")
            print(f"  SKIP: {report.skipped}", flush=True)
        else:
            u50 = percentile(up_times, 50) * 1000
            report.figure("POST /uploads p50 ms", u50, "ms")
            report.figure("POST /uploads p99 ms", percentile(up_times, 99) * 1000, "ms")
            report.figure("POST /uploads errors", errors)
            report.figure("upload p50 - body read p50 ms", u50 - r50, "ms")
            report.figure("upload p50 / body read p50", u50 / r50, "x")
            report.target("upload p50 <= body read p50 + 50 ms", u50 <= r50 + 50 and errors == 0,
                          f"{u50:.1f} ms vs {r50:.1f} ms + 50; {errors} errors")
    finally:
        for server in servers:
            server.stop()
        stop_stack(stack)
    report.emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
