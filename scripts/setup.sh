#!/usr/bin/env bash
# Create .venv (once) and install fedsynth with its test extras. Offline-safe after this.
# torch is pinned first so pip takes the CPU build instead of pulling a multi-GB CUDA one.
# The install is skipped when this script and pyproject.toml are unchanged since the last one
# that finished (the package is installed editable, so code changes need no reinstall).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
STAMP=.venv/.fedsynth-installed
WANT=$(cat scripts/setup.sh pyproject.toml | .venv/bin/python -c "import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())")
if [ -x .venv/bin/fedsynth ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
  exit 0
fi
rm -f "$STAMP"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[all,test]"
echo "$WANT" > "$STAMP"
