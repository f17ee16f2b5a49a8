"""The web side of the benchmarks: gunicorn on a free port and a browser-like
HTTP client (requests)."""
from __future__ import annotations

import time
from pathlib import Path

from tests.harness.forms import PASSWORD, csrf_from
from tests.harness.paths import GUNICORN
from tests.harness.procs import Proc
from tests.harness.wait import free_port, wait_until

__all__ = ["PASSWORD", "Gunicorn", "csrf_from", "sign_up"]


class Gunicorn:
    """``gunicorn -w 2 -k gthread --threads 8 <app>`` on a free loopback port.

    Args:
        app: the WSGI target, e.g. ``"wsgi:app"``.
        env: the full environment; log: output file.
        ready_path: a GET that answers once the app is up (also used to warm up).

    Raises:
        RuntimeError: gunicorn exited; TimeoutError: no answer within 60 s.
    """

    def __init__(self, app: str, env: dict[str, str], log: Path, workers: int = 2,
                 threads: int = 8, ready_path: str = "/register") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app, self.workers, self.threads = app, workers, threads
        self.proc = Proc([GUNICORN, "-w", str(workers), "-k", "gthread", "--threads", str(threads),
                          "-b", f"127.0.0.1:{self.port}", "--timeout", "120", app], log, env)
        wait_until(lambda: not self.proc.alive() or self._answers(ready_path), 60,
                   interval=0.2, what=f"gunicorn {app}")
        self.proc.check_alive(f"gunicorn {app}")
        # Both workers import the app; warm each one up so the first measured
        # request does not pay for imports.
        for _ in range(4 * workers):
            self._answers(ready_path)

    def _answers(self, path: str) -> bool:
        import requests

        try:
            requests.get(self.url + path, timeout=5)
            return True
        except requests.RequestException:
            return False

    def describe(self) -> str:
        return f"gunicorn {self.app} -w {self.workers} -k gthread --threads {self.threads}"

    def stop(self) -> None:
        """SIGTERM (gunicorn's graceful stop), then SIGKILL the group."""
        self.proc.stop()


def sign_up(base_url: str, email: str, path: str = "/register") -> tuple[float, int, float]:
    """One sign-up as a browser does it: GET the form (CSRF cookie and token),
    then POST. Returns ``(post_seconds, status, answered_at)`` where
    ``answered_at`` is ``time.monotonic()`` when the POST's answer arrived."""
    import requests

    with requests.Session() as s:
        page = s.get(base_url + path, timeout=30)
        token = csrf_from(page.text)
        data = {"email": email, "password": PASSWORD, "password_confirm": PASSWORD,
                "csrf_token": token}
        t0 = time.perf_counter()
        resp = s.post(base_url + path, data=data, allow_redirects=False, timeout=60)
        t1 = time.perf_counter()
        return t1 - t0, resp.status_code, time.monotonic()
