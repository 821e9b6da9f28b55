"""Quality versus privacy: fedsynth federated, fedsynth single-party and centralized anchors,
on the same split, measured by the same code.

For every epsilon in the grid (and "no DP"), on one seeded 80/20 split of Adult:

* **fedsynth federated**: ``fedsynth simulate`` (the Flower Simulation Engine, SecAgg+ on, the
  default federation plan) for each partition (IID, Dirichlet alpha = 0.5 on the label,
  natural split by ``race``: 5 institutions) and client count;
* **fedsynth single-party**: ``fedsynth.Synthesizer`` defaults on the pooled training rows;
* **centralized anchors**: smartnoise-synth MST, AIM, DP-CTGAN, PATE-CTGAN and CTGAN without
  DP (SDV's synthesizer), each run by bench/anchor_run.py inside the separate bench venv
  (``bash bench/setup_anchors.sh``) as a subprocess of this program on the same training
  CSV and public schema. They only write synthetic CSV.

Every row's numbers come from ``fedsynth.simulations.quality.quick_quality`` (itself a view
over ``fedsynth.evaluation``): TSTR ROC AUC of gradient boosting trained on the
synthetic rows and tested on the real holdout, and mean 1-/2-way TVD against the training
rows. Failures and time-outs are rows too.

"No DP": fedsynth's privacy checks refuse an infinite epsilon, so fedsynth runs at epsilon =
1e4 (noise multiplier ~0; per-sample clipping still on) and says so; MST runs at the same
epsilon; CTGAN runs without any DP.

    python bench/quality_privacy.py                 # default grid, ~10-15 min on 2 cores
    python bench/quality_privacy.py --full          # the whole grid (hours on 2 cores)
    python bench/quality_privacy.py --epsilons 1 --partitions iid natural --clients 5 --anchors mst ctgan
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from fedsynth.common.synthesizer import Synthesizer
from fedsynth.common.data.tables import load_table, write_table
from fedsynth.simulations.datasets import load_dataset
from fedsynth.simulations.partition import holdout_split
from fedsynth.simulations.quality import DEFINITION, quick_quality

ROOT = Path(__file__).resolve().parents[1]
NO_DP = math.inf
NO_DP_EPSILON = 1e4  # what "no DP" means for fedsynth and MST (see the docstring)
ANCHORS = ("mst", "aim", "dpctgan", "patectgan", "ctgan")
DP_ANCHORS = ("mst", "aim", "dpctgan", "patectgan")


def eps_label(e: float) -> str:
    return "no DP" if math.isinf(e) else f"{e:g}"


def parse_eps(text: str) -> float:
    return NO_DP if text.lower() in ("inf", "nodp", "no-dp", "none") else float(text)


def _git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "fedsynth", "client", "server", "common", "simulations", "evaluation"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + (" + uncommitted changes to the package" if dirty else "")
    except OSError:
        return "unknown"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work or tempfile.mkdtemp(prefix="fedsynth-qp-"))
        self.work.mkdir(parents=True, exist_ok=True)
        df, self.schema, bundled = load_dataset("adult")
        self.label = bundled.label
        self.train, self.holdout = holdout_split(df, 0.2, args.seed)
        self.train_csv, self.schema_json = self.work / "train.csv", self.work / "schema.json"
        write_table(self.train, self.train_csv, schema=self.schema)
        self.schema.save(self.schema_json)
        self.rows: list[dict] = []
        self.out = Path(args.json)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.meta = {"date": date.today().isoformat(), "command": "python bench/quality_privacy.py " + " ".join(sys.argv[1:]),
                     "commit": _git_commit(), "dataset": "adult", "seed": args.seed, "train_rows": len(self.train),
                     "holdout_rows": len(self.holdout), "metrics": DEFINITION, "no_dp_epsilon": NO_DP_EPSILON}

    # ------------------------------------------------------------------ bookkeeping
    def record(self, system: str, eps: float, synth=None, seconds: float | None = None, error: str | None = None,
               **extra) -> None:
        row = {"system": system, "epsilon": eps_label(eps), "seconds": None if seconds is None else round(seconds, 1),
               **extra}
        if synth is not None:
            q = quick_quality(self.train, self.holdout, synth, self.schema, self.label, seed=self.args.seed)
            row.update(tstr_auc=q["tstr_auc"], tvd_1way=q["tvd_1way"], tvd_2way=q["tvd_2way"])
        if error:
            row["error"] = error
        self.rows.append(row)
        self.save()
        shown = (f"TSTR {row['tstr_auc']:.3f}  1-way {row['tvd_1way']:.3f}  2-way {row['tvd_2way']:.3f}"
                 if "tstr_auc" in row else f"ERROR {error}")
        print(f"[{time.strftime('%H:%M:%S')}] {system:<48} eps {eps_label(eps):>5}  {shown}  "
              f"({row['seconds']} s)", flush=True)

    def save(self) -> None:
        self.out.write_text(json.dumps({"meta": self.meta, "rows": self.rows}, indent=2, default=str) + "\n")

    # ------------------------------------------------------------------ systems
    def ceiling(self) -> None:
        q = quick_quality(self.train, self.holdout, self.train, self.schema, self.label, seed=self.args.seed,
                          floor=True)
        self.rows.append({"system": "real training rows (TRTR ceiling; TVD = holdout vs train noise floor)",
                          "epsilon": "-", "tstr_auc": q["trtr_auc"], "tvd_1way": q["tvd_1way_floor"],
                          "tvd_2way": q["tvd_2way_floor"], "seconds": None})
        self.save()

    def single_party(self, eps: float) -> None:
        e = NO_DP_EPSILON if math.isinf(eps) else eps
        torch.set_num_threads(2)
        t = time.time()
        try:
            s = Synthesizer(self.schema, epsilon=e, delta=self.args.delta).fit(self.train)
            syn = s.sample(len(self.train), seed=self.args.seed)
            self.record("fedsynth single-party (pooled rows)", eps, syn, time.time() - t,
                        epsilon_spent=round(s.epsilon_spent, 4), noise_multiplier=s.info["plan"]["noise_multiplier"])
        except Exception as exc:
            self.record("fedsynth single-party (pooled rows)", eps, None, time.time() - t, error=f"{type(exc).__name__}: {exc}")

    def federated(self, eps: float, partition: str, clients: int) -> None:
        e = NO_DP_EPSILON if math.isinf(eps) else eps
        name = {"iid": "IID", "dirichlet": "Dirichlet(0.5) on income", "natural": "natural split by race"}[partition]
        n = 5 if partition == "natural" else clients
        system = f"fedsynth federated, {n} clients, {name}"
        out = self.work / f"fed-{partition}-{n}-{eps_label(eps).replace(' ', '')}"
        cmd = [sys.executable, "-c", "from fedsynth.cli import main; main()", "simulate", "--data", "adult",
               "--partition", partition, "--label", self.label, "--epsilon", str(e), "--delta", str(self.args.delta),
               "--seed", str(self.args.seed), "--out", str(out)]
        cmd += ["--column", "race"] if partition == "natural" else ["--clients", str(n)]
        if partition == "dirichlet":
            cmd += ["--alpha", "0.5"]
        env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")
        t = time.time()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.args.timeout, env=env)
            if proc.returncode != 0:
                raise RuntimeError(f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-600:]}")
            syn = load_table(out / "synthetic.csv", self.schema)
            card = json.loads((out / "model_card.json").read_text())
            spent = max(c["epsilon_spent"] for c in card["clients"])
            self.record(system, eps, syn, time.time() - t, partition=partition, clients=n,
                        max_client_epsilon_spent=spent)
        except subprocess.TimeoutExpired:
            self.record(system, eps, None, time.time() - t, error=f"timed out after {self.args.timeout:.0f} s",
                        partition=partition, clients=n)
        except Exception as exc:
            self.record(system, eps, None, time.time() - t, error=f"{type(exc).__name__}: {str(exc)[:600]}",
                        partition=partition, clients=n)

    def anchor(self, name: str, eps: float) -> None:
        label = {"mst": "smartnoise MST", "aim": "smartnoise AIM", "dpctgan": f"smartnoise DP-CTGAN ({self.args.epochs} epochs)",
                 "patectgan": f"smartnoise PATE-CTGAN ({self.args.epochs} epochs)",
                 "ctgan": f"CTGAN (SDV's synthesizer), no DP ({self.args.ctgan_epochs} epochs)"}[name]
        label += " [centralized anchor, public schema bins]" if name != "ctgan" else " [centralized anchor]"
        py = Path(self.args.bench_venv) / "bin" / "python"
        e = NO_DP_EPSILON if math.isinf(eps) else eps
        out = self.work / f"anchor-{name}-{eps_label(eps).replace(' ', '')}.csv"
        cmd = [str(py), str(ROOT / "bench" / "anchor_run.py"), "--anchor", name, "--train", str(self.train_csv),
               "--schema", str(self.schema_json), "--epsilon", str(e), "--delta", str(self.args.delta),
               "--rows", str(len(self.train)), "--seed", str(self.args.seed), "--out", str(out),
               "--epochs", str(self.args.ctgan_epochs if name == "ctgan" else self.args.epochs)]
        t = time.time()
        if not py.exists():
            self.record(label, eps, None, None, error=f"not installed: {py} missing (run bash bench/setup_anchors.sh)")
            return
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.args.anchor_timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-600:]}")
            self.record(label, eps, load_table(out, self.schema), time.time() - t)
        except subprocess.TimeoutExpired:
            self.record(label, eps, None, time.time() - t, error=f"timed out after {self.args.anchor_timeout:.0f} s")
        except Exception as exc:
            self.record(label, eps, None, time.time() - t, error=f"{type(exc).__name__}: {str(exc)[:600]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="epsilon {0.5,1,3,10,no DP} x {iid,dirichlet,natural} x "
                                                        "clients {3,5,10}, every anchor")
    ap.add_argument("--epsilons", nargs="+", type=parse_eps, default=[1.0, 10.0], help="'nodp' for no DP")
    ap.add_argument("--partitions", nargs="+", default=["dirichlet"], choices=("iid", "dirichlet", "natural"))
    ap.add_argument("--clients", nargs="+", type=int, default=[5])
    ap.add_argument("--anchors", nargs="*", default=["mst"], choices=ANCHORS)
    ap.add_argument("--no-federated", action="store_true")
    ap.add_argument("--no-single", action="store_true")
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=30, help="epochs of smartnoise's DP-CTGAN / PATE-CTGAN")
    ap.add_argument("--ctgan-epochs", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=1200, help="seconds per federated run")
    ap.add_argument("--anchor-timeout", type=float, default=1800, help="seconds per anchor run")
    ap.add_argument("--bench-venv", default=str(ROOT / ".bench-venv"))
    ap.add_argument("--work", help="folder for split files and synthetic tables (default: a temp folder)")
    ap.add_argument("--json", default="bench/results/quality_privacy.json")
    args = ap.parse_args()
    if args.full:
        args.epsilons, args.partitions, args.clients = [0.5, 1.0, 3.0, 10.0, NO_DP], ["iid", "dirichlet", "natural"], [3, 5, 10]
        args.anchors = list(ANCHORS)
    b = Bench(args)
    print(f"split: {len(b.train)} training rows, {len(b.holdout)} holdout rows; work folder {b.work}", flush=True)
    b.ceiling()
    for eps in args.epsilons:
        if not args.no_single:
            b.single_party(eps)
        if not args.no_federated:
            for part in args.partitions:
                for k in ([5] if part == "natural" else args.clients):
                    b.federated(eps, part, k)
        for name in args.anchors:
            if math.isinf(eps) and name in ("aim", "dpctgan", "patectgan"):
                continue  # no-DP reference: MST at epsilon 1e4 and CTGAN
            if not math.isinf(eps) and name == "ctgan":
                continue  # CTGAN makes no privacy claim: it is the "no DP" row
            b.anchor(name, eps)
    if "ctgan" in args.anchors and not any(math.isinf(e) for e in args.epsilons):
        b.anchor("ctgan", NO_DP)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
