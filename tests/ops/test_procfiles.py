"""The Procfiles follow the settings: the dev mail catcher writes the Maildir the
app reads (``DEV_MAILDIR``, by default ``$INSTANCE_DIR/maildir``) and listens on
``MAIL_PORT``; Flower's port and address come from ``flowerconfig.py``
(``FLOWER_PORT``, ``FLOWER_ADDRESS``), not from the command line.

Flower started from the Procfile line is tested live in ``test_live.py``.
"""
from __future__ import annotations

import mailbox
import os
import shlex
import smtplib
import subprocess
from email.message import EmailMessage
from pathlib import Path

from tests.harness.paths import CELERY, PYTHON, ROOT
from tests.harness.procs import Proc

from tests.harness.wait import free_port, wait_until

def procfile_line(procfile: str, process: str) -> str:
    """The shell command of ``process`` in ``procfile``."""
    for line in (ROOT / procfile).read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() == process:
            return command.strip()
    raise LookupError(f"no {process} in {procfile}")


def procfile_command(procfile: str, process: str) -> list[str]:
    """``process``'s command line in ``procfile`` as argv (``celery`` from our venv)."""
    args = shlex.split(procfile_line(procfile, process))
    return [CELERY, *args[1:]] if args[0] == "celery" else args


def test_procfiles_run_the_same_flower_without_port_or_address() -> None:
    flower = procfile_command("Procfile", "flower")
    assert procfile_command("Procfile.dev", "flower") == flower
    assert not [a for a in flower if a.startswith(("--port", "--address"))], flower


def test_dev_mail_catcher_writes_the_maildir_the_app_reads(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "INSTANCE_DIR": str(tmp_path), "MAIL_PORT": str(port),
           "PATH": f"{Path(PYTHON).parent}:{os.environ['PATH']}"}
    env.pop("DEV_MAILDIR", None)
    # What /dev/mail lists, as a freshly started app process reads it.
    maildir = Path(subprocess.run(
        [PYTHON, "-c", "from webapp.config import from_env; print(from_env()['DEV_MAILDIR'])"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout.strip())
    assert maildir == tmp_path / "maildir"
    proc = Proc(["sh", "-c", procfile_line("Procfile.dev", "mail")], tmp_path / "catcher.log", env,
                cwd=tmp_path)
    try:
        def listening() -> bool:
            assert proc.alive(), proc.log_text()
            try:
                smtplib.SMTP("127.0.0.1", port, timeout=1).quit()
                return True
            except OSError:
                return False

        wait_until(listening, 20, interval=0.1, what=f"catcher on MAIL_PORT {port}")
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.com", "caught"
        msg.set_content("hello")
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
            smtp.send_message(msg)
        subjects = [m["Subject"] for m in mailbox.Maildir(maildir, create=False)]
        assert subjects == ["caught"]
    finally:
        proc.stop()
