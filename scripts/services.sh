#!/usr/bin/env bash
# Make sure the named services run on 127.0.0.1, starting them (or installing
# them from Debian's packages) when they do not. Usage:
#   scripts/services.sh rabbitmq [rabbitmq-management] [postgres] [redis] [chromium]
set -euo pipefail
SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
APT_UPDATED=""

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {  # port, name, seconds
  for _ in $(seq 1 "$3"); do port_open "$1" && return 0; sleep 1; done
  echo "!! $2 did not open port $1 within $3 s" >&2; return 1
}
rabbit_vhosts_work() {  # create and delete a probe vhost within 30 s
  local probe="onboard_probe_$$"
  $SUDO timeout 30 rabbitmqctl -q add_vhost "$probe" >/dev/null 2>&1 \
    && $SUDO timeout 30 rabbitmqctl -q delete_vhost "$probe" >/dev/null 2>&1
}
apt_install() {
  if [ -z "$APT_UPDATED" ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

for svc in "$@"; do
  case "$svc" in
    rabbitmq)
      if ! port_open 5672; then
        command -v rabbitmq-server >/dev/null || { echo "==> installing rabbitmq-server"; apt_install rabbitmq-server; }
        echo "==> starting RabbitMQ"
        $SUDO rabbitmq-server -detached || true
        wait_port 5672 RabbitMQ 90
        $SUDO rabbitmqctl -q await_startup >/dev/null 2>&1 || true
      fi
      # An open port is not enough: the tests create a virtual host per stack. A
      # node whose vhost operations hang (seen after many parallel test runs)
      # is restarted once.
      if ! rabbit_vhosts_work; then
        echo "==> RabbitMQ answers on 5672 but cannot create a virtual host: restarting it"
        $SUDO timeout 60 rabbitmqctl stop >/dev/null 2>&1 || $SUDO pkill -9 -u rabbitmq beam.smp || true
        sleep 2
        $SUDO rabbitmq-server -detached || true
        wait_port 5672 RabbitMQ 90
        $SUDO rabbitmqctl -q await_startup >/dev/null 2>&1 || true
        rabbit_vhosts_work || { echo "!! RabbitMQ still cannot create a virtual host" >&2; exit 1; }
      fi
      echo "ok: RabbitMQ on 127.0.0.1:5672" ;;
    rabbitmq-management)
      # Flower's Broker tab and the queue-depth metric read the management API.
      if ! port_open 15672; then
        $SUDO rabbitmq-plugins -q enable rabbitmq_management >/dev/null 2>&1 || true
        wait_port 15672 "RabbitMQ management" 30 || true
      fi ;;
    postgres)
      if ! port_open 5432; then
        command -v pg_ctlcluster >/dev/null || { echo "==> installing postgresql"; apt_install postgresql; }
        echo "==> starting PostgreSQL"
        $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
        wait_port 5432 PostgreSQL 60
      fi
      if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
        # A fresh Debian cluster asks for passwords on TCP: trust loopback, as on the CI machines.
        ver="$(ls /etc/postgresql | sort -V | tail -1)"
        hba="/etc/postgresql/$ver/main/pg_hba.conf"
        echo "==> trusting 127.0.0.1 in $hba"
        $SUDO sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
        $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
      fi
      psql -h 127.0.0.1 -U postgres -d postgres -Atc "select 1 from pg_database where datname='test'" | grep -q 1 \
        || psql -h 127.0.0.1 -U postgres -d postgres -qc 'create database test'
      echo "ok: PostgreSQL on 127.0.0.1:5432" ;;
    redis)
      if ! port_open 6379; then
        command -v redis-server >/dev/null || { echo "==> installing redis-server"; apt_install redis-server; }
        echo "==> starting Redis"
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
        wait_port 6379 Redis 30
      fi
      echo "ok: Redis on 127.0.0.1:6379" ;;
    chromium)
      command -v chromium >/dev/null || { echo "==> installing chromium"; apt_install chromium; }
      echo "ok: $(command -v chromium)" ;;
    *) echo "unknown service: $svc" >&2; exit 2 ;;
  esac
done
