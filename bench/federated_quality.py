"""Federated quality over repeated runs: fedsynth's federation loop without Flower's transport.

Every institution runs exactly the code a Flower client runs (``Institution.check`` then
``Institution.train_round``: its own ledger, calibrated noise, DP-SGD, packed and weighted
update), and the coordinator ends each round with the strategy's own round
(:func:`fedsynth.server.round.finish_round`: guard, aggregate, next global model, round
record) and the run with the marginal fit when the plan has one (``Institution.marginal_release``,
:mod:`fedsynth.server.marginal_rounds`). What is left out is only the transport: the mean is computed here, where SecAgg+
would hand the coordinator the same mean (up to its fixed-point quantisation), so this measures the training recipe, and
does so ~3x faster than a Flower simulation, which is what lets us average several runs per
setting (one run's TSTR moves by about +-0.02 with fresh DP noise).

The split is the README command's (``--seed`` picks the 80/20 holdout and the silos); each
repeat draws fresh DP noise. Settings are FederationPlan fields given as ``name=value``:

    python bench/federated_quality.py --repeats 3                      # the defaults
    python bench/federated_quality.py --repeats 3 local_epochs=1.0 rounds=30
    python bench/federated_quality.py --repeats 3 --single-party      # pooled baseline, same split
    python bench/federated_quality.py --repeats 3 --dataset taxi      # another bundled table
    python bench/federated_quality.py --repeats 3 pairs=20            # with the marginal fit
    python bench/federated_quality.py --repeats 3 --shared pairs=20   # shared noise (simulate's default)
    python bench/federated_quality.py --repeats 3 --shared --before-fit --epsilon 3   # and before the marginal fit

bench/suite.py runs both over every bundled table.

Prints one line per run and the mean and standard deviation; ``--json PATH`` appends them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from fedsynth.client.app import ClientSettings, Institution
from fedsynth.client.ledger import Ledger
from fedsynth.common.errors import BudgetExhausted
from fedsynth.common.model.marginal_fit import MarginalFitConfig, column_segments, planned_pairs
from fedsynth.common.protocol.marginal_stage import StageSum, read_stage_sum, stage_length
from fedsynth.common.protocol.messages import FitConfig, Stage
from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.data.schema import Schema
from fedsynth.common.protocol.federation import (FIELD_CLIPPING_RANGE, FederationPlan, SecAggSettings, federated_model_config, run_secagg,
                                                 shared_grid)
from fedsynth.common.model.tabular import ModelConfig, build_model
from fedsynth.common.dp.plan import TrainingConfig
from fedsynth.common.synthesizer import Synthesizer
from fedsynth.common.data.tables import write_table
from fedsynth.server.checkpoint import Checkpoint, write_global_model
from fedsynth.server.marginal_rounds import (NO_PAIR_COUNTS, NO_PAIR_ERRORS, NO_PAIR_WORTH_IT, choose_pairs,
                                             fit_global_model, pooled_errors)
from fedsynth.server.round import finish_round
from fedsynth.server.shared_plan import BATCH_FACTOR, SHARED_PAIRS, SHARED_ROUNDS, SharedNoiseRequest, default_sample_rate
from fedsynth.server.shared_round import PooledCounts, ServerAdam, finish_shared_round, pooled_counts, run_bin_edges
from fedsynth.simulations.datasets import BUNDLED, load_dataset
from fedsynth.simulations.partition import holdout_split, partition
from fedsynth.simulations.quality import quick_quality


def parse_overrides(items: list[str]) -> tuple[dict, dict]:
    """``name=value`` pairs -> (FederationPlan fields, ModelConfig fields)."""
    plan_f = {f.name for f in fields(FederationPlan)}
    model_f = {f.name for f in fields(ModelConfig)}
    plan_kw, model_kw = {}, {}
    for item in items:
        name, _, raw = item.partition("=")
        try:
            value = json.loads(raw)  # numbers, true/false/null, lists
        except json.JSONDecodeError:
            value = raw  # a bare string such as model=gan
        if name == "pairs":  # the marginal fit's pair count (0: none)
            plan_kw["marginal_fit"] = MarginalFitConfig(pairs=int(value))
        elif name in model_f:
            model_kw[name] = value
        elif name in plan_f:
            plan_kw[name] = value
        else:
            raise SystemExit(f"unknown setting {name!r}: not a FederationPlan or ModelConfig field")
    return plan_kw, model_kw


def build_plan(settings: list[str], schema: Schema, seed: int) -> FederationPlan:
    """The plan for ``settings`` (``name=value`` overrides of the defaults) on ``schema``'s table."""
    plan_kw, model_kw = parse_overrides(settings)
    return FederationPlan(**plan_kw, model=federated_model_config(**model_kw), schema_hash=schema.hash(), seed=seed)


def build_shared_plan(settings: list[str], schema: Schema, seed: int, pooled_rows: int, clients: int,
                      epsilon: float, delta: float) -> FederationPlan:
    """``simulate --noise shared``'s plan: single-party widths, SHARED_ROUNDS and SHARED_PAIRS unless
    ``rounds=`` / ``pairs=`` are given, q by the pooled rows (or ``sample_rate=``, or the rows' rule at
    ``batch_factor=`` instead of BATCH_FACTOR), T = 1, K_min = every institution, sigma
    calibrated for ``epsilon``."""
    rates = [item for item in settings if item.startswith(("sample_rate=", "batch_factor="))]
    plan_kw, model_kw = parse_overrides([item for item in settings if item not in rates])
    plan_kw.setdefault("rounds", SHARED_ROUNDS)
    plan_kw.setdefault("marginal_fit", MarginalFitConfig(pairs=SHARED_PAIRS))
    plan = FederationPlan(**plan_kw, model=ModelConfig(**model_kw), schema_hash=schema.hash(), seed=seed)
    given = dict(item.split("=", 1) for item in rates)
    rate = float(given["sample_rate"]) if "sample_rate" in given else \
        default_sample_rate(pooled_rows, float(given.get("batch_factor", BATCH_FACTOR)))
    request = SharedNoiseRequest(rate, epsilon=epsilon, delta=delta,
                                 collusion_tolerance=1, min_contributors=clients)
    return request.resolve(plan, schema)


def federated_run(train, holdout, schema, silos, plan: FederationPlan, epsilon: float, delta: float,
                  batch_size: int | None, threads: int, seed: int, label: str, before_fit: bool = False) -> dict:
    """One federated run's quick quality; ``before_fit``: also the global model's before the
    marginal fit (the same run, so the two are paired), under ``"before_fit"``."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        schema.save(root / "schema.json")
        institutions = []
        for i, silo in enumerate(silos, start=1):
            data = root / f"client-{i}.csv"
            write_table(silo, data, schema=schema)
            state = root / f"state-{i}"
            Ledger.create(state, epsilon, delta)
            institutions.append(Institution(ClientSettings(str(data), str(root / "schema.json"), str(state),
                                                           epsilon, delta, batch_size=batch_size, threads=threads)))
        encoder = TableEncoder(schema)
        torch.manual_seed(plan.seed)
        current = build_model(encoder, plan.model).get_arrays()
        freqs, history, budget, steps = None, [], {}, []
        shared = plan.shared_noise is not None
        clipping = run_secagg(SecAggSettings(), plan).clipping_range  # what the Flower runs use
        optimizer = ServerAdam(current, plan.model.lr) if shared else None
        pooled = _pooled_counts(institutions, plan, encoder) if shared else None
        if pooled is not None:
            freqs = pooled.freqs
        edges = run_bin_edges(schema, plan, freqs)  # measured bins, from the pooled counts (None: the schema's)
        for rnd in range(1, plan.rounds + 1):
            updates, reports = [], {}
            for i, inst in enumerate(institutions):
                reply = inst.check(plan, len(institutions))
                budget[str(i)] = reply
                if reply.can_train:
                    update, reports[str(i)] = inst.train_round(current, plan, rnd, len(institutions), clipping, edges)
                    updates.append(update)
            if not updates:
                break
            mean = [np.mean([u[j].astype(np.float64) for u in updates], axis=0) for j in range(len(updates[0]))]
            if optimizer is not None:
                if pooled is None:
                    break  # the pooled counts round did not complete: nothing can be scaled
                outcome = finish_shared_round(mean, plan, shared_grid(plan, current), pooled.rows, len(updates),
                                              optimizer, pooled.freqs)
            else:
                outcome = finish_round(current, mean, plan, clipping, encoder.counts_layout, len(updates))
            current, freqs = outcome.arrays, outcome.freqs
            if outcome.server_lr is not None:
                steps.append(outcome.server_lr)  # unrounded, as measured before (the record rounds to 4 places)
            history.append(outcome.record(rnd, reports))
        fitted, unfitted = None, None
        if history and planned_pairs(plan.marginal_fit, column_segments(encoder)):
            if before_fit:
                unfitted = _model_quality(root / "before-fit", schema, plan,
                                          Checkpoint(len(history), current, freqs, [], plan.to_json(), ""), {},
                                          train, holdout, label, seed)
            current, fitted = marginal_fit(institutions, plan, schema, current, freqs, len(history),
                                           pooled.rows if pooled else None, edges)
        spent = [inst.ledger().epsilon_spent for inst in institutions]
        quality = _model_quality(root, schema, plan, Checkpoint(len(history), current, freqs, history, plan.to_json(),
                                                                "", marginal_fit=fitted), budget,
                                 train, holdout, label, seed)
    return {**quality, "epsilon_spent_max": max(spent),
            "rounds_lost": plan.rounds - len(history),
            "server_lr_mean": round(float(np.mean(steps)), 3) if steps else None, "marginal_fit": fitted,
            **({"before_fit": unfitted} if unfitted else {})}


def _model_quality(out: Path, schema, plan: FederationPlan, ckpt: Checkpoint, budget, train, holdout, label: str,
                   seed: int) -> dict:
    """Quick quality of the global model in ``ckpt``, written under ``out`` as the coordinator writes
    it and sampled (the run's end, and ``--before-fit``'s model before the marginal fit)."""
    out.mkdir(exist_ok=True)
    write_global_model(out, schema, plan, ckpt, budget, {})
    return quick_quality(train, holdout, Synthesizer.load(out / "synthesizer").sample(len(train), seed=seed), schema,
                         label)


def _stage_sum(institutions: list[Institution], fit: FitConfig, current: list[np.ndarray], length: int
               ) -> StageSum | None:
    """One one-off release of every institution that makes it, summed as SecAgg+ would."""
    packed = []
    for inst in institutions:
        try:
            if fit.stage == Stage.POOLED_COUNTS:
                packed.append(inst.pooled_counts_release(fit)[0][0])
            else:
                packed.append(inst.marginal_release(current, fit)[0][0])
        except BudgetExhausted:
            continue
    return read_stage_sum([np.sum(packed, axis=0) / len(packed)], len(packed), length) if packed else None


def _pooled_counts(institutions: list[Institution], plan: FederationPlan, encoder: TableEncoder) -> PooledCounts | None:
    """Shared noise: the pooled counts round before round 1 (server/workflow.py), without transport."""
    fit = FitConfig(plan, 0, len(institutions), FIELD_CLIPPING_RANGE, 0, Stage.POOLED_COUNTS)
    length = stage_length(Stage.POOLED_COUNTS, [], (), 0, encoder.count_sizes)
    total = _stage_sum(institutions, fit, [], length)
    return pooled_counts(total, plan, encoder.counts_layout) if total else None


def marginal_fit(institutions: list[Institution], plan: FederationPlan, schema: Schema, current: list[np.ndarray],
                 freqs, rounds: int, pooled_rows: float | None = None, bin_edges=None
                 ) -> tuple[list[np.ndarray], dict | None]:
    """The coordinator's marginal fit after the last round (server/workflow.py), without transport."""
    segments = column_segments(TableEncoder(schema))

    def ask(stage: str, pairs=()) -> FitConfig:
        return FitConfig(plan, rounds + 1, len(institutions), FIELD_CLIPPING_RANGE, 0, stage, tuple(pairs), bin_edges)

    j = plan.marginal_fit.projections
    errors = _stage_sum(institutions, ask(Stage.PAIR_ERRORS), current, stage_length(Stage.PAIR_ERRORS, segments, (), j))
    if errors and plan.shared_noise is not None:
        errors = pooled_errors(schema, plan, current, freqs, pooled_rows or 1.0, errors)
    if not errors:  # the records server/workflow.py writes when it ends without the fit
        return current, {"skipped": NO_PAIR_ERRORS}
    chosen = choose_pairs(schema, plan, errors)
    if not chosen:
        return current, {"skipped": NO_PAIR_WORTH_IT}
    counts = _stage_sum(institutions, ask(Stage.PAIR_COUNTS, chosen), current,
                        stage_length(Stage.PAIR_COUNTS, segments, tuple(chosen), j))
    if not counts:
        return current, {"skipped": NO_PAIR_COUNTS}
    return fit_global_model(schema, plan, current, freqs, chosen, counts)


def single_party_run(train, holdout, schema, epsilon: float, delta: float, seed: int, label: str,
                     training: TrainingConfig | None = None) -> dict:
    """One single-party fit (the defaults, or ``training``'s plan) scored by ``quick_quality``."""
    s = Synthesizer(schema, epsilon=epsilon, delta=delta, training=training).fit(train)
    return {**quick_quality(train, holdout, s.sample(len(train), seed=seed), schema, label),
            "epsilon_spent_max": s.epsilon_spent}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("settings", nargs="*", help="FederationPlan / ModelConfig fields as name=value")
    ap.add_argument("--dataset", default="adult", choices=sorted(BUNDLED), help="bundled table")
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--partition", default="dirichlet")
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--batch-size", type=int, default=None, help="each institution's expected batch")
    ap.add_argument("--seed", type=int, default=0, help="holdout and silo split (the README command's is 0)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for each training (clients train in turn)")
    ap.add_argument("--single-party", action="store_true", help="pooled single-party baseline instead")
    ap.add_argument("--shared", action="store_true", help="shared noise, as simulate's default (--noise shared)")
    ap.add_argument("--before-fit", action="store_true",
                    help="also the global model's quality before the marginal fit, in the same run")
    ap.add_argument("--json", type=Path, default=None, help="append the runs and their mean here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    df, schema, bundled = load_dataset(args.dataset)
    label = bundled.label
    train, holdout = holdout_split(df, 0.2, args.seed)
    plan = build_shared_plan(args.settings, schema, args.seed, len(train), args.clients, args.epsilon, args.delta) \
        if args.shared else build_plan(args.settings, schema, args.seed)
    silos = partition(train, args.partition, args.clients, label=label, alpha=args.alpha, seed=args.seed)
    name = "single-party" if args.single_party else ((" ".join(args.settings) or "defaults") + (" shared" if args.shared else ""))
    runs = []
    for r in range(args.repeats):
        t = time.time()
        if args.single_party:
            q = single_party_run(train, holdout, schema, args.epsilon, args.delta, args.seed + r, label)
        else:
            q = federated_run(train, holdout, schema, silos, plan, args.epsilon, args.delta, args.batch_size,
                              args.threads, args.seed + r, label, before_fit=args.before_fit)
        runs.append({k: q[k] for k in ("tstr_auc", "trtr_auc", "tvd_1way", "tvd_2way", "detection_auc",
                                       "epsilon_spent_max", "server_lr_mean", "strong_pairs", "strong_pairs_kept",
                                       "strong_pair_worst", "worst_column", "tvd_1way_max", "rounds_lost") if k in q})
        if "before_fit" in q:
            runs[-1]["before_fit"] = {k: q["before_fit"][k] for k in ("tstr_auc", "tvd_1way", "tvd_2way",
                                                                       "detection_auc")}
            print(f"[{name}] run {r} before the marginal fit: " + "  ".join(
                f"{k} {v:.3f}" for k, v in runs[-1]["before_fit"].items()), flush=True)
        skipped = (q.get("marginal_fit") or {}).get("skipped")
        if skipped:
            runs[-1]["fit_skipped"] = skipped
        lr = f"  mean server step {q['server_lr_mean']:.2f}" if q.get("server_lr_mean") is not None else ""
        lr += f"  ROUNDS LOST: {q['rounds_lost']}" if q["rounds_lost"] else ""
        lr += f"  NO MARGINAL FIT: {skipped}" if skipped else ""
        print(f"[{name}] run {r}: TSTR {q['tstr_auc']:.3f}  1-way TVD {q['tvd_1way']:.3f}  "
              f"2-way TVD {q['tvd_2way']:.3f}  detection AUC {q.get('detection_auc') or float('nan'):.3f}  "
              f"worst column {runs[-1].get('worst_column')} {runs[-1].get('tvd_1way_max') or float('nan'):.3f}  "
              f"strong pairs kept {q.get('strong_pairs_kept')}/{q.get('strong_pairs')}  "
              f"max epsilon {q['epsilon_spent_max']:.3f}{lr}  {time.time() - t:.0f}s",
              flush=True)
    tstr = np.array([r["tstr_auc"] for r in runs])
    summary = {"dataset": args.dataset, "setting": name, "partition": args.partition, "clients": args.clients, "epsilon": args.epsilon,
               "seed": args.seed, "runs": runs, "tstr_mean": float(tstr.mean()),
               "tstr_sd": float(tstr.std(ddof=1)) if len(tstr) > 1 else 0.0,
               "tvd_1way_mean": float(np.mean([r["tvd_1way"] for r in runs])),
               "tvd_2way_mean": float(np.mean([r["tvd_2way"] for r in runs]))}
    print(f"[{name}] mean of {len(runs)}: TSTR {summary['tstr_mean']:.3f} +- {summary['tstr_sd']:.3f}  "
          f"1-way TVD {summary['tvd_1way_mean']:.3f}  2-way TVD {summary['tvd_2way_mean']:.3f}", flush=True)
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
