#!/usr/bin/env bash
# Re-resolve the dependency set from pyproject.toml and rewrite requirements.lock.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TMP="$(mktemp -d)"
python3 -m venv "$TMP/venv"
"$TMP/venv/bin/pip" install --quiet "pip==25.3"
"$TMP/venv/bin/pip" install --quiet "$ROOT[pipeline,detector,dev]"
{
  echo "# Fully pinned dependency set (python 3.11, linux x86_64), installed with --no-deps."
  echo "# Regenerate: scripts/lock.sh. opencv-python is left out on purpose: ultralytics asks for it,"
  echo "# but it clashes with opencv-python-headless (both provide cv2); headless is what we use."
  "$TMP/venv/bin/pip" freeze --exclude-editable | grep -v -i -E "^(opencv-python==|cad2gltf)"
} > "$ROOT/requirements.lock"
rm -rf "$TMP"
