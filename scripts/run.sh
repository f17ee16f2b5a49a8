#!/usr/bin/env bash
# Run the whole site for development: schema, then web, worker, beat, flower and
# a local SMTP catcher under honcho (Procfile.dev). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
export ONBOARD_ENV="${ONBOARD_ENV:-development}"
export FLOWER_BASIC_AUTH="${FLOWER_BASIC_AUTH:-admin:onboard}"
export PORT="${PORT:-8000}"
export BASE_URL="${BASE_URL:-http://127.0.0.1:$PORT}"
export PATH="$PWD/.venv/bin:$PATH"
# The paths the app reads (webapp/config/settings.py defaults), exported so the catcher
# in Procfile.dev writes where /dev/mail reads.
export INSTANCE_DIR="${INSTANCE_DIR:-$PWD/instance}"
export DEV_MAILDIR="${DEV_MAILDIR:-$INSTANCE_DIR/maildir}"
mkdir -p "$DEV_MAILDIR"/{tmp,new,cur}  # a Maildir for the SMTP catcher
echo "==> database schema (flask db upgrade)"
flask --app wsgi db upgrade
echo "==> task queues (quorum; converts empty classic queues left by older versions)"
flask --app wsgi upgrade-queues || echo "!! see README: 'Upgrading a broker that has classic queues'"
cat <<MSG

  Onboard is starting:
    site         $BASE_URL
    caught mail  $BASE_URL/dev/mail   (Maildir: $DEV_MAILDIR)
    Flower       http://${FLOWER_ADDRESS:-127.0.0.1}:${FLOWER_PORT:-5555}   (user:password  $FLOWER_BASIC_AUTH)
  Ctrl-C stops every process.

MSG
exec honcho start -f Procfile.dev
