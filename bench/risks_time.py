"""risks() as `fedsynth evaluate` calls it on an Adult 80/20 split, the synthetic table a copy of the training rows."""
import time

import numpy as np
from fedsynth.simulations.datasets import load_dataset
from fedsynth.evaluation.prepared import prepare
from fedsynth.evaluation.risks import risks
df, schema, b = load_dataset("adult")
perm = np.random.default_rng(0).permutation(len(df)); n = int(0.8 * len(df))
tr = prepare(df.iloc[perm[:n]].reset_index(drop=True), schema, "real"); ho = prepare(df.iloc[perm[n:]].reset_index(drop=True), schema, "holdout")
t = time.perf_counter()
r = risks(tr, ho, tr, schema, ("income", "race"), "income", seed=0)
print(f"risks() copy, Adult {n}/{len(df)-n}: {time.perf_counter() - t:.1f}s")
for e in r.estimates:
    print(f"  {e.attack:30s} {e.detail[:28]:28s} t={e.train_success:.3f} c={e.control_success:.3f} added={e.added_risk:+.3f} ci=({e.added_risk_ci95[0]:+.3f}, {e.added_risk_ci95[1]:+.3f})")
print(r.singling_out.sentence)
