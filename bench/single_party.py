"""Single-party (centralized DP) fedsynth on Adult: the numbers behind issue 2's acceptance.

80/20 split (seeded), `Synthesizer` with its defaults at the given epsilon, as many synthetic
rows as training rows, then TSTR ROC AUC (gradient boosting, real holdout) and 1-/2-way TVD.

    python bench/single_party.py [--epsilon 1] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fedsynth.common.synthesizer import Synthesizer
from fedsynth.simulations.datasets import load_dataset
from fedsynth.simulations.partition import holdout_split
from fedsynth.simulations.quality import quick_quality


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--model", default="vae")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    torch.set_num_threads(2)
    df, schema, _ = load_dataset("adult")
    rows = []
    for seed in args.seeds:
        train, hold = holdout_split(df, 0.2, seed)
        t = time.time()
        s = Synthesizer(schema, model=args.model, epsilon=args.epsilon, delta=args.delta).fit(train)
        fit_s = time.time() - t
        q = quick_quality(train, hold, s.sample(len(train), seed=seed), schema, "income")
        rows.append((seed, s.epsilon_spent, q["tstr_auc"], q["trtr_auc"], q["tvd_1way"], q["tvd_2way"], fit_s))
        print(f"seed {seed}: epsilon spent {s.epsilon_spent:.4f}  TSTR AUC {q['tstr_auc']:.3f} (real {q['trtr_auc']:.3f})"
              f"  1-way TVD {q['tvd_1way']:.3f}  2-way TVD {q['tvd_2way']:.3f}  fit {fit_s:.1f}s", flush=True)
    a = np.array([r[1:] for r in rows])
    print(f"mean over {len(rows)} seed(s): TSTR {a[:, 1].mean():.3f}  ratio to real {a[:, 1].mean() / a[:, 2].mean():.3f}"
          f"  1-way TVD {a[:, 3].mean():.3f}  2-way TVD {a[:, 4].mean():.3f}")


if __name__ == "__main__":
    main()
