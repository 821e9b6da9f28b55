"""model_inference() (the memorising forest) as risks() runs it: null (disjoint synthetic sample) and copy, per table and seed.

The splits are bench/risk_splits.py's: null draws training, holdout and "synthetic" rows as
disjoint samples of the table (N/2, N/8 and the rest), so the attack should add no risk and its
interval should include 0 in about 19 of 20 runs; copy takes an 80/20 split with the training
rows as the synthetic table, so the attack should fire. Each seed attacks min(1,000, rows)
training and holdout rows for every sensitive column (default: the table's label and the column
its natural partition splits by).

    python bench/model_inference_null.py TABLE null|copy SEEDS [--sensitive COL ...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from fedsynth.evaluation.inference import model_inference
from fedsynth.evaluation.risks import MAX_TARGETS
from fedsynth.simulations.datasets import BUNDLED, load_dataset
from risk_splits import MODES, risk_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", choices=sorted(BUNDLED))
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("seeds", type=int, help="seeds 0 to SEEDS - 1")
    parser.add_argument("--sensitive", nargs="+", help="the attacked columns (default: label, natural column)")
    args = parser.parse_args()
    df, schema, bundled = load_dataset(args.table)
    sensitive = args.sensitive or [bundled.label, bundled.natural_column]
    for seed in range(args.seeds):
        real, holdout, synthetic = risk_split(df, schema, args.mode, seed)
        n, m = real.n_rows, holdout.n_rows
        rng = np.random.default_rng(seed)
        k = min(MAX_TARGETS, n, m)
        members = real.take(rng.choice(real.n_rows, k, replace=False))
        control = holdout.take(rng.choice(holdout.n_rows, k, replace=False))
        for col in sensitive:
            known = tuple(c for c in schema.names if c != col)
            t0 = time.perf_counter()
            e = model_inference(schema, synthetic, members, control, col, known, rng, seed=seed)
            dt = time.perf_counter() - t0
            lo, hi = e.added_risk_ci95
            print(f"{args.table} {args.mode} seed={seed} n={n} m={m} s={synthetic.n_rows} {col:14s} "
                  f"train={e.train_success:.3f} control={e.control_success:.3f} added={e.added_risk:+.3f} "
                  f"ci=({lo:+.3f}, {hi:+.3f}) {'EXCLUDES 0' if lo > 0 or hi < 0 else 'includes 0'} {dt:.1f}s",
                  flush=True)


if __name__ == "__main__":
    main()
