"""Run every benchmark and write ``bench/README.md``.

``make bench`` calls ``python bench/run_all.py``. Each script runs in its own
subprocess (its output is streamed); the figures come from its last
``BENCH_JSON`` line. Scripts that print no such line (``bench/images.py``, the
imaging helper's, prints a Markdown table) are quoted as they printed.

The generated part of ``bench/README.md`` (machine, figures, targets) is
rewritten on each full run; the hand-written part below the marker line is
kept. ``--quick`` runs are not written to the README unless ``--readme``.

Run: ``python bench/run_all.py [--quick] [--db sqlite|postgresql] [--only NAME ...]``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from bench.machine import machine_info  # noqa: E402
from tests.harness.paths import PYTHON  # noqa: E402

#: (name, script, takes --db) in run order; a missing script is reported, not run.
SCRIPTS = [
    ("signup_latency", "signup_latency.py", True),
    ("mail_latency", "mail_latency.py", True),
    ("task_throughput", "task_throughput.py", True),
    ("upload_time", "upload_time.py", True),
    ("images", "images.py", False),
    ("store_upload", "store_upload.py", False),
]
TITLES = {
    "signup_latency": "1. Sign-up latency: POST /register vs the synchronous tutorial view",
    "mail_latency": "2. Submit → mail accepted by SMTP",
    "task_throughput": "3. Task throughput through one worker",
    "images": "4. Image pipeline (bench/images.py, see bench/IMAGES.md)",
    "upload_time": "5. Upload POST time for a 7 MB photo",
    "store_upload": "6. Upload POST and image pipeline on the S3 store vs the local folder",
}
MARKER = "<!-- Hand-written below this line: run_all.py keeps it. -->"
TIMEOUT = 240  # seconds per script


def run(name: str, script: str, takes_db: bool, args: argparse.Namespace) -> dict:
    """Run one script; returns its parsed JSON, or ``{"raw": output}`` when it
    prints none, plus ``seconds`` and ``exit``."""
    cmd = [PYTHON, str(BENCH / script)]
    if args.quick:
        cmd.append("--quick")
    if takes_db:
        cmd += ["--db", args.db]
    print(f"\n### {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.monotonic()
    lines: list[str] = []
    proc = subprocess.Popen(cmd, cwd=BENCH.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if not line.startswith("BENCH_JSON"):
                print(line, end="", flush=True)
        code = proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = -9
    result: dict = {"raw": "\n".join(lines[-60:])}
    for line in reversed(lines):
        if line.startswith("BENCH_JSON "):
            result = json.loads(line[len("BENCH_JSON "):])
            break
    result["seconds"] = time.monotonic() - t0
    result["exit"] = code
    return result


def fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def render(results: dict[str, dict], info: dict[str, str], args: argparse.Namespace,
           total: float) -> str:
    """The generated Markdown: machine, then one section per benchmark."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = ["# Benchmarks", "",
           f"Latest run: {when}, `python bench/run_all.py{' --quick' if args.quick else ''}` "
           f"(database {args.db}), {total:.0f} s in all. Times are medians/percentiles of "
           "this run; compare the ratios (baselines measured in the same run), not the "
           "absolute times, across machines.", "",
           "## Machine", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in info.items()]
    for name, result in results.items():
        out += ["", f"## {TITLES.get(name, name)}", ""]
        if result.get("exit") != 0:
            out += [f"**The script failed (exit {result.get('exit')}).** Last output:", "",
                    "```", result.get("raw", ""), "```"]
            continue
        if "figures" not in result:
            # Quoted as printed; its own Markdown headings become bold lines so
            # they do not break this file's outline.
            out += [f"**{line.lstrip('#').strip()}**" if line.startswith("#") else line
                    for line in result.get("raw", "").splitlines()]
            continue
        if result.get("skipped"):
            out += [f"**Skipped:** {result['skipped']}", ""]
        out += [f"Processes: {result.get('processes', '')}", "", "| figure | value |", "|---|---:|"]
        out += [f"| {k} | {fmt(v)} |" for k, v in result["figures"].items()]
        if result.get("targets"):
            out += ["", "| target | result | figures |", "|---|---|---|"]
            out += [f"| {t['target']} | {'PASS' if t['pass'] else '**FAIL**'} | {t['detail']} |"
                    for t in result["targets"]]
        if result.get("notes"):
            out += [""] + [f"- {n}" for n in result["notes"]]
        out += ["", f"({result['seconds']:.0f} s)"]
    return "\n".join(out) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny runs (smoke)")
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    p.add_argument("--only", nargs="*", help="names to run (default: all)")
    p.add_argument("--readme", action="store_true", help="write README.md after --quick too")
    args = p.parse_args()
    info = machine_info()
    t0 = time.monotonic()
    results: dict[str, dict] = {}
    for name, script, takes_db in SCRIPTS:
        if args.only and name not in args.only:
            continue
        if not (BENCH / script).exists():
            print(f"\n### {name}: bench/{script} not present here; skipped", flush=True)
            continue
        results[name] = run(name, script, takes_db, args)
    total = time.monotonic() - t0
    info["load average after the run"] = " ".join(
        f"{x:.2f}" for x in __import__("os").getloadavg())
    print(f"\nall benchmarks: {total:.0f} s", flush=True)
    if not args.quick or args.readme:
        readme = BENCH / "README.md"
        kept = ""
        if readme.exists() and MARKER in readme.read_text():
            kept = readme.read_text().split(MARKER, 1)[1]
        readme.write_text(render(results, info, args, total) + "\n" + MARKER + kept)
        print(f"wrote {readme}", flush=True)
    return 0 if all(r.get("exit") == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
