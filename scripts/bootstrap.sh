#!/usr/bin/env bash
# Create .venv and install requirements.txt (installs Python's venv support on
# Debian first if it is missing). Safe to run again: pip skips what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"

if ! command -v python3 >/dev/null || ! python3 -m venv --help >/dev/null 2>&1 \
   || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  echo "==> installing python3, venv and build tools (apt-get)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3 python3-venv python3-dev build-essential
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
echo "==> installing requirements.txt into .venv"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
