"""``GET /login`` p50 with and without 64 concurrent ``/healthz`` callers.

A load balancer, an orchestrator and monitoring all poll ``/healthz``; those
probes must not take the site's threads away from people. Everything runs over
real HTTP against ``gunicorn -w 2 -k gthread --threads 8 wsgi:app`` with a real
worker, RabbitMQ vhost and database:

1. baseline: ``GET /login`` one request at a time, nothing else running;
2. the same while 64 client threads call ``/healthz`` back to back (its cache at
   the default ``HEALTH_CACHE_SECONDS``);
3. control: the same 64 threads fetching ``/static/site.css`` instead, a request
   that does no work of its own.

64 callers without pause keep the 2 cores busy whatever they fetch, so ``/login``
queues behind them in both 2 and 3; phase 3 is that queueing alone. Figures:
p50/p99 of ``/login`` in each phase, ratios to the idle baseline and to the
control, and answers per second. Target: ``/login`` p50 under the ``/healthz``
callers within 2× the p50 under the control callers (a health probe costs about
what a static file does). Measured (``--quick``, SQLite, 2 shared cores): 42 ms
under ``/healthz`` callers against 54 ms under static-file callers, 2 ms idle; a
``/healthz`` that runs its checks on every call and waits out the whole 1 s
worker ping holds a server thread per call and gave 7.2 s (118× the control).

Run: ``python bench/healthz_load.py [--quick] [--db sqlite|postgresql]``.
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import Report, header, parser, percentile  # noqa: E402
from bench.stacks import start_stack, stop_stack  # noqa: E402
from bench.web import Gunicorn  # noqa: E402

CALLERS = 64


def login_times(url: str, n: int) -> list[float]:
    """``n`` sequential ``GET /login`` on one keep-alive session; seconds each."""
    import requests

    times = []
    with requests.Session() as s:
        s.get(url + "/login", timeout=60)  # connection and worker warm-up
        for _ in range(n):
            t0 = time.perf_counter()
            resp = s.get(url + "/login", timeout=60)
            times.append(time.perf_counter() - t0)
            if resp.status_code != 200:
                raise RuntimeError(f"/login answered {resp.status_code}")
    return times


class Callers:
    """``CALLERS`` threads calling ``path`` back to back until :meth:`stop`."""

    def __init__(self, url: str, path: str, callers: int = CALLERS) -> None:
        self.url, self.path, self.stopped = url, path, threading.Event()
        self.answers = 0
        self.codes: dict[int, int] = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(callers)]

    def _run(self) -> None:
        import requests

        with requests.Session() as s:
            while not self.stopped.is_set():
                try:
                    code = s.get(self.url + self.path, timeout=60).status_code
                except requests.RequestException:
                    code = 0
                with self.lock:
                    self.answers += 1
                    self.codes[code] = self.codes.get(code, 0) + 1

    def start(self) -> Callers:
        self.started = time.monotonic()
        for t in self.threads:
            t.start()
        time.sleep(1.0)  # let every caller be in flight before measuring
        return self

    def stop(self) -> float:
        """Stop the callers; returns their answers per second."""
        self.stopped.set()
        elapsed = time.monotonic() - self.started
        for t in self.threads:
            t.join(90)
        return self.answers / elapsed


def measure(url: str, path: str, n: int) -> tuple[list[float], float, dict[int, int]]:
    """``/login`` times while 64 callers fetch ``path``; their rate and status codes."""
    callers = Callers(url, path).start()
    try:
        times = login_times(url, n)
    finally:
        rate = callers.stop()
    return times, rate, callers.codes


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    header("/login under /healthz load", args)
    report = Report("healthz_load")
    n = 20 if args.quick else 200
    stack = start_stack(args.db)
    web: Gunicorn | None = None
    try:
        web = Gunicorn("wsgi:app", stack.env, stack.tmp / "gunicorn.log", ready_path="/login")
        report.process(f"{web.describe()}; one celery worker (-c 2); {CALLERS} /healthz "
                       f"client threads in this process; database {args.db}; RabbitMQ vhost "
                       f"{stack.name}")
        idle = login_times(web.url, n)
        loaded, rate, codes = measure(web.url, "/healthz", n)
        control, rate_static, codes_static = measure(web.url, "/static/site.css", n)

        i50, l50, c50 = (percentile(t, 50) * 1000 for t in (idle, loaded, control))
        report.figure("/login p50 idle ms", i50, "ms")
        report.figure("/login p50 with 64 /healthz callers ms", l50, "ms")
        report.figure("/login p99 with 64 /healthz callers ms", percentile(loaded, 99) * 1000, "ms")
        report.figure("/login p50 with 64 static-file callers ms", c50, "ms")
        report.figure("/login p50 healthz load / idle", l50 / i50, "x")
        report.figure("/login p50 healthz load / static load", l50 / c50, "x")
        report.figure("/healthz answers/s", rate, "/s")
        report.figure("static file answers/s", rate_static, "/s")
        report.note(f"status codes: /healthz {codes}; static {codes_static}")
        report.target("/login p50 under 64 /healthz callers <= 2x under 64 static-file callers",
                      l50 <= 2 * c50 and set(codes) == {200},
                      f"{l50:.1f} ms vs {c50:.1f} ms ({l50 / c50:.2f}x); idle {i50:.1f} ms; "
                      f"/healthz codes {codes}")
    finally:
        if web is not None:
            web.stop()
        stop_stack(stack)
    report.emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
