"""Samples under a schema's constraints: the kept rows raked back to the draws' marginals, or not.

Rows that break a schema's inequalities are redrawn, and the rows that keep them all are a
selection: their high columns run larger than the model draws them. ``Synthesizer.sample`` now
rakes a pool of kept rows back to the marginals of the same draws before rejection
(``fedsynth.common.calibration.rebalanced``). Paired: each run fits one single-party synthesizer
(epsilon 1, defaults, the README command's seed-0 split; flights is the bundled table with
inequalities) and samples it both ways with the same seed; "first kept" takes the first n rows
that keep the constraints, as sampling did before. Prints each measure's mean per table and way,
and the paired difference from "first kept".

    python bench/constraint_sampling.py --tables flights --repeats 3
"""

from __future__ import annotations

import argparse
import json

import pandas as pd
import torch

import fedsynth.common.synthesizer as synthesizer_module
from fedsynth.common.synthesizer import Synthesizer
from fedsynth.simulations.datasets import load_dataset
from fedsynth.simulations.partition import holdout_split
from run_means import SCORES, add_run_options, cells, fmt, mean, paired_differences, scores  # bench/ is on sys.path

WAYS = ("first kept", "raked")


def first_kept(rows: pd.DataFrame, reference: pd.DataFrame, n: int, rng, columns=()) -> pd.DataFrame:
    """Sampling before the change: the first ``n`` rows that keep the constraints."""
    return rows.iloc[:n].reset_index(drop=True)


def one_run(table: str, seed: int) -> list[dict]:
    df, schema, _ = load_dataset(table)
    train, holdout = holdout_split(df, 0.2, 0)
    synth = Synthesizer(schema, epsilon=1.0).fit(train)
    runs = []
    for way in WAYS:
        raked = synthesizer_module.rebalanced
        if way == "first kept":
            synthesizer_module.rebalanced = first_kept
        try:  # scores() samples as many rows as train with this seed
            measured = scores(synth, train, holdout, schema, table, seed)
        finally:
            synthesizer_module.rebalanced = raked
        runs.append({"table": table, "way": way, "seed": seed, **measured})
        print(json.dumps(runs[-1]), flush=True)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(ap, repeats=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runs = [run for r in range(args.repeats) for table in args.tables for run in one_run(table, r)]
    measures = (*SCORES, "kept")
    print(f"\n{'table':8} {'way':>10} " + " ".join(f"{m[:6]:>6}" for m in measures)
          + "  paired difference (TSTR, 1-way, 2-way, detection)")
    for table, way, cell in cells(runs, args.tables, "way", list(WAYS)):
        diff = paired_differences(runs, "way", WAYS[0], cell, ("tstr_auc", "tvd_1way", "tvd_2way", "detection_auc"))
        print(f"{table:8} {way:>10} " + " ".join(fmt(mean(r[m] for r in cell)) for m in measures)
              + "  " + " ".join(fmt(d) for d in diff))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
