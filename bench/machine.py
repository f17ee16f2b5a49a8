"""What machine a benchmark ran on: cores, CPU model, load and versions."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (psutil does not report it);
    ``"?"`` when unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def machine_info() -> dict[str, str]:
    """nproc, CPU model, load, and versions of the parts measured (Python
    packages, RabbitMQ and PostgreSQL servers; ``"?"`` when not found)."""
    info = {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu_model(),
        "load average (1/5/15 min)": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "os": platform.platform(),
        "python": platform.python_version(),
    }
    for pkg in ("flask", "celery", "kombu", "gunicorn", "sqlalchemy", "psycopg", "argon2-cffi",
                "flask-limiter", "flower", "aiosmtpd"):
        info[pkg] = _version(pkg)
    try:
        out = subprocess.run(["rabbitmqctl", "-q", "version"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
        info["rabbitmq"] = out or "?"
    except Exception:  # noqa: BLE001 - reported as unknown
        info["rabbitmq"] = "?"
    try:
        import psycopg

        from tests.harness.databases import PG_ADMIN_URL

        with psycopg.connect(PG_ADMIN_URL) as conn:
            info["postgresql"] = conn.execute("show server_version").fetchone()[0]
    except Exception:  # noqa: BLE001 - reported as unknown
        info["postgresql"] = "?"
    return info
