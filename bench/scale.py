"""How the federated simulation's cost grows with the number of clients, and what SecAgg+ costs.

Two experiments, each simulation in its own child process (``fedsynth.simulations.driver.run``,
the machinery behind ``fedsynth simulate``: Flower Simulation Engine on Ray, SecAgg+ on):

1. **scale**: 10, 50, 100 (and with ``--with-200`` 200) clients, IID silos of ``--rows``
   rows each (tiny on purpose: this measures the federation, not the training), ``--rounds``
   rounds. Reported: wall time per round (from the coordinator's events), end-to-end wall
   time, and the peak resident memory of the *whole process tree* (the child, Ray's GCS,
   raylet and worker processes), sampled from /proc every 0.25 s: the sum of RSS (an upper
   bound: shared pages counted once per process) and the sum of PSS (shared pages split
   between the processes sharing them: the honest total).
2. **secagg**: 5, 10, 20 clients holding the whole Adult training split (IID), SecAgg+
   against the benchmark-only plain aggregation (``insecure_plain_aggregation=True``: the
   coordinator sees every individual update), interleaved, ``--reps`` runs each; the round
   time is the median over rounds 2.. (round 1 includes starting the actors and loading).

Upload bytes per client per round are counted from the messages themselves: the coordinator's
``Grid`` is wrapped so that every reply is serialised with Flower's own protobuf serde and
its size recorded per SecAgg+ stage; "update arrays" is the plain size of the float32 update.

    python bench/scale.py [--clients 10 50 100] [--with-200] [--secagg-clients 5 10 20] [--reps 2]
    python bench/scale.py --only secagg   # or --only scale
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve()


# ----------------------------------------------------------------------------- /proc sampling
def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree_memory(root: int) -> tuple[int, int, int]:
    """(sum RSS bytes, sum PSS bytes, number of processes) of ``root`` and its descendants."""
    kids = _children_map()
    todo, seen = [root], []
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo.extend(kids.get(pid, []))
    rss = pss = 0
    for pid in seen:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return rss, pss, len(seen)


def run_child(cfg: dict, timeout: float) -> dict:
    """Run one simulation in a child process while sampling its process tree's memory."""
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0",
               RAY_DEDUP_LOGS="0")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), *filter(None, [env.get("PYTHONPATH")])])  # scale_components
    log = Path(cfg["out"]).with_suffix(".log")
    started = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, str(HERE), "--child", json.dumps(cfg)], stdout=fh,
                                stderr=subprocess.STDOUT, env=env)
        peak_rss = peak_pss = procs = 0
        timed_out = False
        while proc.poll() is None:
            rss, pss, n = tree_memory(proc.pid)
            peak_rss, peak_pss, procs = max(peak_rss, rss), max(peak_pss, pss), max(procs, n)
            if time.time() - started > timeout:
                timed_out = True
                proc.kill()  # our own child only; Ray's processes exit with their parent
                break
            time.sleep(0.25)
        proc.wait()
    wall = time.time() - started
    result_path = Path(cfg["out"]) / "bench_child.json"
    out = json.loads(result_path.read_text()) if result_path.exists() else {}
    out.update({"wall_s": round(wall, 1), "peak_rss_bytes": peak_rss, "peak_pss_bytes": peak_pss,
                "max_processes": procs, "returncode": proc.returncode, "timed_out": timed_out})
    if proc.returncode != 0 or timed_out:
        out["log_tail"] = log.read_text()[-2000:]
    return out


# ----------------------------------------------------------------------------- the child
def child(cfg: dict) -> None:
    """One simulation with message sizes counted at the coordinator's Grid."""
    # lazy: only the child process runs a simulation; the parent only samples /proc and must
    # not load Flower and torch for nothing
    import warnings

    from fedsynth.common.data.encoding import TableEncoder
    from fedsynth.common.data.schema import Schema
    from fedsynth.common.model.tabular import build_model
    from fedsynth.common.protocol.federation import SecAggSettings, federated_model_config
    from fedsynth.simulations.driver import SimulationConfig, run
    from scale_components import CALLS_FILE, COMPONENTS, PLAIN_COMPONENTS  # bench/, on the runtime's path

    warnings.filterwarnings("ignore")
    components = PLAIN_COMPONENTS if cfg.get("plain", False) else COMPONENTS
    sim = SimulationConfig(out=cfg["out"], data="adult", clients=cfg["clients"], partition="iid",
                           epsilon=1.0, delta=1e-5, rounds=cfg["rounds"], local_epochs=cfg["local_epochs"],
                           max_train_rows=cfg.get("max_train_rows"), rows=500, evaluate=False, seed=0,
                           insecure_plain_aggregation=cfg.get("plain", False), noise="local",
                           secagg=SecAggSettings(num_shares=cfg.get("secagg_shares", SecAggSettings.num_shares)),
                           components=components)
    run(sim, print_fn=lambda m: print(m, flush=True))
    out = Path(cfg["out"])
    calls = json.loads((out / CALLS_FILE).read_text())
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    rounds = [e for e in events if e["event"] == "round_done"]
    enc = TableEncoder(Schema.load(out / "schema.json"))
    arrays = build_model(enc, federated_model_config()).get_arrays()  # what the clients train
    update_floats = sum(a.size for a in arrays) + sum(enc.count_sizes)
    (out / "bench_child.json").write_text(json.dumps({
        "round_seconds": [r["seconds"] for r in rounds], "contributors": [r["contributors"] for r in rounds],
        "calls": calls, "update_floats": int(update_floats), "update_bytes_float32": int(4 * update_floats),
    }))


# ----------------------------------------------------------------------------- summaries
def upload_per_client_round(res: dict, rounds: int) -> dict[str, float]:
    """Mean bytes one client uploads per round, by stage (budget check included)."""
    per: dict[str, float] = {}
    for c in res.get("calls", []):
        if c["replies"]:
            per[c["stage"]] = per.get(c["stage"], 0.0) + c["bytes_up"] / c["replies"]
    # the final budget check after the last round is not part of a round
    n_checks = sum(1 for c in res.get("calls", []) if c["stage"] == "get_properties")
    if n_checks:
        per["get_properties"] = per["get_properties"] / n_checks * rounds
    return {k: v / rounds for k, v in per.items()}


def gib(b: float) -> float:
    return b / 2**30


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--only", choices=("scale", "secagg"))
    ap.add_argument("--clients", type=int, nargs="+", default=[10, 50, 100])
    ap.add_argument("--with-200", action="store_true", help="add a 200-client run (slow on 2 cores)")
    ap.add_argument("--rows", type=int, default=40, help="rows per client in the scale runs")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--secagg-shares", type=float, default=None,
                    help="SecAgg+ num_shares in the scale runs (a fraction of the clients, or a count if > 1); "
                         "default: fedsynth's (every client shares with every other)")
    ap.add_argument("--secagg-clients", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--secagg-rounds", type=int, default=3)
    ap.add_argument("--secagg-epochs", type=float, default=0.5, help="local epochs per round in the SecAgg+ runs")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--json", default="bench/results/scale.json")
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    work = Path(tempfile.mkdtemp(prefix="fedsynth-scale-"))
    results: dict = {"meta": {"date": date.today().isoformat(), "command": "python bench/scale.py " + " ".join(sys.argv[1:]),
                              "cpus": os.cpu_count(), "python": platform.python_version(),
                              "mem_total_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
                     "scale": [], "secagg": []}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    if args.only and Path(args.json).exists():  # keep the other experiment's earlier results
        earlier = json.loads(Path(args.json).read_text())
        keep = ("secagg", "secagg_summary") if args.only == "scale" else ("scale",)
        results.update({k: earlier[k] for k in keep if k in earlier})
        results["meta"]["kept_from_earlier"] = {"sections": [k for k in keep if k in earlier], "meta": earlier.get("meta")}

    def save() -> None:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")

    if args.only in (None, "scale"):
        counts = list(args.clients) + ([200] if args.with_200 else [])
        print(f"== scale: {counts} clients x {args.rows} rows, {args.rounds} rounds, SecAgg+", flush=True)
        for n in counts:
            cfg = {"out": str(work / f"scale-{n}"), "clients": n, "rounds": args.rounds, "local_epochs": 1.0,
                   "max_train_rows": n * args.rows}
            if args.secagg_shares is not None:
                cfg["secagg_shares"] = args.secagg_shares
            r = run_child(cfg, args.timeout)
            r.update(clients=n, rows_per_client=args.rows, upload=upload_per_client_round(r, args.rounds),
                     secagg_shares=cfg.get("secagg_shares", "all"))
            results["scale"].append(r)
            save()
            rs = r.get("round_seconds", [])
            print(f"{n:>4} clients (SecAgg+ shares {r['secagg_shares']}): rounds {rs} s, wall {r['wall_s']} s, peak RSS {gib(r['peak_rss_bytes']):.2f} GiB, "
                  f"PSS {gib(r['peak_pss_bytes']):.2f} GiB, {r['max_processes']} processes, rc {r['returncode']}"
                  + (" TIMED OUT" if r["timed_out"] else ""), flush=True)
            shutil.rmtree(cfg["out"], ignore_errors=True)

    if args.only in (None, "secagg"):
        print(f"== SecAgg+ vs plain aggregation: {args.secagg_clients} clients, whole Adult split, "
              f"{args.secagg_rounds} rounds x {args.secagg_epochs} local epochs, {args.reps} reps", flush=True)
        for n in args.secagg_clients:
            for rep in range(args.reps):
                order = ("secagg", "plain") if rep % 2 == 0 else ("plain", "secagg")  # interleaved
                for mode in order:
                    cfg = {"out": str(work / f"secagg-{n}-{mode}-{rep}"), "clients": n, "rounds": args.secagg_rounds,
                           "local_epochs": args.secagg_epochs, "plain": mode == "plain"}
                    r = run_child(cfg, args.timeout)
                    rs = r.get("round_seconds", [])
                    r.update(clients=n, mode=mode, rep=rep, upload=upload_per_client_round(r, args.secagg_rounds),
                             round_s_median=statistics.median(rs[1:] or rs) if rs else None)
                    results["secagg"].append(r)
                    save()
                    print(f"{n:>3} clients {mode:<6} rep {rep}: rounds {rs} s, upload/client/round "
                          f"{sum(r['upload'].values()) / 1024:.1f} KiB, rc {r['returncode']}", flush=True)
                    shutil.rmtree(cfg["out"], ignore_errors=True)
        print("\nclients  SecAgg+ round s  plain round s  ratio")
        summary = []
        for n in args.secagg_clients:
            sec = [r["round_s_median"] for r in results["secagg"] if r["clients"] == n and r["mode"] == "secagg" and r["round_s_median"]]
            pla = [r["round_s_median"] for r in results["secagg"] if r["clients"] == n and r["mode"] == "plain" and r["round_s_median"]]
            if sec and pla:
                s, p = statistics.median(sec), statistics.median(pla)
                summary.append({"clients": n, "secagg_round_s": s, "plain_round_s": p, "ratio": s / p})
                print(f"{n:>7}  {s:15.2f}  {p:13.2f}  {s / p:5.2f}")
        results["secagg_summary"] = summary
        save()
    shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
