"""singling_out() as shipped: null (disjoint synthetic sample) and copy, per table and seed.

The splits are bench/risk_splits.py's. One line per seed: sizes, predicates, success rates, added risk, interval, time.

    python bench/singling_out_null.py TABLE null|copy SEEDS
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from fedsynth.evaluation.singling_out import singling_out
from fedsynth.simulations.datasets import load_dataset
from risk_splits import MODES, risk_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", help="a bundled table: adult, flights, taxi")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("seeds", type=int, help="seeds 0 to SEEDS - 1")
    args = parser.parse_args()
    name = args.table
    df, schema, _ = load_dataset(name)
    for seed in range(args.seeds):
        tr, ho, sy = risk_split(df, schema, args.mode, seed)
        n, m = tr.n_rows, ho.n_rows
        t0 = time.perf_counter()
        e = singling_out(schema, sy, tr, ho, np.random.default_rng(seed))
        dt = time.perf_counter() - t0
        print(f"{name} {args.mode} seed={seed} n={n} m={m} s={sy.n_rows} P={e.n_train} train={e.train_success:.3f} "
              f"control={e.control_success:.3f} added={e.added_risk:+.3f} "
              f"ci=({e.added_risk_ci95[0]:+.3f}, {e.added_risk_ci95[1]:+.3f}) {dt:.1f}s", flush=True)


if __name__ == "__main__":
    main()
