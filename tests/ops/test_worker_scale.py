"""``worker`` scaled to two on one host (``honcho start -c worker=2``, two
systemd units): both processes started from the Procfile line must stay up, so
each needs its own node name (two ``celery@<host>`` fight over the exclusive
``celery@<host>.celery.pidbox`` queue and the second exits with RESOURCE_LOCKED).
"""
from __future__ import annotations

import os
from pathlib import Path

from tests.harness.paths import PYTHON
from tests.harness.procs import Proc
from tests.harness.stack import Stack
from tests.harness.wait import wait_until
from tests.ops.test_procfiles import procfile_line


def test_two_workers_from_the_procfile_line_on_one_host(sqlite_stack: Stack,
                                                        tmp_path: Path) -> None:
    env = {**sqlite_stack.env, "PATH": f"{Path(PYTHON).parent}:{os.environ['PATH']}"}
    env.pop("DYNO", None)  # as on a plain host: no platform-given name
    line = procfile_line("Procfile", "worker") + " --concurrency=1"
    before = {n for reply in sqlite_stack.celery.control.ping(timeout=1) or [] for n in reply}
    procs = [Proc(["bash", "-c", line], tmp_path / f"worker{i}.log", env) for i in range(2)]
    try:
        def new_nodes() -> set[str]:
            for i, proc in enumerate(procs):
                proc.check_alive(f"procfile worker {i}")
            replies = sqlite_stack.celery.control.ping(timeout=1) or []
            return {n for reply in replies for n in reply} - before

        nodes = wait_until(lambda: len(new_nodes()) == 2 and new_nodes(), 60, interval=0.5,
                           what="both Procfile workers answer ping")
        assert len(nodes) == 2, nodes
        # Still both alive once each has fully started (the loser used to exit here).
        wait_until(lambda: all("ready." in p.log_text() for p in procs), 30,
                   what="both workers ready")
        for i, proc in enumerate(procs):
            proc.check_alive(f"procfile worker {i}")
    finally:
        for proc in procs:
            proc.stop()
