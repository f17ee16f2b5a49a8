"""The ``flask`` commands as documented: every ``flask --app wsgi <command>`` that
README.md, docs/*.md, the Procfiles and scripts/run.sh show runs (``--help``
through the real ``flask`` entry point) and knows the options shown with it;
bad option values are refused with click's usage error, before any work.

Commands' effects on real rows are tested where the jobs are
(``tests/ops/test_jobs.py``, ``tests/faults/``).
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.harness.paths import PYTHON, ROOT

FLASK = str(Path(PYTHON).with_name("flask"))
DOCUMENTS = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")),
             "Procfile", "Procfile.dev", "scripts/run.sh"]
COMMAND_RE = re.compile(r"flask --app wsgi ((?:[a-z][a-z-]*)(?:\|[a-z][a-z-]*)*(?: [a-z][a-z-]*)?)"
                        r"([^`#\n]*)")
GROUPS = {"db"}  # commands whose next word is a subcommand


def documented_commands() -> dict[tuple[str, ...], set[str]]:
    """``{command words: options shown with it}`` from every document."""
    found: dict[tuple[str, ...], set[str]] = {}
    for name in DOCUMENTS:
        for words, rest in COMMAND_RE.findall((ROOT / name).read_text()):
            first, *sub = words.split(" ")
            if sub and first not in GROUPS:  # "purge now": prose after the command
                rest, sub = " ".join(sub) + rest, []
            for command in first.split("|"):
                key = (command, *sub)
                found.setdefault(key, set()).update(re.findall(r"--[a-z][a-z-]*", rest))
    return found


DOCUMENTED = documented_commands()


def test_the_documents_name_the_operator_commands() -> None:
    names = {words[0] for words in DOCUMENTED}
    assert {"stats", "resend-pending", "purge", "backup", "mail-failures", "relay-outbox",
            "upgrade-queues", "db"} <= names, DOCUMENTED


@pytest.mark.parametrize("words", sorted(DOCUMENTED), ids=" ".join)
def test_documented_command_runs(words: tuple[str, ...], tmp_path: Path) -> None:
    env = {**os.environ, "INSTANCE_DIR": str(tmp_path), "ONBOARD_ENV": "development"}
    proc = subprocess.run([FLASK, "--app", "wsgi", *words, "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"Usage: flask {' '.join(words)} "), proc.stdout[:300]
    for option in DOCUMENTED[words]:
        assert option in proc.stdout, f"{option} documented but not in {words}'s --help"


@pytest.mark.parametrize("args, option", [
    (["stats", "--day", "2024-13-45"], "--day"),
    (["stats", "--day", "yesterday"], "--day"),
    (["resend-pending", "--older-than", "-1"], "--older-than"),
    (["relay-outbox", "--older-than", "-5"], "--older-than"),
    (["mail-failures", "--limit", "0"], "--limit"),
])
def test_bad_option_values_are_usage_errors(runner, args: list[str], option: str) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(args=args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert f"Invalid value for '{option}'" in result.output
