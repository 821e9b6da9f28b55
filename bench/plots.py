"""Plots for docs/benchmarks.md from the JSON the benchmarks write (bench/results/*.json).

    python bench/plots.py [--results bench/results] [--out docs/img] [--table]

Each figure is skipped (with a note) when its results file does not exist yet.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NO_DP_X = 100.0  # where "no DP" sits on the log epsilon axis


def _x(eps: str) -> float | None:
    if eps == "-":
        return None
    return NO_DP_X if eps == "no DP" else float(eps)


def _short(name: str) -> str:
    return name.replace(" [centralized anchor, public schema bins]", " (anchor)").replace(" [centralized anchor]", " (anchor)")


def quality(results: list[dict], out: Path) -> None:
    """TSTR and 2-way TVD against epsilon for every system, over every quality_privacy*.json of
    one split; where a (system, epsilon) was run more than once the line goes through the mean
    and every run is a dot. A third panel compares partitions and client counts at epsilon 1."""
    rows = [r for res in results for r in res["rows"] if "tstr_auc" in r]
    ceiling = next((r for r in rows if r["epsilon"] == "-"), None)
    systems: dict[str, dict[float, list[dict]]] = {}
    for r in rows:
        if r["epsilon"] != "-":
            systems.setdefault(r["system"], {}).setdefault(_x(r["epsilon"]), []).append(r)
    fig, axes = plt.subplots(1, 3, figsize=(19, 5.6), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    on_axis = {name: pts for name, pts in systems.items()
               if not name.startswith("fedsynth federated") or "5 clients, Dirichlet" in name}
    for name, pts in sorted(on_axis.items()):
        xs = sorted(pts)
        style = "-o" if name.startswith("fedsynth federated") else ("-s" if "single-party" in name else "--^")
        for ax, key in zip(axes, ("tstr_auc", "tvd_2way")):
            line, = ax.plot(xs, [sum(r[key] for r in pts[x]) / len(pts[x]) for x in xs], style, label=_short(name),
                            markersize=6)
            for x in xs:
                if len(pts[x]) > 1:
                    ax.plot([x] * len(pts[x]), [r[key] for r in pts[x]], ".", color=line.get_color(), alpha=0.6)
    if ceiling:
        axes[0].axhline(ceiling["tstr_auc"], color="grey", ls=":", label="real training rows (ceiling)")
        axes[1].axhline(ceiling["tvd_2way"], color="grey", ls=":", label="real holdout (noise floor)")
    ticks = sorted({_x(r["epsilon"]) for r in rows if r["epsilon"] != "-"})
    for ax, title in zip(axes, ("TSTR ROC AUC (higher is better)", "mean 2-way TVD (lower is better)")):
        ax.set_xscale("log")
        ax.set_xticks(ticks)
        ax.set_xticklabels(["no DP" if t == NO_DP_X else f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("epsilon (per institution for federated runs)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    ax = axes[2]
    fed = sorted((name, pts[1.0]) for name, pts in systems.items()
                 if name.startswith("fedsynth federated") and 1.0 in pts)
    if fed:
        labels = [name.replace("fedsynth federated, ", "").replace(" on income", "") for name, _ in fed]
        means = [sum(r["tstr_auc"] for r in rs) / len(rs) for _, rs in fed]
        ax.barh(labels, means, color="tab:blue")
        for i, (m, (_, rs)) in enumerate(zip(means, fed)):
            ax.text(m + 0.003, i, f"{m:.3f}" + (f" (mean of {len(rs)})" if len(rs) > 1 else ""), va="center", fontsize=8)
        single = systems.get("fedsynth single-party (pooled rows)", {}).get(1.0)
        if single:
            ax.axvline(sum(r["tstr_auc"] for r in single) / len(single), color="tab:orange", ls="--",
                       label="single-party, pooled")
            ax.legend(fontsize=8, loc="lower left")
        ax.set_xlim(min(0.5, min(means) - 0.05), 1.0)
        ax.set_xlabel("TSTR ROC AUC")
        ax.set_title("Federated at epsilon 1: partition and clients")
        ax.grid(alpha=0.3, axis="x")
    meta = results[0]["meta"]
    fig.suptitle(f"Adult, seed-{meta['seed']} 80/20 split, {len(results)} result file(s), latest {max(r['meta']['date'] for r in results)}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "quality_privacy.png", dpi=110)
    plt.close(fig)


def quality_table(results: list[dict]) -> str:
    """Every quality row of every file, as the markdown table docs/benchmarks.md shows."""
    order = {"0.5": 0, "1": 1, "3": 2, "10": 3, "no DP": 4}
    rows = [r for res in results for r in res["rows"] if r["epsilon"] != "-"]
    rows.sort(key=lambda r: (order.get(r["epsilon"], 9), not r["system"].startswith("fedsynth"), r["system"]))
    lines = ["| epsilon | system | TSTR ROC AUC | 1-way TVD | 2-way TVD | wall time |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        vals = (f"{r['tstr_auc']:.3f} | {r['tvd_1way']:.3f} | {r['tvd_2way']:.3f}" if "tstr_auc" in r
                else f"{' '.join(str(r.get('error', 'no result')).split())[:80]} | - | -")
        lines.append(f"| {r['epsilon']} | {r['system']} | {vals} | {r['seconds']} s |")
    return "\n".join(lines)


def dp_cost(res: dict, out: Path) -> None:
    results = res["results"]
    modes = ["hooks", "functorch", "ew", "ghost", "bookkeeping"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    ax = axes[0]
    width = 0.8 / max(len(results), 1)
    for i, r in enumerate(results):
        vals = [r["modes"].get(m, {}).get("ratio_to_nondp_median") or math.nan for m in modes]
        xs = [j + i * width for j in range(len(modes))]
        bars = ax.bar(xs, vals, width, label=f"{r['threads']} thread(s), batch {r['expected_batch']}")
        for x, v in zip(xs, vals):
            if not math.isnan(v):
                ax.text(x, v * 1.08, f"{v:.1f}x", ha="center", fontsize=7)
        del bars
    ax.axhline(1.3, color="red", ls="--", lw=1, label="target: 1.3x non-private (default batch)")
    ax.axhline(1.5, color="orange", ls="--", lw=1, label="target: 1.5x non-private (batch 512)")
    ax.set_yscale("log")
    ax.set_xticks([j + width * (len(results) - 1) / 2 for j in range(len(modes))])
    ax.set_xticklabels(["Opacus hooks", "functorch", "expanded weights", "Opacus ghost\nclipping",
                        "single pass\n(fedsynth)"])
    ax.set_ylabel("epoch time / non-private epoch time (log)")
    ax.set_title("DP-SGD cost per epoch, CPU (median ratio within one run)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    # where the time goes, per step, in the first configuration
    r = results[0]
    ax = axes[1]
    phases = ["batch", "forward", "backward", "optimizer"]
    shown = [m for m in ["nondp", "bookkeeping", "ghost", "functorch", "hooks"] if m in r["modes"]]
    bottom = [0.0] * len(shown)
    for ph in phases:
        vals = [r["modes"][m]["ms_per_step"][ph] for m in shown]
        ax.bar(shown, vals, bottom=bottom, label=ph)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_yscale("log")
    ax.set_ylabel("ms per step (log; stacked)")
    ax.set_title(f"Where a step's time goes ({r['threads']} thread(s), batch {r['expected_batch']})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    device = res["meta"].get("gpu") or "CPU"
    fig.suptitle(f"fedsynth VAE (default ModelConfig) on encoded Adult, {res['meta']['date']}; {device}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "dp_cost.png", dpi=110)
    plt.close(fig)


def scale(res: dict, out: Path, shares: dict | None = None) -> None:
    """Round time and memory against clients (every client sharing keys with every other, and,
    from ``shares``, a fixed SecAgg+ share count), and the SecAgg+ / plain ratio."""
    sc = [r for r in res.get("scale", []) if r.get("round_seconds")]
    fixed = [r for r in (shares or {}).get("scale", []) if r.get("round_seconds")]
    summ = res.get("secagg_summary", [])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    if sc:
        n = [r["clients"] for r in sc]
        ax = axes[0]
        for k in range(max(len(r["round_seconds"]) for r in sc)):
            ax.plot(n, [r["round_seconds"][k] if k < len(r["round_seconds"]) else math.nan for r in sc], "-o",
                    label=f"round {k + 1}" + (" (incl. actor start-up)" if k == 0 else ""))
        if fixed:
            ax.plot([r["clients"] for r in fixed], [r["round_seconds"][-1] for r in fixed], "--s",
                    label=f"last round, {fixed[0]['secagg_shares']:g} SecAgg+ shares per key")
        ax.set_xlabel("simulated clients")
        ax.set_ylabel("seconds")
        ax.set_title(f"Round wall time, SecAgg+ ({sc[0]['rows_per_client']} rows/client)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        ax = axes[1]
        ax.plot(n, [r["peak_pss_bytes"] / 2**30 for r in sc], "-o", label="peak PSS, process tree")
        ax.plot(n, [r["peak_rss_bytes"] / 2**30 for r in sc], "--s", label="peak sum of RSS (upper bound)")
        if fixed:
            ax.plot([r["clients"] for r in fixed], [r["peak_pss_bytes"] / 2**30 for r in fixed], "-^",
                    label=f"peak PSS, {fixed[0]['secagg_shares']:g} shares per key")
        ax.axhline(8.0, color="red", ls="--", lw=1, label="target: 8 GiB at 100 clients")
        ax.set_xlabel("simulated clients")
        ax.set_ylabel("GiB")
        ax.set_ylim(bottom=0)
        ax.set_title("Peak memory of the whole simulation")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if summ:
        ax = axes[2]
        xs = [str(s["clients"]) for s in summ]
        ax.bar(xs, [s["ratio"] for s in summ], color="tab:purple")
        for x, s in zip(xs, summ):
            ax.text(x, s["ratio"] + 0.03, f"{s['ratio']:.2f}x\n({s['secagg_round_s']:.1f} s vs {s['plain_round_s']:.1f} s)",
                    ha="center", fontsize=8)
        ax.axhline(1.5, color="red", ls="--", lw=1, label="target: 1.5x at 10 clients")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_ylim(0, max(2.0, max(s["ratio"] for s in summ) + 0.5))
        ax.set_xlabel("clients (whole Adult training split, IID)")
        ax.set_ylabel("SecAgg+ round time / plain aggregation")
        ax.set_title("What SecAgg+ costs per round")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"Flower Simulation Engine on {res['meta']['cpus']} CPU cores, {res['meta']['date']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "scale.png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", default="bench/results")
    ap.add_argument("--out", default="docs/img")
    ap.add_argument("--table", action="store_true", help="also print every quality row as a markdown table")
    args = ap.parse_args()
    res_dir, out = Path(args.results), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    qp = [json.loads(p.read_text()) for p in sorted(res_dir.glob("quality_privacy*.json"))]
    qp = [r for r in qp if r["meta"]["seed"] == qp[0]["meta"]["seed"]] if qp else []  # one split per figure
    if qp:
        quality(qp, out)
        print(f"wrote {out / 'quality_privacy.png'} from {len(qp)} result file(s)")
        if args.table:
            print(quality_table(qp))
    else:
        print(f"skipped quality_privacy: no {res_dir}/quality_privacy*.json (run bench/quality_privacy.py)")
    for name, fn in (("dp_cost", dp_cost), ("scale", scale)):
        path = res_dir / f"{name}.json"
        if not path.exists():
            print(f"skipped {name}: {path} does not exist (run bench/{name}.py)")
            continue
        extra = {}
        if name == "scale" and (res_dir / "scale_shares11.json").exists():
            extra["shares"] = json.loads((res_dir / "scale_shares11.json").read_text())
        fn(json.loads(path.read_text()), out, **extra)
        print(f"wrote {out / (name + '.png')}")


if __name__ == "__main__":
    main()
