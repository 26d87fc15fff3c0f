#!/usr/bin/env bash
# Install everything (once) and convert the bundled sample drawings into ./out/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$(bash scripts/bootstrap.sh | tail -n 1)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
"$VENV/bin/python" -m cad2gltf convert samples/*.dxf --out "${OUT:-out}" "$@"
