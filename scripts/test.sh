#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The report's browser test renders report.html in Debian's headless Chromium.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "chromium could not be installed; the browser test will be skipped"
fi
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
bash scripts/lint_layers.sh   # the layering and no import cycles (pyproject.toml [tool.importlinter])
# Two workers (pytest-xdist), whole files each so that module fixtures run once: the deployment
# tests spend most of their time waiting on Flower processes, and the other worker uses that time.
.venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=25 tests "$@"
