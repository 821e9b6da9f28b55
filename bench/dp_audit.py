"""How tight is the one-run canary audit of a shared-noise step? Claimed epsilon vs lower bound.

For each noise multiplier and (canaries, guesses) setting, ``audit_shared_noise`` runs the
real client step on white-box gradient canaries (K_min = 3, T = 1: two honest shares, sample
rate 1, one step) and the coordinator's decoding; the bound is Steinke, Nasr & Jagielski
2023's Theorem 3.1 at the given confidence. Every audit draws fresh canaries and noise from the
OS, so each setting is repeated and the median and range of the bound are reported with the
ratio bound / claim (below 1 for a correct build; the gap is the audit's looseness, since
one run with a per-canary signal of about 1/sigma noise sd cannot certify more).

    python bench/dp_audit.py [--sigmas 1 2 4] [--settings 2000:200 10000:1000] [--reps 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from datetime import date
from pathlib import Path

from fedsynth.common.dp.shared_noise import SharedNoise
from fedsynth.evaluation.dp_audit import AuditResult, audit_shared_noise


def measure(sigma: float, canaries: int, guesses: int, reps: int, delta: float, confidence: float) -> dict:
    shared = SharedNoise(1.0, sigma, collusion_tolerance=1, min_contributors=3)
    runs: list[AuditResult] = [audit_shared_noise(shared, canaries, guesses, delta, confidence) for _ in range(reps)]
    bounds = [r.epsilon_lower_bound for r in runs]
    claimed = runs[0].claimed_epsilon
    return {"sigma": sigma, "canaries": canaries, "guesses": guesses, "claimed_epsilon": claimed,
            "bound_median": statistics.median(bounds), "bound_min": min(bounds), "bound_max": max(bounds),
            "ratio_median": statistics.median(bounds) / claimed, "correct": [r.correct for r in runs],
            "consistent": all(r.consistent for r in runs),
            "seconds_median": statistics.median(r.seconds for r in runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sigmas", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    ap.add_argument("--settings", nargs="+", default=["2000:200", "10000:1000"], help="canaries:guesses")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")  # Opacus' backward-hook notice on inputs without gradients
    start = time.perf_counter()
    results = []
    print(f"{'sigma':>6} {'m':>6} {'r':>5} {'claimed':>8} {'bound':>7} {'[min, max]':>14} {'ratio':>6} "
          f"{'correct (median)':>17} {'s/run':>6}")
    for sigma in args.sigmas:
        for setting in args.settings:
            m, r = (int(v) for v in setting.split(":"))
            res = measure(sigma, m, r, args.reps, args.delta, args.confidence)
            results.append(res)
            span = f"[{res['bound_min']:.2f}, {res['bound_max']:.2f}]"
            print(f"{sigma:6.2f} {m:6d} {r:5d} {res['claimed_epsilon']:8.3f} {res['bound_median']:7.3f} {span:>14} "
                  f"{res['ratio_median']:6.2f} {statistics.median(res['correct']):17.0f} {res['seconds_median']:6.2f}"
                  + ("" if res["consistent"] else "  BOUND ABOVE CLAIM"))
    print(f"total {time.perf_counter() - start:.1f} s")
    if args.json:
        meta = {"date": date.today().isoformat(), "reps": args.reps, "delta": args.delta,
                "confidence": args.confidence, "plan": "sample rate 1, K_min 3, T 1, resolution 16, clip norm 1"}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
