"""A new user's path over the suite: `schema draft`'s schema with its numericals at several bin counts.

Every bundled table's CSV is drafted as a new user drafts theirs (no hand-set bounds, bins or rules),
then each binned numerical's (and datetime's) ``bins`` is set to each ``--bins`` value in turn and
one single-party synthesizer (epsilon 1, defaults) is fitted on the README command's seed-0 80/20
split. The bins are the encoder's public tokens: the relations DP-SGD and the marginal fit see
between a numerical and the other columns are between its bins, so too few of them hide a relation
inside one bin (flights' dep_delay x late). Prints each measure's mean per table and bin count and
the suite's mean.

    python bench/drafted_bins.py --bins 12 24 48 --repeats 2
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from fedsynth.common.data.schema import Schema
from fedsynth.common.data.schema_draft import draft_file
from fedsynth.common.data.tables import load_table
from fedsynth.common.synthesizer import Synthesizer
from fedsynth.simulations.datasets import bundled_paths
from fedsynth.simulations.partition import holdout_split
from run_means import SCORES, add_run_options, run_and_report, scores  # bench/ is on sys.path as the script's folder

MEASURES = (*SCORES, "kept")
LABELS = ("tstr", "tvd1", "tvd2", "det", "worst", "kept")


def with_bins(schema: Schema, bins: int) -> Schema:
    """``schema`` with every column the encoder bins (numericals not encoded value by value, and
    datetimes) split into ``bins`` public bins."""
    def binned(c):
        return c.type == "datetime" or (c.type == "numerical" and not c.is_discrete_int)
    return replace(schema, columns=tuple(replace(c, bins=bins) if binned(c) else c for c in schema.columns))


def one_run(table: str, bins: int, seed: int) -> dict:
    csv, _ = bundled_paths(table)
    schema = with_bins(draft_file(csv, name=table).schema, bins)
    train, holdout = holdout_split(load_table(csv, schema), 0.2, 0)
    synth = Synthesizer(schema, epsilon=1.0).fit(train)
    return {"table": table, "bins": bins, "seed": seed, **scores(synth, train, holdout, schema, table, seed)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bins", type=int, nargs="+", default=[12, 24, 48])
    add_run_options(ap, repeats=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run_and_report(one_run, args, "bins", args.bins, MEASURES, LABELS)


if __name__ == "__main__":
    main()
