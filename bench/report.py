"""The benchmarks' command line, figures and their one JSON line.

Each script prints human-readable lines (figures, ratios against a baseline
from the same run, PASS/FAIL per target, which processes ran) and one last line
``BENCH_JSON {...}`` that :mod:`bench.run_all` and the smoke test parse:
``{"name", "figures": {str: float}, "targets": [...], "processes": str,
"notes": [str], "skipped": str | null}``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any


def parser(description: str) -> argparse.ArgumentParser:
    """The common command line: ``--quick`` (tiny run for the smoke test) and
    ``--db sqlite|postgresql`` (default PostgreSQL, the production database)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny run (smoke test), seconds not minutes")
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql",
                   help="database backend of the stack (default: postgresql)")
    return p


def header(title: str, args: argparse.Namespace) -> None:
    """Print the run's title line: mode, database, cores and the 1-minute load."""
    print(f"== {title} ({'quick' if args.quick else 'full'} mode, database {args.db}, "
          f"{len(os.sched_getaffinity(0))} cores, load {os.getloadavg()[0]:.2f}) ==", flush=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: list[float]) -> float:
    """The nearest-rank median of ``values``; NaN when empty."""
    return percentile(values, 50)


@dataclass
class Report:
    """Figures, targets and notes of one benchmark; printed as text and JSON."""

    name: str
    figures: dict[str, float] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)
    skipped: str | None = None

    def figure(self, key: str, value: float, unit: str = "") -> None:
        """Record and print one figure (ms, /s, × ...)."""
        self.figures[key] = round(float(value), 3)
        print(f"  {key:<48} {value:>12.2f} {unit}", flush=True)

    def target(self, label: str, ok: bool, detail: str) -> None:
        """Record and print a target's PASS/FAIL with the figures behind it."""
        self.targets.append({"target": label, "pass": bool(ok), "detail": detail})
        print(f"  {'PASS' if ok else 'FAIL'}: {label} ({detail})", flush=True)

    def process(self, text: str) -> None:
        """Record and print one process that ran (command and settings)."""
        self.processes.append(text)
        print(f"  process: {text}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def emit(self) -> None:
        """Print the ``BENCH_JSON`` line (the last line of a run)."""
        print("BENCH_JSON " + json.dumps({
            "name": self.name, "figures": self.figures, "targets": self.targets,
            "processes": "; ".join(self.processes), "notes": self.notes,
            "skipped": self.skipped}), flush=True)
