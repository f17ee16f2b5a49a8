"""Flower as the ``web`` of a second app (``Procfile.flower``), for platforms that
route HTTP to ``web`` only: started exactly as the platform starts it (``bash -c``
with ``PORT`` set), on the same broker, behind its basic auth, under ``/flower``."""
from __future__ import annotations

import os
from pathlib import Path

import requests

from tests.harness.paths import PYTHON
from tests.harness.procs import Proc
from tests.harness.stack import Stack
from tests.harness.wait import free_port, wait_until
from tests.ops.test_procfiles import procfile_line


def test_flower_as_the_web_of_a_second_app(sqlite_stack: Stack, tmp_path: Path) -> None:
    port = free_port()
    env = {**sqlite_stack.env, "PORT": str(port), "FLOWER_BASIC_AUTH": "ops:s3cret-pass-2",
           "FLOWER_DB": str(tmp_path / "flower"),
           "PATH": f"{Path(PYTHON).parent}:{os.environ['PATH']}"}  # celery from our venv
    proc = Proc(["bash", "-c", procfile_line("Procfile.flower", "web")], tmp_path / "flower.log",
                env)
    base = f"http://127.0.0.1:{port}/flower"

    def get(path: str, auth: tuple[str, str] | None = None) -> requests.Response | None:
        try:
            return requests.get(base + path, auth=auth, timeout=2)
        except requests.ConnectionError:
            proc.check_alive("flower")
            return None

    try:
        wait_until(lambda: get("/healthcheck"), 60, interval=0.2, what="flower up on $PORT")
        assert get("/").status_code == 401
        assert get("/api/workers", ("ops", "wrong")).status_code == 401
        auth = ("ops", "s3cret-pass-2")
        page = get("/", auth)
        assert page.status_code == 200 and "/flower/static/" in page.text  # links keep the prefix
        workers = wait_until(lambda: (r := get("/api/workers?refresh=1", auth)) is not None
                             and r.status_code == 200 and r.json(), 30, interval=0.5,
                             what="worker listed")
        assert any(name.startswith("w0-" + sqlite_stack.name) for name in workers)
        # Bound to every address (the platform's router connects from outside).
        assert f"0.0.0.0:{port}" in (tmp_path / "flower.log").read_text()
    finally:
        proc.stop()
