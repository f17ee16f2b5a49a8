"""Where Onboard and the virtualenv's executables are."""
from __future__ import annotations

import sys
from pathlib import Path

#: The repository root (the working directory of every process started).
ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
CELERY = str(Path(PYTHON).with_name("celery"))
FLASK = str(Path(PYTHON).with_name("flask"))
GUNICORN = str(Path(PYTHON).with_name("gunicorn"))
