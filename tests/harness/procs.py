"""One way to run a helper process: in its own process group, output to a log
file; stopped by a signal to its leader (SIGTERM: celery, gunicorn and beat shut
their children down warmly), then SIGKILL for the whole group.

Workers, beat, Flower, gunicorn and RabbitMQ nodes all fork children; killing
the group at the end is what keeps a stopped test from leaving orphans that hold
ports, queues or database connections.
"""
from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.harness.paths import ROOT


class Proc:
    """A process started in a new session (its own process group).

    Args:
        args: argv.
        log: file that receives stdout and stderr (appended to).
        env: the full environment (not merged with ``os.environ``).
        cwd: working directory, the repository root by default.

    Attributes:
        popen: the :class:`subprocess.Popen`; ``popen.pid`` is also the group id.
        log: the log file's path.
    """

    def __init__(self, args: Sequence[str], log: Path, env: Mapping[str, str],
                 cwd: Path = ROOT) -> None:
        self.args = list(args)
        self.log = Path(log)
        with open(self.log, "ab") as out:  # the child keeps its own copy of the fd
            self.popen = subprocess.Popen(self.args, cwd=cwd, env=dict(env), stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        """True while the group leader has not exited."""
        return self.popen.poll() is None

    def log_text(self, tail: int = 4000) -> str:
        """The last ``tail`` characters of the log, for assertion messages."""
        try:
            return self.log.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def check_alive(self, what: str = "process") -> None:
        """Raise ``RuntimeError`` naming the log if the process has exited."""
        if not self.alive():
            raise RuntimeError(f"{what} exited with {self.popen.returncode}: see {self.log}\n"
                               + self.log_text())

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash or an OOM kill would."""
        self.stop(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        """Send ``sig`` to the leader (SIGKILL: to the whole group), wait up to
        ``timeout`` seconds for it to exit, then SIGKILL the group. Safe to call twice.

        Returns:
            The leader's exit status (None if it could not be reaped in 10 s more).
        """
        if self.alive():
            if sig == signal.SIGKILL:
                _signal_group(self.pid, sig)
            else:
                self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.pid, signal.SIGKILL)
                try:
                    self.popen.wait(10)
                except subprocess.TimeoutExpired:
                    return None
        # Children the leader left behind (a pool after its master died) go too.
        _signal_group(self.pid, signal.SIGKILL)
        return self.popen.returncode


def run_group(args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 60,
              cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``args`` to the end in a process group of its own, output captured as text.

    Unlike ``subprocess.run(timeout=...)``, a time-out kills the whole group:
    ``rabbitmqctl`` runs through ``su`` and an Erlang VM, and killing only the
    wrapper leaves them waiting on the broker.

    Raises:
        subprocess.TimeoutExpired: not done within ``timeout`` seconds (the group is killed).
    """
    popen = subprocess.Popen(list(args), cwd=cwd, env=None if env is None else dict(env),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        out, err = popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(popen.pid, signal.SIGKILL)
        popen.communicate()
        raise
    return subprocess.CompletedProcess(popen.args, popen.returncode, out, err)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:  # the group is gone already
        pass
