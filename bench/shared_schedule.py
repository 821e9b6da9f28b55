"""The shared-noise schedule on one party: does federated's step plan, not its federation, cost quality?

Shared noise makes the secure sum one pooled DP-SGD step per round, so a federated run trains as a
single party would on the pooled rows, but on the federated plan: ``SHARED_ROUNDS`` steps at
``BATCH_FACTOR`` times single-party's default batch (fewer, larger steps: rounds are its cost),
where single-party takes 30 epochs at that batch. This program fits single-party synthesizers both
ways, alternately, on the README command's seed-0 split (epsilon 1 by default, every other setting
the default), so the difference is the schedule alone, and prints each measure's mean, the TSTR
standard deviation and the difference with its standard error.

    python bench/shared_schedule.py --table taxi --repeats 20 --json bench/results/shared_schedule_taxi.json
    python bench/shared_schedule.py --table taxi --rounds 192   # another plan: 30 epochs at the same batch
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from federated_quality import single_party_run  # bench/ is on sys.path as the script's folder
from fedsynth.common.dp.plan import TrainingConfig, default_batch_size
from fedsynth.server.shared_plan import BATCH_FACTOR, SHARED_ROUNDS
from fedsynth.simulations.datasets import BUNDLED, load_dataset
from fedsynth.simulations.partition import holdout_split

MEASURES = ("tstr_auc", "tvd_1way", "tvd_2way", "detection_auc", "tvd_1way_max")


def federated_schedule(rows: int, rounds: int = SHARED_ROUNDS, factor: float = BATCH_FACTOR) -> TrainingConfig:
    """Single-party training on a shared-noise plan (by default, the shipped one): its rounds as
    steps at its expected batch."""
    batch = int(factor * default_batch_size(rows))
    return TrainingConfig(epochs=rounds * batch / rows, batch_size=batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", default="taxi", choices=sorted(BUNDLED))
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--rounds", type=int, default=SHARED_ROUNDS, help="the shared-noise plan's rounds")
    ap.add_argument("--batch-factor", type=float, default=BATCH_FACTOR, help="its batch, times single-party's")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write every run here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    df, schema, bundled = load_dataset(args.table)
    train, holdout = holdout_split(df, 0.2, 0)
    schedules = {"single-party default": None,
                 "shared-noise schedule": federated_schedule(len(train), args.rounds, args.batch_factor)}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in schedules}
    for r in range(args.repeats):
        for name, training in schedules.items():
            t = time.time()
            q = single_party_run(train, holdout, schema, args.epsilon, args.delta, r, bundled.label, training)
            runs[name].append({k: float(q[k]) for k in MEASURES})
            print(f"{name} run {r}: " + "  ".join(f"{k} {q[k]:.4f}" for k in MEASURES) + f"  {time.time() - t:.0f}s",
                  flush=True)
    for name, rs in runs.items():
        tstr = np.array([x["tstr_auc"] for x in rs])
        print(f"{name}: " + "  ".join(f"{k} {np.mean([x[k] for x in rs]):.4f}" for k in MEASURES)
              + f"  (TSTR sd {tstr.std(ddof=1):.4f} over {len(rs)})")
    a, b = (np.array([x["tstr_auc"] for x in runs[n]]) for n in schedules)
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    print(f"shared-noise schedule minus single-party default, TSTR: {b.mean() - a.mean():+.4f} (standard error {se:.4f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"table": args.table, "epsilon": args.epsilon, "repeats": args.repeats, "rounds": args.rounds,
                       "batch_factor": args.batch_factor,
                       "schedules": {n: None if t is None else {"epochs": t.epochs, "batch_size": t.batch_size}
                                     for n, t in schedules.items()}, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
