"""Integer columns one-hot by value up to 32 values (``MAX_EXACT_INT_LEVELS``, the default) or up
to a larger limit, single-party, paired.

Issue 16 suggests encoding integer columns with up to about 128 public values exactly (age, hours,
day of month). Every integer column with up to 2,048 values already has one cell per value in the
released histogram, which the sampler's quantile map puts the synthetic values on; this measures
whether the *encoder* should also give each value its own token (a wider model, and 2-way tables
of the marginal fit with that many more cells). On the bundled schemas only Adult's age (74
values) and hours-per-week (99) change, so ``--tables`` defaults to Adult; a drafted schema's
day-of-month column would change too. The limit is a module constant, set here per run.

    python bench/exact_ints.py --repeats 4
    python bench/exact_ints.py --levels 32 64 128 --repeats 2
"""

from __future__ import annotations

import argparse

import torch

import fedsynth.common.data.schema as schema_module
from fedsynth.common.synthesizer import Synthesizer
from fedsynth.simulations.datasets import load_dataset
from fedsynth.simulations.partition import holdout_split
from run_means import SCORES, add_run_options, run_and_report, scores  # bench/ is on sys.path as the script's folder

MEASURES = (*SCORES, "kept", "width")
LABELS = ("tstr", "tvd1", "tvd2", "det", "worst", "kept", "width")


def one_run(table: str, levels: int, seed: int) -> dict:
    schema_module.MAX_EXACT_INT_LEVELS = levels  # read by Column.is_discrete_int at each call
    df, schema, _ = load_dataset(table)
    train, holdout = holdout_split(df, 0.2, 0)
    synth = Synthesizer(schema, epsilon=1.0).fit(train)
    return {"table": table, "levels": levels, "seed": seed, **scores(synth, train, holdout, schema, table, seed),
            "width": synth.encoder.dim}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", nargs="+", type=int, default=[schema_module.MAX_EXACT_INT_LEVELS, 128])
    add_run_options(ap, repeats=4)
    ap.set_defaults(tables=["adult"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run_and_report(one_run, args, "levels", args.levels, MEASURES, LABELS)


if __name__ == "__main__":
    main()
