"""The table suite: quick quality on every bundled table, single-party and federated.

Defaults are chosen by the mean over this suite, never by Adult alone. For each bundled table
(``fedsynth.simulations.datasets.BUNDLED``: Adult, NYC flights with a date column, Chicago
taxi trips with a rare positive class) it takes the README command's 80/20 holdout split
(``--seed``) and runs, ``--repeats`` times with fresh DP noise:

* ``single-party``: one DP synthesizer on the pooled training rows;
* ``federated``: ``--clients`` Dirichlet(``--alpha``) silos over the label, trained by
  :func:`federated_quality.federated_run` (the clients' and the coordinator's own round code,
  without Flower's transport), or with ``--engine flower`` by ``fedsynth simulate``'s own
  driver (:func:`fedsynth.simulations.driver.run`: the real Flower Simulation Engine with
  SecAgg+, ledgers on disk, the CLI's defaults; same split, fresh DP noise each repeat);
* each ``--anchors`` system (smartnoise MST / AIM, ...), run by ``bench/anchor_run.py`` in the
  separate bench venv (``bash bench/setup_anchors.sh``) on the same training rows; a missing
  venv or a failing anchor is recorded, not fatal.

Every number is :func:`fedsynth.simulations.quality.quick_quality`'s (TSTR ROC AUC on the real
holdout, TRTR the real-data ceiling, mean 1-way and 2-way TVD against the training rows, the worst
column's 1-way TVD, and the real-vs-synthetic detection ROC AUC, 0.5 when a classifier cannot
tell them apart; the real holdout's scores as the sampling-noise floor). Prints per-table means
and the mean over the suite for each system; ``--json PATH`` writes every run.

    python bench/suite.py --repeats 3                          # epsilon 1, 5 Dirichlet silos
    python bench/suite.py rounds=2 --repeats 1 --tables taxi   # a smoke run (settings before --tables)
    python bench/suite.py --repeats 3 --anchors mst aim        # with the centralized anchors
    python bench/suite.py --noise shared --engine flower --clients 10 --epsilon 3   # simulate's own runs
    python bench/suite.py rounds=160 batch_factor=1.0 --noise shared --engine flower --tables taxi  # another plan
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from federated_quality import (  # bench/ is on sys.path as the script's folder
    build_plan,
    build_shared_plan,
    federated_run,
    single_party_run,
)
from fedsynth.common.data.schema import Schema
from fedsynth.common.data.tables import load_table, write_table
from fedsynth.server.shared_plan import default_sample_rate
from fedsynth.simulations.datasets import BUNDLED, load_dataset
from fedsynth.simulations.driver import SimulationConfig
from fedsynth.simulations.driver import run as simulate
from fedsynth.simulations.partition import holdout_split, partition
from fedsynth.simulations.quality import DEFINITION, quick_quality

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = ("mst", "aim", "dpctgan", "patectgan")
ANCHOR_EPOCHS = 30
METRICS = ("tstr_auc", "trtr_auc", "tvd_1way", "tvd_2way", "detection_auc", "tvd_1way_max", "strong_kept_share")


@dataclass(frozen=True)
class Run:
    """One system's synthetic table scored once."""

    tstr_auc: float | None
    trtr_auc: float | None
    tvd_1way: float
    tvd_2way: float
    seconds: float
    detection_auc: float | None = None  # real-vs-synthetic classifier; 0.5 = indistinguishable
    tvd_1way_max: float | None = None  # the worst column's 1-way TVD (issue 16: none above 0.08)
    worst_column: str | None = None
    strong_pairs: int | None = None  # real pairs with association >= 0.5 (issue 16: each kept within 0.1)
    strong_pairs_kept: int | None = None
    strong_pair_worst: dict | None = None  # the one furthest off: columns, real, synthetic
    epsilon_max: float | None = None  # the epsilon spent (federated: the largest institution's ledger)
    fit_skipped: str | None = None  # federated: why the run ended without its marginal fit, if it did
    rounds_lost: int | None = None  # federated: planned rounds never completed (the run stopped early)

    @property
    def strong_kept_share(self) -> float | None:
        return self.strong_pairs_kept / self.strong_pairs if self.strong_pairs else None


@dataclass
class Cell:
    """One system on one table: its runs, their means, or why it has none."""

    table: str
    system: str
    runs: list[Run] = field(default_factory=list)
    error: str | None = None

    def mean(self, metric: str) -> float | None:
        vals = [getattr(r, metric) for r in self.runs if getattr(r, metric) is not None]
        return float(np.mean(vals)) if vals else None


@dataclass(frozen=True)
class TableInfo:
    """What a table's numbers are measured against."""

    name: str
    train_rows: int
    holdout_rows: int
    columns: int
    label: str
    positive_share: float
    tvd_1way_floor: float
    tvd_2way_floor: float
    detection_auc_floor: float | None = None


def as_run(q: dict, seconds: float) -> Run:
    return Run(q.get("tstr_auc"), q.get("trtr_auc"), q["tvd_1way"], q["tvd_2way"], round(seconds, 1),
               q.get("detection_auc"), q.get("tvd_1way_max"), q.get("worst_column"), q.get("strong_pairs"),
               q.get("strong_pairs_kept"), q.get("strong_pair_worst"), q.get("epsilon_spent_max"),
               (q.get("marginal_fit") or {}).get("skipped"), q.get("rounds_lost"))


def anchor_synthetic(name: str, train: pd.DataFrame, schema: Schema, epsilon: float, delta: float, seed: int,
                     venv: Path, timeout: float) -> pd.DataFrame:
    """Synthetic rows from one centralized anchor, run by bench/anchor_run.py in the bench venv."""
    py = venv / "bin" / "python"
    if not py.exists():
        raise RuntimeError(f"not installed: {py} missing (run bash bench/setup_anchors.sh)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_table(train, root / "train.csv", schema=schema)
        schema.save(root / "schema.json")
        cmd = [str(py), str(ROOT / "bench" / "anchor_run.py"), "--anchor", name, "--train", str(root / "train.csv"),
               "--schema", str(root / "schema.json"), "--epsilon", str(epsilon), "--delta", str(delta),
               "--rows", str(len(train)), "--seed", str(seed), "--out", str(root / "synthetic.csv"),
               "--epochs", str(ANCHOR_EPOCHS)]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-600:]}")
        return load_table(root / "synthetic.csv", schema)


#: the settings ``--engine flower`` accepts: the shared-noise plan's public knobs, which
#: ``simulate`` also takes (a model field would need a CLI option there first)
FLOWER_SETTINGS = ("rounds", "batch_factor", "sample_rate", "pairs")


def flower_plan(settings: list[str], pooled_rows: int) -> dict:
    """``SimulationConfig`` fields for ``rounds=`` / ``batch_factor=`` / ``sample_rate=`` / ``pairs=`` settings.

    ``batch_factor`` becomes the sample rate ``simulate`` would take by that rule on the pooled
    rows (:func:`~fedsynth.server.shared_plan.default_sample_rate`), as the in-process plan does."""
    given = dict(item.split("=", 1) for item in settings)
    unknown = sorted(set(given) - set(FLOWER_SETTINGS))
    if unknown:
        raise SystemExit(f"--engine flower takes only {', '.join(FLOWER_SETTINGS)}; not {', '.join(unknown)}")
    fields: dict = {}
    for name in ("rounds", "pairs"):
        if name in given:
            fields[name] = int(given[name])
    if "sample_rate" in given:
        fields["sample_rate"] = float(given["sample_rate"])
    elif "batch_factor" in given:
        fields["sample_rate"] = default_sample_rate(pooled_rows, float(given["batch_factor"]))
    return fields


def flower_quality(name: str, noise: str, repeat: int, args: argparse.Namespace, plan: dict | None = None) -> dict:
    """One ``fedsynth simulate`` run (real Flower Simulation Engine, SecAgg+) on the suite's split.

    The driver splits with ``args.seed`` exactly as :func:`run_table` does, so its training rows
    and silos are the in-process runs'; only the DP noise (a CSPRNG's) differs between repeats.
    ``plan``: :func:`flower_plan`'s fields. With ``args.keep`` the run's folder (events, model
    card, summary, synthetic rows) stays there."""
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep if args.keep is not None else Path(tmp)
        out = root / f"{name}-{noise}-{args.clients}silos-eps{args.epsilon:g}-run{repeat}"
        cfg = SimulationConfig(out=str(out), data=name, clients=args.clients, partition="dirichlet",
                               alpha=args.alpha, epsilon=args.epsilon, delta=args.delta, noise=noise,
                               seed=args.seed, threads=args.threads, **(plan or {}))
        summary = simulate(cfg, print_fn=lambda _line: None)
    card = summary["model_card"]
    spent = [c["epsilon_spent"] for c in card["clients"] if isinstance(c["epsilon_spent"], (int, float))]
    return {**summary["quality"], "epsilon_spent_max": max(spent, default=None), "marginal_fit": card.get("marginal_fit"),
            "rounds_lost": card["rounds_planned"] - card["rounds_completed"]}


def run_table(name: str, args: argparse.Namespace) -> tuple[TableInfo, list[Cell]]:
    """Every system on one bundled table, ``args.repeats`` times each."""
    df, schema, bundled = load_dataset(name)
    label = bundled.label
    train, holdout = holdout_split(df, 0.2, args.seed)
    floor = quick_quality(train, holdout, holdout, schema, None, floor=True)
    info = TableInfo(name, len(train), len(holdout), len(schema.columns), label, bundled.positive_share,
                     floor["tvd_1way_floor"], floor["tvd_2way_floor"], floor.get("detection_auc_floor"))
    plans = {} if args.engine == "flower" else {
        noise: (build_plan(args.settings, schema, args.seed) if noise == "local" else
                build_shared_plan(args.settings, schema, args.seed, len(train), args.clients, args.epsilon, args.delta))
        for noise in args.noise}
    flower = flower_plan(args.settings, len(train)) if args.engine == "flower" else None
    silos = partition(train, "dirichlet", args.clients, label=label, alpha=args.alpha, seed=args.seed)
    engine = ", Flower" if args.engine == "flower" else ""
    federated = [Cell(name, f"federated, {noise} noise ({args.clients} silos{engine})") for noise in args.noise]
    single = [] if args.no_single_party else [Cell(name, "single-party")]
    cells = [*single, *federated]
    cells += [Cell(name, f"anchor {a}") for a in args.anchors]
    for r in range(args.repeats):
        seed = args.seed + r
        t = time.time()
        if single:
            q = single_party_run(train, holdout, schema, args.epsilon, args.delta, seed, label)
            single[0].runs.append(as_run(q, time.time() - t))
        for noise, cell in zip(args.noise, federated):
            t = time.time()
            if args.engine == "flower":
                q = flower_quality(name, noise, r, args, flower)
            else:
                q = federated_run(train, holdout, schema, silos, plans[noise], args.epsilon, args.delta, None,
                                  args.threads, seed, label)
            cell.runs.append(as_run(q, time.time() - t))
        for anchor, cell in zip(args.anchors, cells[len(single) + len(federated):]):
            if cell.error:
                continue
            t = time.time()
            try:
                syn = anchor_synthetic(anchor, train, schema, args.epsilon, args.delta, seed, args.bench_venv,
                                       args.anchor_timeout)
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
                cell.error = f"{type(exc).__name__}: {str(exc)[:600]}"
                continue
            cell.runs.append(as_run(quick_quality(train, holdout, syn, schema, label, seed), time.time() - t))
        for cell in cells:
            if cell.runs and len(cell.runs) == r + 1:
                print(f"[{name}] {cell.system} run {r}: {_scores(cell.runs[-1])}  {cell.runs[-1].seconds:.0f}s",
                      flush=True)
    return info, cells


def _fmt(v: float | None) -> str:
    return "   -  " if v is None else f"{v:6.3f}"


def _scores(run: Run) -> str:
    spent = "" if run.epsilon_max is None else f"  max epsilon {run.epsilon_max:.3f}"
    if run.rounds_lost:
        spent += f"  ROUNDS LOST: {run.rounds_lost}"
    if run.fit_skipped:
        spent += f"  NO MARGINAL FIT: {run.fit_skipped}"
    return (f"TSTR {_fmt(run.tstr_auc)}  1-way TVD {_fmt(run.tvd_1way)}  2-way TVD {_fmt(run.tvd_2way)}  "
            f"detection AUC {_fmt(run.detection_auc)}  worst column {run.worst_column} {_fmt(run.tvd_1way_max)}  "
            f"{_strong(run)}{spent}")


def _strong(run: Run) -> str:
    if not run.strong_pairs:
        return "no strong pairs"
    w = run.strong_pair_worst or {}
    return (f"strong pairs kept {run.strong_pairs_kept}/{run.strong_pairs} (worst {'~'.join(w.get('columns', []))} "
            f"real {w.get('real', float('nan')):.2f} synthetic {w.get('synthetic', float('nan')):.2f})")


def suite_means(cells: list[Cell]) -> dict[str, dict[str, float | None]]:
    """Per system, the unweighted mean over tables of each table's mean (tables with runs only)."""
    out: dict[str, dict[str, float | None]] = {}
    for system in dict.fromkeys(c.system for c in cells):
        mine = [c for c in cells if c.system == system and c.runs]
        out[system] = {m: (float(np.mean([v for v in (c.mean(m) for c in mine) if v is not None]))
                           if any(c.mean(m) is not None for c in mine) else None) for m in METRICS}
        out[system]["tables"] = len(mine)
    return out


def print_summary(infos: list[TableInfo], cells: list[Cell], means: dict) -> None:
    print(f"\n{'table':<8} {'system':<44} {'TSTR':>6} {'TRTR':>6} {'1-way':>6} {'2-way':>6} {'detect':>6} "
          f"{'worst':>6} {'strong':>6}  runs")
    for info in infos:
        for c in (c for c in cells if c.table == info.name):
            if c.error and not c.runs:
                print(f"{info.name:<8} {c.system:<44} unavailable: {c.error[:80]}")
                continue
            print(f"{info.name:<8} {c.system:<44} " + " ".join(_fmt(c.mean(m)) for m in METRICS) + f"  {len(c.runs)}")
        print(f"{info.name:<8} {'real holdout (TVD floor)':<44} {'':>6} {'':>6} {_fmt(info.tvd_1way_floor)} "
              f"{_fmt(info.tvd_2way_floor)} {_fmt(info.detection_auc_floor)}")
    for system, m in means.items():
        print(f"{'MEAN':<8} {system:<44} " + " ".join(_fmt(m[k]) for k in METRICS) + f"  over {m['tables']} tables")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("settings", nargs="*", help="FederationPlan / ModelConfig fields as name=value (federated runs)")
    ap.add_argument("--tables", nargs="+", default=sorted(BUNDLED), choices=sorted(BUNDLED))
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--seed", type=int, default=0, help="holdout and silo split (the README command's is 0)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--noise", nargs="*", default=["local", "shared"], choices=["local", "shared"],
                    help="federated runs to make: local noise, shared noise (simulate --noise), both, or none")
    ap.add_argument("--engine", choices=["in-process", "flower"], default="in-process",
                    help="federated runs: the round code in-process (about 2x faster), or simulate's real Flower "
                         "Simulation Engine with SecAgg+ (its CLI defaults; of the settings, only "
                         "rounds=, batch_factor=, sample_rate=)")
    ap.add_argument("--keep", type=Path, default=None,
                    help="--engine flower: keep each run's folder under this directory (a new run name each)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for each training")
    ap.add_argument("--anchors", nargs="*", default=[], choices=ANCHORS)
    ap.add_argument("--no-single-party", action="store_true",
                    help="skip the single-party runs (when only the federated or anchor columns are re-measured)")
    ap.add_argument("--bench-venv", type=Path, default=ROOT / ".bench-venv")
    ap.add_argument("--anchor-timeout", type=float, default=1800.0)
    ap.add_argument("--json", type=Path, default=None, help="write every run, the per-table and suite means here")
    args = ap.parse_args()
    if args.engine == "flower":
        flower_plan(args.settings, 1)  # refuse what simulate cannot take before any run
    torch.set_num_threads(args.threads)
    infos, cells = [], []
    for name in args.tables:
        info, table_cells = run_table(name, args)
        infos.append(info)
        cells += table_cells
    means = suite_means(cells)
    print_summary(infos, cells, means)
    if args.json:
        result = {"definition": DEFINITION, "engine": args.engine, "epsilon": args.epsilon, "delta": args.delta,
                  "seed": args.seed, "repeats": args.repeats, "clients": args.clients, "alpha": args.alpha,
                  "settings": args.settings, "anchors": args.anchors, "tables": [asdict(i) for i in infos],
                  "cells": [{**asdict(c), "mean": {m: c.mean(m) for m in METRICS}} for c in cells],
                  "suite_mean": means}
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
