"""Smoke test: ``bench/images.py --quick`` runs end to end and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_images_quick_runs():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "images.py"), "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "| image | approach | wall ms | CPU ms |" in out
    for approach in ("pillow_naive", "pillow_draft", "vips_thumb", "ours", "turbo q85"):
        assert f"| {approach}" in out
    # One verdict line per target, each a real PASS or FAIL.
    verdicts = [line for line in out.splitlines() if line.startswith(("- PASS", "- FAIL"))]
    assert len(verdicts) == 3
    assert "ours CPU ms by stage: decode" in out
