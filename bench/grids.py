"""The bundled schemas with and without their declared grids (``step``), single-party, paired.

A grid column's released histogram has a cell per grid value, so calibrated sampling writes only
values a real row can hold (:mod:`fedsynth.common.data.grid`); without the grid the same column
has 256 equal bins and continuous values inside them. On the bundled schemas only flights declares
grids (its ASOS weather readings: temperature and dew point in tenths of a degree Celsius, wind and
gusts in whole knots, pressure in tenths of a millibar, precipitation in hundredths of an inch), so
``--tables`` defaults to flights. ``off`` removes every ``step`` from the schema for the run.
``--drafted``: the schema ``schema draft`` writes for the table's CSV instead (a new user's path:
it suggests the grids it finds, e.g. flights' wind in knots and its direction in tens of degrees).

    python bench/grids.py --repeats 3
    python bench/grids.py --drafted --tables adult flights taxi --repeats 2
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from functools import partial

import torch

from fedsynth.common.data.schema_draft import draft_file
from fedsynth.common.data.tables import load_table
from fedsynth.common.synthesizer import Synthesizer
from fedsynth.simulations.datasets import bundled_paths, load_dataset
from fedsynth.simulations.partition import holdout_split
from run_means import SCORES, add_run_options, run_and_report, scores  # bench/ is on sys.path as the script's folder

MEASURES = (*SCORES, "kept")
LABELS = ("tstr", "tvd1", "tvd2", "det", "worst", "kept")


def one_run(table: str, grids: str, seed: int, drafted: bool = False) -> dict:
    if drafted:
        csv, _ = bundled_paths(table)
        schema = draft_file(csv, name=table).schema
        df = load_table(csv, schema)
    else:
        df, schema, _ = load_dataset(table)
    if grids == "off":
        schema = replace(schema, columns=[replace(c, step=None, step_origin=None) for c in schema.columns])
    train, holdout = holdout_split(df, 0.2, 0)
    synth = Synthesizer(schema, epsilon=1.0).fit(train)
    return {"table": table, "grids": grids, "seed": seed, **scores(synth, train, holdout, schema, table, seed)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grids", nargs="+", choices=["on", "off"], default=["off", "on"])
    add_run_options(ap, repeats=3)
    ap.add_argument("--drafted", action="store_true", help="the drafted schema, not the bundled one")
    ap.set_defaults(tables=["flights"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run_and_report(partial(one_run, drafted=args.drafted), args, "grids", args.grids, MEASURES, LABELS)


if __name__ == "__main__":
    main()
