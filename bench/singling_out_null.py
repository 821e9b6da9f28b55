"""singling_out() as shipped: null (disjoint synthetic sample) and copy, per table and seed."""
import sys, time
import numpy as np
from fedsynth.simulations.datasets import load_dataset
from fedsynth.evaluation.prepared import prepare
from fedsynth.evaluation.singling_out import singling_out

name, mode, seeds = sys.argv[1], sys.argv[2], int(sys.argv[3])
df, schema, _ = load_dataset(name)
N = len(df)
for seed in range(seeds):
    perm = np.random.default_rng(seed).permutation(N)
    if mode == "copy":   # Adult-size 80/20 split, synthetic = the training rows
        n = int(0.8 * N); m = N - n; s0 = 0
    else:                # disjoint train / holdout / synthetic, 4:1 train:holdout
        n, m = N // 2, N // 8
    tr = prepare(df.iloc[perm[:n]].reset_index(drop=True), schema, "real")
    ho = prepare(df.iloc[perm[n:n + m]].reset_index(drop=True), schema, "holdout")
    sy = tr if mode == "copy" else prepare(df.iloc[perm[n + m:]].reset_index(drop=True), schema, "synthetic")
    t0 = time.perf_counter()
    e = singling_out(schema, sy, tr, ho, np.random.default_rng(seed))
    dt = time.perf_counter() - t0
    print(f"{name} {mode} seed={seed} n={n} m={m} s={sy.n_rows} P={e.n_train} train={e.train_success:.3f} "
          f"control={e.control_success:.3f} added={e.added_risk:+.3f} ci=({e.added_risk_ci95[0]:+.3f}, {e.added_risk_ci95[1]:+.3f}) {dt:.1f}s", flush=True)
