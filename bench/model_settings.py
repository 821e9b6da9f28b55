"""ModelConfig settings compared single-party over the suite, interleaved.

For each bundled table, one single-party synthesizer (epsilon 1, defaults otherwise, the marginal
fit included) per ``--settings`` entry and run, on the README command's seed-0 80/20 split. A
setting is ``name=value[,name=value]`` over :class:`fedsynth.common.model.tabular.ModelConfig`'s
fields (``default`` for none). Prints each measure's mean per table and setting and the suite's.

    python bench/model_settings.py --settings default latent=16 latent=32 --repeats 2
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields, replace

import torch

from fedsynth.common.model.tabular import ModelConfig
from fedsynth.common.synthesizer import Synthesizer
from fedsynth.simulations.datasets import BUNDLED, load_dataset
from fedsynth.simulations.partition import holdout_split
from fedsynth.simulations.quality import quick_quality
from run_means import add_run_options, interleaved, print_means  # bench/ is on sys.path as the script's folder

MEASURES = ("tstr_auc", "tvd_1way", "tvd_2way", "detection_auc", "tvd_1way_max", "kept", "seconds")
LABELS = ("tstr", "tvd1", "tvd2", "det", "worst", "kept", "fit_s")


def model_config(setting: str) -> ModelConfig:
    """``default`` or ``name=value[,name=value]``, each value typed as the field's default is."""
    if setting == "default":
        return ModelConfig()
    kinds = {f.name: type(f.default) for f in fields(ModelConfig)}
    changes = {}
    for item in setting.split(","):
        name, _, value = item.partition("=")
        if name not in kinds:
            raise SystemExit(f"unknown ModelConfig field {name!r}; one of {sorted(kinds)}")
        changes[name] = kinds[name](value)
    return replace(ModelConfig(), **changes)


def one_run(table: str, setting: str, seed: int) -> dict:
    df, schema, _ = load_dataset(table)
    train, holdout = holdout_split(df, 0.2, 0)
    synth = Synthesizer(schema, epsilon=1.0, model_config=model_config(setting)).fit(train)
    q = quick_quality(train, holdout, synth.sample(len(train), seed=seed), schema, BUNDLED[table].label, seed)
    kept = q["strong_pairs_kept"] / q["strong_pairs"] if q.get("strong_pairs") else None
    return {"table": table, "setting": setting, "seed": seed, **{m: q.get(m) for m in MEASURES[:-2]}, "kept": kept,
            "seconds": synth.info["fit_seconds"], "worst_column": q.get("worst_column")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", nargs="+", default=["default"])
    add_run_options(ap, repeats=2)
    args = ap.parse_args()
    for setting in args.settings:
        model_config(setting)  # refuse a mistyped setting before any run
    torch.set_num_threads(args.threads)
    runs = interleaved(one_run, args.tables, args.settings, args.repeats)
    print_means(runs, args.tables, "setting", args.settings, MEASURES, LABELS)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
