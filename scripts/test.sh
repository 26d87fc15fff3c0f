#!/usr/bin/env bash
# Install everything (once), make sure PostgreSQL and RabbitMQ run, and run the test suite.
# Fails when any test fails, when no test ran, or when a required service cannot start.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$(bash scripts/bootstrap.sh | tail -n 1)"
bash scripts/services.sh
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$rc"
