"""End-to-end single-party fit time with each clipping engine, and the quality each gives.

For every table and run, the same 80/20 split is fitted once with Opacus' ghost clipping (the
engine before the single-pass one) and once with the single-pass engine (the default), in a
shuffled order, with the defaults otherwise (``Synthesizer(schema, epsilon=...)``: the counts
release, the DP-SGD steps, the model). The fit time is the wall time of ``fit``; quality is
measured on as many synthetic rows as training rows (TSTR ROC AUC on the real holdout, 1-way
and 2-way TVD, detection AUC). Reported: per engine the mean fit time and quality, and the
ratio of fit times measured within each run (the machine is shared: ratios, not absolute
times, are what one run can show).

    python bench/fit_speed.py [--tables adult flights taxi] [--runs 3] [--epsilon 1] [--threads 2]
                              [--json bench/results/fit_speed.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import torch

from fedsynth.common.model.tabular import ModelConfig
from fedsynth.common.synthesizer import Synthesizer
from fedsynth.simulations.datasets import BUNDLED, load_dataset
from fedsynth.simulations.partition import holdout_split
from fedsynth.simulations.quality import quick_quality

ENGINES = ("ghost", "bookkeeping")
METRICS = ("fit_s", "tstr_auc", "tvd_1way", "tvd_2way", "detection_auc")


def one_fit(train, hold, schema, label: str | None, engine: str, epsilon: float, seed: int) -> dict[str, float]:
    synth = Synthesizer(schema, epsilon=epsilon, model_config=ModelConfig(grad_sample_mode=engine))
    start = time.perf_counter()
    synth.fit(train)
    fit_s = time.perf_counter() - start
    q = quick_quality(train, hold, synth.sample(len(train), seed=seed), schema, label, seed)
    return {"fit_s": fit_s, "tstr_auc": q.get("tstr_auc", float("nan")), "tvd_1way": q["tvd_1way"],
            "tvd_2way": q["tvd_2way"], "detection_auc": q["detection_auc"], "epsilon": synth.epsilon_spent}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", nargs="+", default=sorted(BUNDLED), choices=sorted(BUNDLED))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="bench/results/fit_speed.json")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    order = random.Random(0)
    results: dict[str, dict] = {}
    for name in args.tables:
        df, schema, bundled = load_dataset(name)
        label = bundled.label if bundled else None
        runs: list[dict[str, dict[str, float]]] = []
        for run in range(args.runs):
            train, hold = holdout_split(df, 0.2, run)
            engines = list(ENGINES)
            order.shuffle(engines)
            runs.append({e: one_fit(train, hold, schema, label, e, args.epsilon, run) for e in engines})
            r = runs[-1]
            print(f"{name} run {run}: fit {r['ghost']['fit_s']:.1f}s ghost, {r['bookkeeping']['fit_s']:.1f}s "
                  f"single-pass (x{r['ghost']['fit_s'] / r['bookkeeping']['fit_s']:.2f})", flush=True)
        mean = {e: {m: float(np.mean([r[e][m] for r in runs])) for m in METRICS} for e in ENGINES}
        speedup = [r["ghost"]["fit_s"] / r["bookkeeping"]["fit_s"] for r in runs]
        results[name] = {"runs": runs, "mean": mean, "speedup_median": statistics.median(speedup),
                         "speedup_all": speedup}
    print(f"\n{'table':<8} {'engine':<12} " + " ".join(f"{m:>13}" for m in METRICS) + "   speed-up (median)")
    for name, r in results.items():
        for e in ENGINES:
            extra = f"   x{r['speedup_median']:.2f}" if e == "bookkeeping" else ""
            print(f"{name:<8} {e:<12} " + " ".join(f"{r['mean'][e][m]:13.3f}" for m in METRICS) + extra)
    meta = {"date": date.today().isoformat(), "runs": args.runs, "epsilon": args.epsilon, "threads": args.threads,
            "torch": torch.__version__, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine()}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
