"""singling_out() as shipped: null (disjoint synthetic sample) and copy, per table and seed.

null: training, holdout and "synthetic" rows are disjoint samples of the table (N/2, N/8 and the
rest, a 4:1 training:holdout ratio); copy: an Adult-size 80/20 split with the training rows as
the synthetic table. One line per seed: sizes, predicates, success rates, added risk, interval, time.

    python bench/singling_out_null.py TABLE null|copy SEEDS
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from fedsynth.evaluation.prepared import prepare
from fedsynth.evaluation.singling_out import singling_out
from fedsynth.simulations.datasets import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", help="a bundled table: adult, flights, taxi")
    parser.add_argument("mode", choices=("null", "copy"))
    parser.add_argument("seeds", type=int, help="seeds 0 to SEEDS - 1")
    args = parser.parse_args()
    name = args.table
    df, schema, _ = load_dataset(name)
    total = len(df)
    for seed in range(args.seeds):
        perm = np.random.default_rng(seed).permutation(total)
        if args.mode == "copy":
            n = int(0.8 * total)
            m = total - n
        else:
            n, m = total // 2, total // 8
        tr = prepare(df.iloc[perm[:n]].reset_index(drop=True), schema, "real")
        ho = prepare(df.iloc[perm[n:n + m]].reset_index(drop=True), schema, "holdout")
        sy = tr if args.mode == "copy" else prepare(df.iloc[perm[n + m:]].reset_index(drop=True), schema, "synthetic")
        t0 = time.perf_counter()
        e = singling_out(schema, sy, tr, ho, np.random.default_rng(seed))
        dt = time.perf_counter() - t0
        print(f"{name} {args.mode} seed={seed} n={n} m={m} s={sy.n_rows} P={e.n_train} train={e.train_success:.3f} "
              f"control={e.control_success:.3f} added={e.added_risk:+.3f} "
              f"ci=({e.added_risk_ci95[0]:+.3f}, {e.added_risk_ci95[1]:+.3f}) {dt:.1f}s", flush=True)


if __name__ == "__main__":
    main()
