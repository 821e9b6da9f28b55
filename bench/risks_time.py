"""risks() as `fedsynth evaluate` calls it on an Adult 80/20 split, the synthetic table a copy of the training rows.

Prints the time risks() took and every attack's training and control success rates and added
risk with its 95 % interval, then the singling-out sentence.

    python bench/risks_time.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from fedsynth.evaluation.prepared import prepare
from fedsynth.evaluation.risks import risks
from fedsynth.simulations.datasets import load_dataset


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    df, schema, _ = load_dataset("adult")
    perm = np.random.default_rng(0).permutation(len(df))
    n = int(0.8 * len(df))
    train = prepare(df.iloc[perm[:n]].reset_index(drop=True), schema, "real")
    holdout = prepare(df.iloc[perm[n:]].reset_index(drop=True), schema, "holdout")
    t = time.perf_counter()
    r = risks(train, holdout, train, schema, ("income", "race"), "income", seed=0)
    print(f"risks() copy, Adult {n}/{len(df) - n}: {time.perf_counter() - t:.1f}s")
    for e in r.estimates:
        lo, hi = e.added_risk_ci95
        print(f"  {e.attack:30s} {e.detail[:28]:28s} t={e.train_success:.3f} c={e.control_success:.3f} "
              f"added={e.added_risk:+.3f} ci=({lo:+.3f}, {hi:+.3f})")
    print(r.singling_out.sentence)


if __name__ == "__main__":
    main()
