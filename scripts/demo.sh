#!/usr/bin/env bash
# The main job: a local federated simulation on the bundled UCI Adult table.
# 5 institutions (Dirichlet label skew), SecAgg+ with the DP noise shared in it, epsilon=1 per institution.
# Ends with runs/demo/synthetic.csv, runs/demo/model_card.json and runs/demo/report.html.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${1:-runs/demo-$(date +%Y%m%d-%H%M%S)}
.venv/bin/fedsynth simulate --data adult --clients 5 --partition dirichlet --alpha 0.5 --label income \
  --epsilon 1 --delta 1e-5 --out "$OUT"
echo "synthetic data: $OUT/synthetic.csv   report: $OUT/report.html   model card: $OUT/model_card.json"
