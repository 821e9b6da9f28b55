# Benchmarks (results in docs/benchmarks.md). PYTHON: the environment fedsynth is installed in.
PYTHON ?= $(shell [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)
RUN = HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 nice -n 5 $(PYTHON)

.PHONY: bench bench-setup bench-full bench-dp-cost bench-scale bench-quality bench-federated bench-plots

## bench: the default benchmarks, one at a time (about 30 minutes on 2 cores)
bench: bench-setup bench-dp-cost bench-scale bench-federated bench-quality bench-plots

## bench-setup: the separate venv for the centralized anchors (.bench-venv/, never a fedsynth dependency)
bench-setup:
	bash bench/setup_anchors.sh

bench-dp-cost:
	$(RUN) bench/dp_cost.py

bench-scale:
	$(RUN) bench/scale.py
	$(RUN) bench/scale.py --only scale --clients 10 50 100 200 --secagg-shares 11 --json bench/results/scale_shares11.json

## bench-quality: default grid (epsilon 1 and 10, Dirichlet 5 clients, single-party, MST): <= ~15 min
bench-quality:
	$(RUN) bench/quality_privacy.py

## bench-federated: federated vs single-party TSTR on the README split, averaged over repeated runs (~5 min)
bench-federated:
	$(RUN) bench/federated_quality.py --repeats 3 --json bench/results/federated_quality.jsonl
	$(RUN) bench/federated_quality.py --repeats 3 --single-party --json bench/results/federated_quality.jsonl

bench-plots:
	$(PYTHON) bench/plots.py

## bench-full: the whole grid (many hours on 2 cores): every epsilon x partition x client count, every anchor, 200 clients
bench-full: bench-setup
	$(RUN) bench/dp_cost.py --reps 11 --slow-reps 3
	$(RUN) bench/scale.py --with-200 --reps 3
	$(RUN) bench/quality_privacy.py --full --json bench/results/quality_privacy_full.json
	$(PYTHON) bench/plots.py
