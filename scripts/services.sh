#!/usr/bin/env bash
# Start PostgreSQL and RabbitMQ on 127.0.0.1 when they are down; fail loudly if we cannot.
set -uo pipefail
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 "${2:-60}"); do port_open "$1" && return 0; sleep 1; done; return 1; }

if ! port_open 5432; then
  echo "services: PostgreSQL is down, starting it" >&2
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  fi
  wait_port 5432 30 || { echo "services: PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
fi
if ! port_open 5672; then
  echo "services: RabbitMQ is down, starting it" >&2
  command -v rabbitmq-server >/dev/null && rabbitmq-server -detached || true
  wait_port 5672 90 || { echo "services: RabbitMQ is not reachable on 127.0.0.1:5672" >&2; exit 1; }
fi
echo "services: PostgreSQL and RabbitMQ are up" >&2
