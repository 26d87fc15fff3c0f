#!/usr/bin/env bash
# Install everything (once) and convert the bundled sample drawings into ./out/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$(bash scripts/bootstrap.sh | tail -n 1)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# through Prefect (its local API), local files and a SQLite ledger under ~/.cad2gltf
"$VENV/bin/python" -m flows.cli convert samples/*.dxf --out "${OUT:-out}" "$@"
# the PDF samples with the project's own symbol detector: doors and windows become openings
"$VENV/bin/python" -m flows.cli convert samples/*.pdf --out "${OUT:-out}" \
  --options '{"detect_symbols": true}' "$@"
