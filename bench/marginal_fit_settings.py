"""The marginal fit's own settings, compared on the same trained models and the same measurements.

The fit is post-processing of two releases, so its settings can be compared paired: each run
trains one single-party synthesizer (epsilon 1, defaults) on a table of the suite (the README
command's seed-0 80/20 split), keeps its generator as DP-SGD left it and its noisy 2-way
measurements, then fits a copy of that generator with each setting in turn. Only the fit's
latent draws differ between settings; the DP noise and the chosen pairs are shared, which is
what makes a difference of 0.01 visible in a few runs. Prints each measure's mean per table and
setting, the suite's mean, and each setting's mean paired difference from the first one.

    python bench/marginal_fit_settings.py --settings loss=l1 loss=kl --repeats 3
    python bench/marginal_fit_settings.py --settings loss=kl loss=kl,lr=0.01 --tables flights
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import replace

import torch

from fedsynth.common.model.marginal_fit import fit_marginals
from fedsynth.common.synthesizer import Synthesizer
from fedsynth.simulations.datasets import load_dataset
from fedsynth.simulations.partition import holdout_split
from fedsynth.simulations.quality import quick_quality
from run_means import add_run_options, cells, fmt, mean, paired_differences, parse_setting  # bench/ is on sys.path as the script's folder

MEASURES = ("tstr", "tvd1", "tvd2", "det", "kept", "fit_s")


class Captured(Synthesizer):
    """A synthesizer that keeps what its marginal fit started from: the generator DP-SGD left and
    the noisy measurements (both already accounted in its privacy history)."""

    def _measure_marginals(self, x_np, plan, rows):
        self.captured = (copy.deepcopy(self.model), *super()._measure_marginals(x_np, plan, rows))
        return self.captured[1:]


def one_run(table: str, settings: list[str], seed: int) -> list[dict]:
    df, schema, bundled = load_dataset(table)
    train, holdout = holdout_split(df, 0.2, 0)
    synth = Captured(schema, epsilon=1.0).fit(train)
    start_model, segments, measured = synth.captured
    runs = []
    for setting in settings:
        synth.model = copy.deepcopy(start_model)
        t = time.time()
        fit_marginals(synth.model, segments, measured, replace(synth.marginal_fit, **parse_setting(setting)))
        fit_s = time.time() - t
        q = quick_quality(train, holdout, synth.sample(len(train), seed=seed), schema, bundled.label, seed)
        strong = q["strong_pairs"]
        runs.append({"table": table, "setting": setting, "seed": seed, "tstr": q.get("tstr_auc"),
                     "tvd1": q["tvd_1way"], "tvd2": q["tvd_2way"], "det": q["detection_auc"],
                     "kept": q["strong_pairs_kept"] / strong if strong else None, "strong": strong,
                     "fit_s": round(fit_s, 1), "pairs": len(measured)})
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", nargs="+", default=["loss=l1", "loss=kl"],
                    help="MarginalFitConfig fields, key=value[,key=value]; the first is the reference")
    add_run_options(ap, repeats=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runs: list[dict] = []
    for r in range(args.repeats):
        for table in args.tables:
            for run in one_run(table, args.settings, r):
                runs.append(run)
                print(json.dumps(run), flush=True)
    print(f"\n{'table':8} {'setting':24} " + " ".join(f"{m:>6}" for m in MEASURES)
          + "   paired difference from the first setting (tstr tvd1 tvd2 det kept)")
    for table, setting, cell in cells(runs, args.tables, "setting", args.settings):
        diffs = paired_differences(runs, "setting", args.settings[0], cell, MEASURES[:5])
        print(f"{table:8} {setting:24} " + " ".join(fmt(mean(r[m] for r in cell)) for m in MEASURES)
              + "   " + " ".join(fmt(d) for d in diffs))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
