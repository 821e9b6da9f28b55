"""ModelConfig settings compared single-party over the suite, interleaved.

For each bundled table, one single-party synthesizer (epsilon 1, defaults otherwise, the marginal
fit included) per ``--settings`` entry and run, on the README command's seed-0 80/20 split. A
setting is ``name=value[,name=value]`` over :class:`fedsynth.common.model.tabular.ModelConfig`'s
fields (``default`` for none). Prints each measure's mean per table and setting and the suite's.

    python bench/model_settings.py --settings default latent=16 latent=32 --repeats 2
"""

from __future__ import annotations

import argparse
from dataclasses import fields, replace

import torch

from fedsynth.common.model.tabular import ModelConfig
from fedsynth.common.synthesizer import Synthesizer
from fedsynth.simulations.datasets import load_dataset
from fedsynth.simulations.partition import holdout_split
from run_means import (  # bench/ is on sys.path as the script's folder
    SCORES,
    add_run_options,
    parse_setting,
    run_and_report,
    scores,
)

MEASURES = (*SCORES, "kept", "seconds")
LABELS = ("tstr", "tvd1", "tvd2", "det", "worst", "kept", "fit_s")


def model_config(setting: str) -> ModelConfig:
    """``default`` or ``name=value[,name=value]`` (:func:`run_means.parse_setting`)."""
    changes = {} if setting == "default" else parse_setting(setting)
    known = sorted(f.name for f in fields(ModelConfig))
    unknown = set(changes) - set(known)
    if unknown:
        raise SystemExit(f"unknown ModelConfig fields {sorted(unknown)}; one of {known}")
    return replace(ModelConfig(), **changes)


def one_run(table: str, setting: str, seed: int) -> dict:
    df, schema, _ = load_dataset(table)
    train, holdout = holdout_split(df, 0.2, 0)
    synth = Synthesizer(schema, epsilon=1.0, model_config=model_config(setting)).fit(train)
    return {"table": table, "setting": setting, "seed": seed, **scores(synth, train, holdout, schema, table, seed),
            "seconds": synth.info["fit_seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", nargs="+", default=["default"])
    add_run_options(ap, repeats=2)
    args = ap.parse_args()
    for setting in args.settings:
        model_config(setting)  # refuse a mistyped setting before any run
    torch.set_num_threads(args.threads)
    run_and_report(one_run, args, "setting", args.settings, MEASURES, LABELS)


if __name__ == "__main__":
    main()
