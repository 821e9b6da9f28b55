"""The marginal fit on a random subset of columns per step (``MarginalFitConfig.step_width``), paired.

A fine-tune step forms every pair's expected 2-way table, D x D cells for D encoded cells a side,
so its cost grows with D squared: a 56-column table (D ~ 1,000) took seconds a step. With
``step_width`` set, a table wider than that fits each step on its measured pairs' columns and a
random few of the others, the anchored pairs weighted by the inverse of their chance of being
drawn. The bundled tables are narrower than the default width (512), so this program measures
the approximation where it can be compared with the whole fit: each run trains one single-party
synthesizer (epsilon 1, defaults, the README command's seed-0 split) up to its marginal fit,
measures its pairs once, and fits copies of that generator at each width, given as a fraction of
the table's own D (1 = every column, the reference). Prints each measure's mean per table and
width, the paired differences against the reference and the fine-tune's time as a ratio to it.

    python bench/fit_width.py --fractions 1 0.5 0.3 --tables adult flights --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time

import numpy as np
import torch

from fedsynth.common.model.marginal_fit import fit_marginals
from fedsynth.simulations.datasets import load_dataset
from fedsynth.simulations.partition import holdout_split
from pair_choice import UpToTheFit  # bench/ is on sys.path as the script's folder
from run_means import SCORES, add_run_options, cells, fmt, mean, paired_differences, scores


def one_run(table: str, fractions: list[float], seed: int) -> list[dict]:
    df, schema, _ = load_dataset(table)
    train, holdout = holdout_split(df, 0.2, 0)
    synth = UpToTheFit(schema, epsilon=1.0).fit(train)
    model, x_np, plan, rows = synth.before_fit
    segments, measured = synth._measure_marginals(x_np, plan, rows)
    width = sum(s.size for s in segments)
    runs = []
    for fraction in fractions:
        config = dataclasses.replace(synth.marginal_fit, step_width=0 if fraction >= 1 else max(1, round(fraction * width)))
        synth.model = copy.deepcopy(model)
        start = time.perf_counter()
        before, after = fit_marginals(synth.model, segments, measured, config)
        seconds = time.perf_counter() - start
        runs.append({"table": table, "fraction": fraction, "seed": seed, "width": width,
                     "step_width": config.step_width, "fit_seconds": seconds, "fit_tvd_after": after,
                     **scores(synth, train, holdout, schema, table, seed)})
        print(json.dumps(runs[-1]), flush=True)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fractions", nargs="+", type=float, default=[1.0, 0.5],
                    help="step widths as fractions of each table's D; the first is the reference")
    add_run_options(ap, repeats=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runs = [run for r in range(args.repeats) for table in args.tables for run in one_run(table, args.fractions, r)]
    measures = (*SCORES, "kept", "fit_tvd_after")
    print(f"\n{'table':8} {'fraction':>8} " + " ".join(f"{m[:6]:>6}" for m in measures)
          + "  time ratio  paired difference (TSTR, 1-way, 2-way, detection)")
    for table, fraction, cell in cells(runs, args.tables, "fraction", args.fractions):
        diff = paired_differences(runs, "fraction", args.fractions[0], cell,
                                  ("tstr_auc", "tvd_1way", "tvd_2way", "detection_auc"))
        reference = {(r["table"], r["seed"]): r["fit_seconds"] for r in runs if r["fraction"] == args.fractions[0]}
        ratio = np.median([r["fit_seconds"] / reference[(r["table"], r["seed"])] for r in cell])
        print(f"{table:8} {fraction:>8} " + " ".join(fmt(mean(r[m] for r in cell)) for m in measures)
              + f"  {ratio:10.2f}  " + " ".join(fmt(d) for d in diff))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
