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


def group_ends(pgid: int) -> None:
    """Wait (up to 5 s) until no live process is left in group ``pgid``: SIGKILL is
    delivered asynchronously, so a member may still be running for a moment after
    the signal was sent."""
    wait_until(lambda: group_members(pgid) == [], 5, interval=0.01,
               what=f"process group {pgid} to end")


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
    group_ends(proc.pid)


def test_kill_hits_the_whole_group_at_once(tmp_path: Path) -> None:
    proc = leader_with_child(tmp_path)
    proc.kill()
    assert proc.popen.returncode == -signal.SIGKILL
    group_ends(proc.pid)
    proc.stop()  # stopping twice is harmless


def test_run_group_time_out_kills_the_whole_group(tmp_path: Path) -> None:
    """A command that outlives its time-out leaves nothing behind (rabbitmqctl's
    su and Erlang VM would otherwise wait on a stuck broker for minutes)."""
    import subprocess

    import pytest

    from tests.harness.procs import run_group

    pid_file = tmp_path / "child.pid"
    with pytest.raises(subprocess.TimeoutExpired):
        run_group(["sh", "-c", f"sleep 300 & echo $! > {pid_file}; wait"], timeout=1)
    child = int(pid_file.read_text())
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


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


def test_a_stack_that_fails_to_start_leaves_no_vhost_nor_sink(tmp_path: Path) -> None:
    """A bad setting stops ``flask db upgrade``; the vhost and SMTP sink made
    before it are gone again (no leak on the shared broker)."""
    import subprocess

    import pytest

    from tests.harness.broker import SHARED
    from tests.harness.stack import Stack
    from tests.harness.wait import port_open

    stack = Stack("sqlite", tmp_path, env_overrides={"MAIL_PORT": "abc"})
    with pytest.raises(subprocess.CalledProcessError) as failed:
        stack.start(worker=False)
    assert b"MAIL_PORT" in failed.value.stderr
    assert stack.name not in SHARED.ctl("list_vhosts").split()
    assert not port_open(stack.smtp.port)


def test_sink_finds_a_mail_with_a_raw_utf8_to_header() -> None:
    """An SMTPUTF8 mail's raw UTF-8 To header parses as a ``Header`` object; the
    sink's lookups compare its text instead of failing."""
    import email

    from tests.harness.mail import SMTPSink

    sink = SMTPSink()  # not started: only its store is used
    raw = "To: jörg@example.com\r\nSubject: hi\r\n\r\nhello\r\n".encode()
    sink.handler.messages.append(email.message_from_bytes(raw))
    sink.handler.messages.append(email.message_from_bytes(b"To: ann@example.com\r\n\r\nhi\r\n"))
    assert len(sink.to("ann@example.com")) == 1
    assert len(sink.to("example.com")) == 2
