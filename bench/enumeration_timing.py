"""Account enumeration by timing: ``POST /password/forgot`` and ``POST
/verify/resend`` for addresses that have an account against addresses that
do not, over real HTTP.

Onboard runs under ``gunicorn -w 2 -k gthread --threads 8`` with a real worker,
RabbitMQ, SMTP sink and database (captcha and rate limits off). Known addresses
are distinct accounts (verified ones for forgot, unverified ones for resend), so
every known request is one the worker turns into a mail, as an attacker's first
probe would be. Requests alternate known/unknown from one client so drift on
the shared machine hits both alike; only the POST is timed.

Figures: p50 and p90 in ms of each case and the ratio known/unknown (1.0 means
the answer time does not tell them apart). The baseline is the unknown case of
the same run. Target: p50 ratio within 0.8-1.25 on both routes.

Run: ``python bench/enumeration_timing.py [--quick] [--db sqlite|postgresql]``.
"""
from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import Report, header, parser, percentile  # noqa: E402
from bench.stacks import start_stack, stop_stack  # noqa: E402
from bench.web import Gunicorn, csrf_from  # noqa: E402

ROUTES = (("forgot", "/password/forgot", "/password/forgot", True),
          ("resend", "/verify/resend", "/register/done", False))


def make_accounts(stack, n: int, verified: bool) -> list[str]:  # type: ignore[no-untyped-def]
    """``n`` accounts written straight to the database; returns their addresses."""
    from webapp.auth.passwords import hash_password
    from webapp.extensions import db
    from webapp.models import User, utcnow

    pw_hash = hash_password("correct horse battery")
    emails = [f"known-{uuid.uuid4().hex[:12]}@example.com" for _ in range(n)]
    with stack.app.app_context():
        for email in emails:
            db.session.add(User(email=email, password_hash=pw_hash,
                                verified_at=utcnow() if verified else None))
        db.session.commit()
    return emails


def measure(base: str, path: str, form: str, known: list[str]) -> tuple[list[float], list[float], int]:
    """Alternate a known and an unknown address for each entry of ``known``.

    Returns ``(known_seconds, unknown_seconds, errors)``; an answer other than
    200 is an error and its time is not kept.
    """
    import requests

    k_times: list[float] = []
    u_times: list[float] = []
    errors = 0
    with requests.Session() as s:
        token = csrf_from(s.get(base + form, timeout=30).text)
        for i, address in enumerate(known):
            pair = [(address, k_times), (f"nobody-{uuid.uuid4().hex[:12]}@example.com", u_times)]
            if i % 2:
                pair.reverse()  # neither case always goes first
            for email, times in pair:
                t0 = time.perf_counter()
                resp = s.post(base + path, data={"email": email, "csrf_token": token}, timeout=60)
                elapsed = time.perf_counter() - t0
                if resp.status_code == 200:
                    times.append(elapsed)
                else:
                    errors += 1
    return k_times, u_times, errors


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    header("Account enumeration by timing", args)
    report = Report("enumeration_timing")
    n = 10 if args.quick else 200
    stack = start_stack(args.db)
    web = None
    try:
        web = Gunicorn("wsgi:app", stack.env, stack.tmp / "gunicorn.log")
        report.process(f"{web.describe()}; celery worker -c 2 prefork -E (Stack default); "
                       f"aiosmtpd sink; database {args.db}; RabbitMQ vhost {stack.name}")
        measure(web.url, "/password/forgot", "/password/forgot",
                make_accounts(stack, 4, True))  # warm-up: imports, pools, broker channel
        for name, path, form, verified in ROUTES:
            k, u, errors = measure(web.url, path, form, make_accounts(stack, n, verified))
            k50, k90 = percentile(k, 50) * 1000, percentile(k, 90) * 1000
            u50, u90 = percentile(u, 50) * 1000, percentile(u, 90) * 1000
            report.figure(f"{name} known p50 ms", k50, "ms")
            report.figure(f"{name} known p90 ms", k90, "ms")
            report.figure(f"{name} unknown p50 ms", u50, "ms")
            report.figure(f"{name} unknown p90 ms", u90, "ms")
            report.figure(f"{name} p50 ratio known/unknown", k50 / u50, "x")
            report.figure(f"{name} p90 ratio known/unknown", k90 / u90, "x")
            report.figure(f"{name} errors", errors)
            report.target(f"{name}: known/unknown p50 within 0.8-1.25", 0.8 <= k50 / u50 <= 1.25,
                          f"{k50:.1f} ms vs {u50:.1f} ms over {len(k)}+{len(u)} requests")
    finally:
        if web is not None:
            web.stop()
        stop_stack(stack)
    report.emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
