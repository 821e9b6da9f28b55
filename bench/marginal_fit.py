"""The marginal fit on and off: single-party fits on every bundled table, fresh DP noise each run.

For each table of the suite (the README command's seed-0 80/20 split) and each ``--pairs`` value
(0 = no marginal fit), ``--repeats`` fits at epsilon 1 with the defaults otherwise; prints the mean
TSTR ROC AUC, 1-way / 2-way TVD, detection ROC AUC, strong real pairs kept (association >= 0.5,
kept within 0.1) and fit time per cell, then each measure's mean over the suite per setting.

    python bench/marginal_fit.py --repeats 3                  # pairs 0 and 20
    python bench/marginal_fit.py --pairs 0 10 20 40 --tables adult
"""

from __future__ import annotations

import argparse
import time

import torch

from fedsynth.common.model.marginal_fit import MarginalFitConfig
from fedsynth.common.synthesizer import Synthesizer
from fedsynth.simulations.datasets import load_dataset
from fedsynth.simulations.partition import holdout_split
from fedsynth.simulations.quality import quick_quality
from run_means import add_run_options, run_and_report  # bench/ is on sys.path as the script's folder

MEASURES = ("tstr", "tvd1", "tvd2", "det", "kept", "fit_s")


def one_run(table: str, pairs: int, seed: int) -> dict:
    df, schema, bundled = load_dataset(table)
    train, holdout = holdout_split(df, 0.2, 0)
    t = time.time()
    synth = Synthesizer(schema, epsilon=1.0, marginal_fit=MarginalFitConfig(pairs=pairs)).fit(train)
    fit_s = time.time() - t
    synthetic = synth.sample(len(train), seed=seed)
    q = quick_quality(train, holdout, synthetic, schema, bundled.label, seed)
    kept, strong = q["strong_pairs_kept"], q["strong_pairs"]
    return {"table": table, "pairs": pairs, "seed": seed, "tstr": q.get("tstr_auc"), "tvd1": q["tvd_1way"],
            "tvd2": q["tvd_2way"], "det": q["detection_auc"], "kept": kept / strong if strong else None,
            "strong": strong, "fit_s": round(fit_s, 1), "epsilon": synth.epsilon_spent}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, nargs="+", default=[0, MarginalFitConfig().pairs])
    add_run_options(ap, repeats=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run_and_report(one_run, args, "pairs", args.pairs, MEASURES)


if __name__ == "__main__":
    main()
