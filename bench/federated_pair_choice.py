"""Which pairs the marginal fit measures: single-party's rule against the federation's, paired.

A single party ranks pairs by their noisy L1 errors against the trained model. A federation
cannot add up errors (an institution's error also counts its own table's difference from the
others'), so it sums random +-1 projections of each pair's residual under SecAgg+ and ranks
pairs by the L2 norms they estimate (:func:`~fedsynth.common.model.marginal_fit.sketched_errors`);
each summed value carries noise of std ``score * sqrt(pairs * projections)``, times
sqrt(K / (K - T)) for the noise shares' excess at K institutions and T = 1. This program emulates
that choice on one party's rows so that only the rule differs: each run trains one single-party
synthesizer (epsilon 1, defaults, the README command's seed-0 split) up to its marginal fit, then
for each rule in turn chooses pairs (fresh noise), measures them at the plan's pair noise and
fits a copy of that generator. An emulation for the bench: nothing here is released.

    python bench/federated_pair_choice.py --rules l1 sketch:16 sketch:4 --tables taxi --repeats 12
    python bench/federated_pair_choice.py --rules l1 sketch:16 l2 sketch:16@30 --tables adult --repeats 6
    python bench/federated_pair_choice.py --rules sketch:16 sketch:16@30 --tables adult --detection-rows 10000
    python bench/federated_pair_choice.py --rules sketch:16 sketch:16@30 l1 --tables flights --choices 300
"""

from __future__ import annotations

import argparse
import copy
import json
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from fedsynth.common.data.encoding import Segment
from fedsynth.common.data.schema import Schema
from fedsynth.common.dp.accounting import noisy_counts
from fedsynth.common.dp.dp_sgd import csprng_torch_rng
from fedsynth.common.model.marginal_fit import (
    JOINT_DRAWS, Pair, all_pairs, block, column_segments, fit_marginals, measured_frequencies, model_joint,
    pair_errors, project_residuals, real_joint_counts, sketched_errors, worth_measuring,
    worth_measuring_l2)
from fedsynth.common.model.tabular import TabularModel
from fedsynth.evaluation.detection import MAX_ROWS_PER_SIDE
from fedsynth.simulations.datasets import BUNDLED, load_dataset
from fedsynth.simulations.partition import holdout_split
from fedsynth.simulations.quality import QUICK_DETECTION_ROWS
from pair_choice import UpToTheFit  # bench/ is on sys.path as the script's folder
from run_means import SCORES, add_run_options, cells, fmt, mean, paired_differences, scores


def choose(rule: str, counts: np.ndarray, joint: np.ndarray, rows: float, segments, plan: dict, silos: int,
           rng: np.random.Generator) -> list[Pair]:
    """The pairs ``rule`` measures: ``l1`` (single-party's), ``sketch:M`` (the federation's with
    M projections and the noise of its sum at ``silos`` institutions, T = 1), ``tables`` (every
    pair's pooled residual table at that noise, a sum SecAgg+ could make, ranked by its L1 less the
    noise's expected part), ``l2`` (exact L2
    norms without noise: the sketch's criterion alone, for diagnosis; not releasable), and either
    L2 rule with ``:scaled`` (norms times sqrt(cells), which is the L1 error where a table's
    residual is spread evenly, ranked against the L1 rule's threshold). ``@N`` after any rule: at
    most N pairs instead of the plan's (the pair-count release's noise follows the number chosen)."""
    rule, _, at = rule.partition("@")
    pairs, k = all_pairs(segments), int(at or plan["marginal_pairs"])
    excess = np.sqrt(silos / (silos - 1))
    if rule == "l1":
        errors = pair_errors(counts, joint, rows, segments, pairs)
        errors = errors + rng.normal(0.0, plan["score_noise"] * np.sqrt(len(pairs)), errors.shape)
        return worth_measuring(errors, segments, pairs, k, plan["pair_noise"])
    if rule == "tables":  # every pair's pooled residual table, each cell at the score release's noise
        std = plan["score_noise"] * excess * np.sqrt(len(pairs))
        errors = []
        for p in pairs:
            residual = block(counts, segments, p) - rows * block(joint, segments, p)
            noisy = residual + rng.normal(0.0, std, residual.shape)
            errors.append(np.abs(noisy).sum() - residual.size * std * np.sqrt(2 / np.pi))  # less noise's own L1
        return worth_measuring(np.array(errors), segments, pairs, k, plan["pair_noise"] * excess)
    kind, scaled = rule.removesuffix(":scaled"), rule.endswith(":scaled")
    if kind == "l2":
        norms = np.array([np.linalg.norm(block(counts, segments, p) - rows * block(joint, segments, p)) for p in pairs])
    else:
        m = int(kind.removeprefix("sketch:"))
        values = np.concatenate(project_residuals(counts, joint, rows, segments, pairs, m, int(rng.integers(2**31))))
        std = plan["score_noise"] * excess * np.sqrt(len(pairs) * m)
        norms = sketched_errors(values + rng.normal(0.0, std, values.shape), len(pairs), m, std)
    if not scaled:
        return worth_measuring_l2(norms, segments, pairs, k, plan["pair_noise"] * excess)
    cells = np.array([segments[a].size * segments[b].size for a, b in pairs], dtype=float)
    # worth_measuring holds an L1 error to cells * std * sqrt(2/pi): the same factor on both sides
    return worth_measuring(norms * np.sqrt(cells) * np.sqrt(2 / np.pi), segments, pairs, k, plan["pair_noise"] * excess)


@dataclass
class BeforeFit:
    """One single-party model trained on a table's seed-0 split up to its marginal fit, with the
    exact 2-way counts of its training rows and the model's expected 2-way marginals."""

    schema: Schema
    train: pd.DataFrame
    holdout: pd.DataFrame
    synth: UpToTheFit
    model: TabularModel
    segments: list[Segment]
    counts: np.ndarray
    joint: np.ndarray
    plan: dict
    rows: float


def up_to_the_fit(table: str) -> BeforeFit:
    df, schema, _ = load_dataset(table)
    train, holdout = holdout_split(df, 0.2, 0)
    synth = UpToTheFit(schema, epsilon=1.0).fit(train)
    model, x_np, plan, rows = synth.before_fit
    segments = column_segments(synth.encoder)
    counts = real_joint_counts(x_np, segments)
    joint = model_joint(model, segments, JOINT_DRAWS, csprng_torch_rng()).numpy()
    return BeforeFit(schema, train, holdout, synth, model, segments, counts, joint, plan, rows or 0.0)


def one_run(table: str, rules: list[str], silos: int, seed: int, detection_rows: int) -> list[dict]:
    t = up_to_the_fit(table)
    seg, synth = t.segments, t.synth
    rng = np.random.default_rng()
    runs = []
    for rule in rules:
        chosen = choose(rule, t.counts, t.joint, t.rows, seg, t.plan, silos, rng)
        noisy = noisy_counts([block(t.counts, seg, p).ravel() for p in chosen], t.plan["pair_noise"])
        synth.model = copy.deepcopy(t.model)
        fit_marginals(synth.model, seg, measured_frequencies(seg, chosen, noisy), synth.marginal_fit)
        runs.append({"table": table, "rule": rule, "seed": seed, "pairs": len(chosen),
                     "chosen": [[seg[a].label, seg[b].label] for a, b in chosen],
                     **scores(synth, t.train, t.holdout, t.schema, table, seed, detection_rows)})
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "chosen"}), flush=True)
    return runs


def label_pair_shares(table: str, rules: list[str], silos: int, draws: int) -> list[dict]:
    """For one model, each rule's choice made ``draws`` times with fresh noise (no fit): the share of
    draws that measure each pair with the table's label. A rare miss of the label's strongest pair
    costs a run its TSTR, which a few fitted runs would not show."""
    t = up_to_the_fit(table)
    label, seg = BUNDLED[table].label, t.segments
    rng = np.random.default_rng()
    out = []
    for rule in rules:
        times = Counter(f"{seg[i].label} x {seg[j].label}" for _ in range(draws)
                        for i, j in choose(rule, t.counts, t.joint, t.rows, seg, t.plan, silos, rng)
                        if label in (seg[i].column, seg[j].column))
        shares = {name: n / draws for name, n in times.most_common()}
        out.append({"table": table, "rule": rule, "draws": draws, "label_pairs": shares})
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", nargs="+", default=["l1", "sketch:16"],
                    help="l1 (single-party's), sketch:M (the federation's, M projections), l2, tables; sketch "
                         "and l2 may end in :scaled, any rule in @N (see choose); the first is the reference")
    ap.add_argument("--silos", type=int, default=10, help="institutions K behind the sketch's noise (T = 1)")
    ap.add_argument("--detection-rows", type=int, default=QUICK_DETECTION_ROWS,
                    help=f"rows a side for the detection AUC (default {QUICK_DETECTION_ROWS:,}; the report's "
                         f"classifier takes up to {MAX_ROWS_PER_SIDE:,})")
    ap.add_argument("--choices", type=int, default=0, metavar="N",
                    help="no fit: per model, each rule's choice N times, and how often it measures each pair "
                         "with the table's label")
    add_run_options(ap, repeats=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.choices:
        shares = [s for r in range(args.repeats) for table in args.tables
                  for s in label_pair_shares(table, args.rules, args.silos, args.choices)]
        if args.json:
            args.json.write_text(json.dumps(shares, indent=1) + "\n")
        return
    runs = [run for r in range(args.repeats) for table in args.tables
            for run in one_run(table, args.rules, args.silos, r, args.detection_rows)]
    measures = (*SCORES, "kept", "pairs")
    print(f"\n{'table':8} {'rule':>10} " + " ".join(f"{m[:6]:>6}" for m in measures)
          + "  paired difference (TSTR, 2-way)")
    for table, rule, cell in cells(runs, args.tables, "rule", args.rules):
        diff = paired_differences(runs, "rule", args.rules[0], cell, ("tstr_auc", "tvd_2way"))
        print(f"{table:8} {rule:>10} " + " ".join(fmt(mean(r[m] for r in cell)) for m in measures)
              + "  " + " ".join(fmt(d) for d in diff))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
