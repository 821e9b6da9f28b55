#!/usr/bin/env bash
# Create .venv (once) and install fedsynth with its test extras. Offline-safe after this.
# torch is pinned first so pip takes the CPU build instead of pulling a multi-GB CUDA one.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[all,test]"
