#!/usr/bin/env bash
# Creates .bench-venv/: a SEPARATE virtual environment for the centralized anchors that
# bench/quality_privacy.py compares fedsynth with (smartnoise-synth MST/AIM/DP-CTGAN/PATE-CTGAN
# and CTGAN without DP, the synthesizer SDV uses). They are never fedsynth dependencies: their
# pins (opacus 0.14 in smartnoise, pandas/rdt ranges in ctgan) clash with fedsynth's.
# The anchors run as subprocesses of the benchmark and only write synthetic CSV files; every
# metric is computed by fedsynth's own code in the benchmark's process.
#
#   bash bench/setup_anchors.sh            # idempotent; re-run to repair
#   PYTHON=python3.11 bash bench/setup_anchors.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${BENCH_VENV:-.bench-venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# CPU torch first, so that no CUDA build is pulled in by the anchors' requirements.
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
# Each anchor separately: one that fails to install is recorded by the benchmark, not fatal here.
# smartnoise-synth's GANs import `packaging` without declaring it, hence the explicit install.
for pkg in "smartnoise-synth packaging" "ctgan"; do
  if ! "$VENV/bin/python" -m pip install -q $pkg "torch==2.13.0"; then
    echo "setup_anchors: could not install $pkg (the benchmark will record it as unavailable)" >&2
  fi
done
"$VENV/bin/python" - <<'PY'
import importlib
for mod in ("snsynth", "snsynth.pytorch.nn", "ctgan", "torch"):
    try:
        m = importlib.import_module(mod)
        print(f"{mod}: {getattr(m, '__version__', 'ok')}")
    except Exception as exc:  # report, do not hide
        print(f"{mod}: NOT AVAILABLE ({type(exc).__name__}: {exc})")
PY
