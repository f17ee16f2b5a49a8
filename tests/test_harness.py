"""The test harness itself: process groups stop without leftovers, and the fast
app's schema is the one the migrations build."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
from sqlalchemy import inspect, text

from tests.harness.procs import Proc
from tests.harness.wait import wait_until


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (not zombie) processes whose process group is ``pgid``."""
    found = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return found


def leader_with_child(tmp_path: Path) -> Proc:
    """A shell that starts a long ``sleep`` and waits for it: SIGTERM ends the
    shell but not the sleep, as a crashed master leaves its pool behind."""
    proc = Proc(["sh", "-c", "sleep 300 & echo started; wait"], tmp_path / "group.log",
                dict(os.environ), cwd=tmp_path)
    wait_until(lambda: "started" in proc.log_text() and len(group_members(proc.pid)) == 2, 10,
               what="leader and child")
    return proc


def test_stop_leaves_no_process_of_the_group(tmp_path: Path) -> None:
    proc = leader_with_child(tmp_path)
    proc.stop()
    assert not proc.alive()
    assert group_members(proc.pid) == []


def test_kill_hits_the_whole_group_at_once(tmp_path: Path) -> None:
    proc = leader_with_child(tmp_path)
    proc.kill()
    assert proc.popen.returncode == -signal.SIGKILL
    assert group_members(proc.pid) == []
    proc.stop()  # stopping twice is harmless


def test_fast_app_schema_is_the_migrations_head(app) -> None:  # type: ignore[no-untyped-def]
    """The fast app's tables come from the migrations, not ``db.create_all()``:
    Alembic's version row is the head, and Celery's result tables (made only by
    a migration, no model of ours) exist."""
    from alembic.script import ScriptDirectory

    from webapp.extensions import db

    with app.app_context():
        migrations = app.extensions["migrate"]
        config = migrations.migrate.get_config(migrations.directory)
        head = ScriptDirectory.from_config(config).get_current_head()
        version = db.session.execute(text("select version_num from alembic_version")).scalar_one()
        tables = set(inspect(db.engine).get_table_names())
    assert version == head
    assert {"celery_taskmeta", "users", "outbox_messages"} <= tables, tables
