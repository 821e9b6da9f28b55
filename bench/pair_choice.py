"""How many 2-way pairs the marginal fit measures: the shipped rule against the one before 2026-11-27.

Measuring n pair tables puts Gaussian noise of std ``sigma * sqrt(n)`` in each of their cells. The
shipped rule (``marginal_fit.worth_measuring``) takes the most pairs n <= k that each beat that
noise; the former one held every pair to the noise of k tables (the plan's 20) and then measured
the few that passed at their own, far lower noise. Where at least k pairs pass, the two choose the
same pairs (Adult and flights); they differ where fewer do (taxi).

Paired: each run trains one single-party synthesizer (epsilon 1, defaults, the README command's
seed-0 split) up to its marginal fit, then lets each rule make its own pair releases (fresh noise)
and fit a copy of that generator, so only the choice and its noise differ. Prints each measure's
mean per table and rule, the pairs measured, and the paired TSTR difference.

    python bench/pair_choice.py --tables taxi --repeats 12
"""

from __future__ import annotations

import argparse
import copy
import json

import numpy as np
import torch

import fedsynth.common.synthesizer as synthesizer_module
from fedsynth.common.data.encoding import Segment
from fedsynth.common.model.marginal_fit import Pair, fit_marginals, worth_measuring
from fedsynth.common.synthesizer import Synthesizer
from fedsynth.simulations.datasets import load_dataset
from fedsynth.simulations.partition import holdout_split
from run_means import SCORES, add_run_options, fmt, mean, scores  # bench/ is on sys.path as the script's folder


def former_rule(errors: np.ndarray, segments: list[Segment], pairs: list[Pair], k: int,
                noise_multiplier: float) -> list[Pair]:
    """Before 2026-11-27: every pair against the noise of k tables, at most k of those that pass."""
    std = noise_multiplier * np.sqrt(max(k, 1))
    thresholds = [segments[a].size * segments[b].size * std * np.sqrt(2 / np.pi) for a, b in pairs]
    order = np.argsort(-np.asarray(errors))
    return [pairs[i] for i in order if errors[i] > thresholds[i]][:k]


RULES = {"shipped": worth_measuring, "former": former_rule}


class UpToTheFit(Synthesizer):
    """A synthesizer that stops before its marginal fit and keeps what the fit starts from."""

    def _fit_marginals(self, x_np, plan, rows, progress=None):
        self.before_fit = (copy.deepcopy(self.model), x_np, dict(plan), rows)
        return None


def one_run(table: str, seed: int) -> list[dict]:
    df, schema, _ = load_dataset(table)
    train, holdout = holdout_split(df, 0.2, 0)
    synth = UpToTheFit(schema, epsilon=1.0).fit(train)
    model, x_np, plan, rows = synth.before_fit
    runs = []
    for name, rule in RULES.items():
        synth.model = copy.deepcopy(model)
        synthesizer_module.worth_measuring = rule  # what Synthesizer._measure_marginals calls
        try:
            segments, measured = synth._measure_marginals(x_np, plan, rows)
        finally:
            synthesizer_module.worth_measuring = worth_measuring
        fit_marginals(synth.model, segments, measured, synth.marginal_fit)
        runs.append({"table": table, "rule": name, "seed": seed, "pairs": len(measured),
                     **scores(synth, train, holdout, schema, table, seed)})
        print(json.dumps(runs[-1]), flush=True)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(ap, repeats=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runs = [run for r in range(args.repeats) for table in args.tables for run in one_run(table, r)]
    measures = (*SCORES, "kept", "pairs")
    print(f"\n{'table':8} {'rule':>8} " + " ".join(f"{m[:6]:>6}" for m in measures) + "  paired TSTR difference")
    for table in args.tables:
        cell = {name: [r for r in runs if r["table"] == table and r["rule"] == name] for name in RULES}
        diffs = [a["tstr_auc"] - b["tstr_auc"] for a, b in zip(cell["shipped"], cell["former"])
                 if a["tstr_auc"] is not None and b["tstr_auc"] is not None]
        for name in RULES:
            line = " ".join(fmt(mean(r[m] for r in cell[name])) for m in measures)
            extra = f"  {np.mean(diffs):+.3f} (sd {np.std(diffs, ddof=1):.3f})" if name == "shipped" and len(diffs) > 1 else ""
            print(f"{table:8} {name:>8} {line}{extra}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
