"""Smoke test of the benchmarks: each script runs tiny (``--quick``) against real
parts and prints its figures. No timing assertions: only that it exits 0 and
that every figure it reports is a finite number."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ["signup_latency", "mail_latency", "task_throughput", "upload_time", "store_upload"]


def run_quick(name: str) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_JSON ")]
    assert lines, "no BENCH_JSON line:\n" + out[-4000:]
    return json.loads(lines[-1][len("BENCH_JSON "):]), proc.stdout


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_quick(name: str) -> None:
    result, stdout = run_quick(name)
    assert result["name"] == name
    figures = result["figures"]
    assert figures, "no figures"
    for key, value in figures.items():
        assert isinstance(value, (int, float)) and math.isfinite(value), (key, value)
        assert key in stdout  # printed for people too, not only in the JSON
    assert result["processes"], "the script must say which processes ran"
    for target in result["targets"]:
        assert isinstance(target["pass"], bool) and target["detail"]
        assert ("PASS: " if target["pass"] else "FAIL: ") + target["target"] in stdout
    if result["skipped"]:
        pytest.skip(f"{name}: {result['skipped']}")
    assert result["targets"], "a benchmark that ran prints its targets"
