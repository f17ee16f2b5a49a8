"""Sign-up latency: Onboard's ``POST /register`` against the synchronous
tutorial view, at 1, 10 and 20 concurrent clients.

Both apps run under ``gunicorn -w 2 -k gthread --threads 8`` with the stack's
environment (captcha and rate limits off); the SMTP server for the synchronous
view answers DATA after 1 s. Each client GETs the form (CSRF cookie + token)
and POSTs; only the POST is timed. The argon2id hash alone
(:func:`webapp.auth.passwords.hash_password`) is the floor.

Targets: p99 ≤ hash + 10 ms; Onboard ≥ 50× faster (p50) than the synchronous view.

Run: ``python bench/signup_latency.py [--quick] [--db sqlite|postgresql]``.
"""
from __future__ import annotations

import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import self_cpu, tree_cpu  # noqa: E402
from bench.report import Report, header, median, parser, percentile  # noqa: E402
from bench.sinks import slow_sink  # noqa: E402
from bench.stacks import start_stack, stop_stack  # noqa: E402
from bench.web import Gunicorn, sign_up  # noqa: E402

LEVELS = (1, 10, 20)


def run_level(base_url: str, path: str, clients: int, total: int) -> tuple[list[float], int]:
    """``clients`` threads sign up until ``total`` POSTs are done.

    Returns ``(post_seconds, errors)``; an answer other than 303 is an error and
    its time is not kept.
    """
    times: list[float] = []
    errors = 0
    lock = threading.Lock()
    remaining = [total]

    def client() -> None:
        nonlocal errors
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            try:
                seconds, status, _ = sign_up(base_url, f"b-{uuid.uuid4().hex[:12]}@example.com", path)
            except Exception:
                status, seconds = 0, 0.0
            with lock:
                if status == 303:
                    times.append(seconds)
                else:
                    errors += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, errors


def hash_time(n: int) -> float:
    """Median seconds of one :func:`hash_password` in this process."""
    from webapp.auth.passwords import hash_password

    hash_password("warm-up")
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        hash_password("correct horse battery")
        samples.append(time.perf_counter() - t0)
    return median(samples)


def publish_time(stack, n: int) -> float:  # type: ignore[no-untyped-def]
    """Median seconds of one ``send_task`` as the web publishes (publisher
    confirms, persistent message) to a queue nobody consumes (``bench_idle``,
    dropped with the vhost)."""
    samples = []
    with stack.app.app_context():
        for _ in range(n + 2):
            t0 = time.perf_counter()
            stack.celery.send_task("bench.bench_tasks.noop", queue="bench_idle", retry=False)
            samples.append(time.perf_counter() - t0)
    return median(samples[2:])


def ratelimit_honoured(stack) -> bool:  # type: ignore[no-untyped-def]
    """Whether an app built from the stack's environment (``RATELIMIT_ENABLED=false``)
    has Flask-Limiter switched off (``limiter.enabled`` is what Flask-Limiter checks
    before every limited view)."""
    from webapp import config as config_module
    from webapp import create_app
    from webapp.extensions import limiter

    app = create_app({**config_module.from_env(stack.env), "TESTING": True})
    return app.config["RATELIMIT_ENABLED"] is False and limiter.enabled is False


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    header("Sign-up latency", args)
    report = Report("signup_latency")
    onboard_n = {1: 3, 10: 10, 20: 20} if args.quick else {1: 40, 10: 150, 20: 240}
    sync_n = {1: 1, 10: 10, 20: 20} if args.quick else {1: 5, 10: 20, 20: 40}

    stack = start_stack(args.db)
    slow_smtp = slow_sink(1.0)
    env = {**stack.env, "MAIL_PORT": str(slow_smtp.port)}
    servers: list[Gunicorn] = []
    try:
        onboard = Gunicorn("wsgi:app", env, stack.tmp / "gunicorn-onboard.log")
        servers.append(onboard)
        sync = Gunicorn("bench.sync_app:app", env, stack.tmp / "gunicorn-sync.log",
                        ready_path="/sync/register")
        servers.append(sync)
        report.process(f"{onboard.describe()} (Onboard) and {sync.describe()} (synchronous view)")
        report.process("celery worker -c 2 prefork -E (Stack default; sends the Onboard mails); "
                       "Flower off")
        report.process(f"SMTP sink for the synchronous view: aiosmtpd, 1 s in handle_DATA; "
                       f"database {args.db}; RabbitMQ vhost {stack.name}")
        limits_off = ratelimit_honoured(stack)
        report.note("REGISTRATION_CAPTCHA=false; RATELIMIT_ENABLED=false "
                    + ("is honoured (Flask-Limiter reads it: limiter.enabled is False)" if limits_off
                       else "is NOT honoured by webapp: limits stay on"))

        h = hash_time(5 if args.quick else 20)
        report.figure("argon2id hash_password alone, median ms", h * 1000, "ms")
        report.figure("send_task with publisher confirm, median ms",
                      publish_time(stack, 5 if args.quick else 30) * 1000, "ms")

        # Warm both apps (imports, connection pools) before measuring.
        run_level(onboard.url, "/register", 2, 4)
        run_level(sync.url, "/sync/register", 2, 2)

        worker_pid = stack.workers[0].pid
        for clients in LEVELS:
            cpu0 = (tree_cpu(onboard.proc.pid), tree_cpu(worker_pid), self_cpu())
            t0 = time.perf_counter()
            times, errors = run_level(onboard.url, "/register", clients, onboard_n[clients])
            wall = time.perf_counter() - t0
            cpu1 = (tree_cpu(onboard.proc.pid), tree_cpu(worker_pid), self_cpu())
            stimes, serrors = run_level(sync.url, "/sync/register", clients, sync_n[clients])
            p50, p99 = percentile(times, 50) * 1000, percentile(times, 99) * 1000
            s50, s99 = percentile(stimes, 50) * 1000, percentile(stimes, 99) * 1000
            print(f" {clients} client(s): Onboard n={len(times)} errors={errors}; "
                  f"synchronous n={len(stimes)} errors={serrors}", flush=True)
            report.figure(f"c{clients} onboard p50 ms", p50, "ms")
            report.figure(f"c{clients} onboard p99 ms", p99, "ms")
            report.figure(f"c{clients} sync p50 ms", s50, "ms")
            report.figure(f"c{clients} sync p99 ms", s99, "ms")
            report.figure(f"c{clients} onboard p50 / hash", p50 / (h * 1000), "x")
            report.figure(f"c{clients} onboard sign-ups/s (GET+POST)", len(times) / wall, "/s")
            n = max(len(times), 1)
            for i, who in enumerate(("web (gunicorn)", "worker (mail)", "client + SMTP sink")):
                report.figure(f"c{clients} CPU ms per sign-up, {who}",
                              (cpu1[i] - cpu0[i]) * 1000 / n, "ms")
            report.figure(f"c{clients} speed-up sync/onboard p50", s50 / p50, "x")
            report.figure(f"c{clients} speed-up sync/onboard p99", s99 / p99, "x")
            report.figure(f"c{clients} errors", errors + serrors)
            report.target(f"{clients} client(s): p99 <= hash + 10 ms", p99 <= h * 1000 + 10,
                          f"p99 {p99:.1f} ms vs hash {h * 1000:.1f} ms + 10")
            report.target(f"{clients} client(s): >= 50x faster than synchronous (p50)",
                          s50 / p50 >= 50, f"{s50:.0f} ms / {p50:.1f} ms = {s50 / p50:.1f}x")
        if any(not t["pass"] for t in report.targets):
            report.note("p50 of a sign-up cannot go below one argon2id hash (19 MiB, t=2), and "
                        "the synchronous view costs hash + 1 s of SMTP, so the speed-up is "
                        "bounded by (1000 + hash) / hash; with several clients the 2 cores "
                        "queue argon2 hashes, so p99 grows with concurrency. The CPU ms per "
                        "sign-up figures show where the 2 cores go (the web's share includes "
                        "the GET of the form; the client and SMTP sink run in this process).")
    finally:
        for server in servers:
            server.stop()
        slow_smtp.stop()
        stop_stack(stack)
    report.emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
