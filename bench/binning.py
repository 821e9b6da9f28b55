"""Where the encoder's numerical bins lie, over the suite: measured (at equal masses of the
released histograms, ``ModelConfig.binning = "measured"``, the default) against the schema's
equal-width bins.

For each bundled table, one single-party synthesizer (epsilon 1, defaults otherwise) per
``--binning`` value and run, on the README command's seed-0 80/20 split; with ``--drafted`` the
schema is the one `schema draft` writes for the table's CSV (a new user's path) instead of the
bundled one. Prints each measure's mean per table and binning and the suite's mean.

    python bench/binning.py --repeats 3
    python bench/binning.py --drafted --repeats 2
"""

from __future__ import annotations

import argparse

import torch

from fedsynth.common.data.schema_draft import draft_file
from fedsynth.common.data.tables import load_table
from fedsynth.common.model.tabular import BINNINGS, ModelConfig
from fedsynth.common.synthesizer import Synthesizer
from fedsynth.simulations.datasets import bundled_paths, load_dataset
from fedsynth.simulations.partition import holdout_split
from run_means import SCORES, add_run_options, run_and_report, scores  # bench/ is on sys.path as the script's folder

MEASURES = (*SCORES, "kept")
LABELS = ("tstr", "tvd1", "tvd2", "det", "worst", "kept")


def one_run(table: str, binning: str, seed: int, drafted: bool) -> dict:
    if drafted:
        csv, _ = bundled_paths(table)
        schema = draft_file(csv, name=table).schema
        df = load_table(csv, schema)
    else:
        df, schema, _ = load_dataset(table)
    train, holdout = holdout_split(df, 0.2, 0)
    synth = Synthesizer(schema, epsilon=1.0, model_config=ModelConfig(binning=binning)).fit(train)
    return {"table": table, "binning": binning, "drafted": drafted, "seed": seed,
            **scores(synth, train, holdout, schema, table, seed)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binning", nargs="+", default=list(BINNINGS), choices=BINNINGS)
    add_run_options(ap, repeats=3)
    ap.add_argument("--drafted", action="store_true", help="`schema draft`'s schema instead of the bundled one")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run_and_report(lambda table, binning, r: one_run(table, binning, r, args.drafted), args, "binning", args.binning,
                   MEASURES, LABELS)


if __name__ == "__main__":
    main()
