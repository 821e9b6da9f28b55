"""Real deployment on localhost: separate processes, TLS, SuperNode authentication, SecAgg+.

Everything goes through the `fedsynth` command line exactly as README's "Deployment"
section shows it: credentials from `fedsynth certs` / `fedsynth keys`, a coordinator
(Flower SuperLink) with TLS and node authentication, institutions as SuperNodes on their
own silo files, a finished run sampled with `fedsynth sample`. Also: an unregistered node
is refused, a node with another schema is left out with a clear reason, a table that does
not match its schema stops `fedsynth client` before it connects, and a failed run makes
`fedsynth coordinator` exit non-zero (``flwr run`` itself would report success).

Loopback only, free ports picked at run time (a coordinator whose port was taken meanwhile is
started again on another), bounded waits, and every process started
here is stopped in a finalizer (each runs in its own process group, killed as a group).
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from fedsynth.client.ledger import Ledger
from fedsynth.common.data.schema import Schema
from fedsynth.common.deploy.addresses import free_loopback_port

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = REPO / "examples" / "federation.toml"
INSTITUTIONS = ("hospital-a", "hospital-b", "hospital-c")
# How long a whole deployment may take before the test calls it hung: a guard, not a timing check.
# On 2 cores beside the other test worker one shared-noise SecAgg+ round took 70-110 s, and the
# 420 s this was before ran out after four of its seven rounds (fresh-clone CI, 2026-11-27).
RUN_GUARD = 900
NOBODY = "127.0.0.1:9"  # a coordinator address for clients that must stop before connecting anywhere
# One torch thread a process: a coordinator, three institutions and the other test worker share 2
# cores here, and the coordinator's fine-tune on torch's default of a thread a core ran 200 steps in
# about 90 s beside them (100 steps: 6 s on 1 thread, 13 s on 2, with one other core busy).
ENV = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0",
       "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def fedsynth_cmd() -> list[str]:
    script = Path(sys.executable).parent / "fedsynth"
    return [str(script)] if script.exists() else [sys.executable, "-m", "fedsynth.cli"]


def run_cli(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(fedsynth_cmd() + args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


class Processes:
    """Long-running commands, each in its own process group with its output in a log file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(fedsynth_cmd() + args, cwd=self.root, env=ENV, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def output(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def wait(self, name: str, timeout: float) -> int:
        try:
            return self.procs[name].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`fedsynth {name}` did not finish within {timeout}s; output:\n{self.output(name)[-4000:]}")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.time() + 15
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGKILL)  # the group: SuperLink/SuperNode and their helpers too
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


PORT_TAKEN = "port in use"  # how `fedsynth coordinator` says another process holds one of its ports
START_ATTEMPTS = 3


def start_coordinator(procs: Processes, name: str, args: list[str], address: str | None = None,
                      timeout: float = 120) -> str:
    """Start `fedsynth coordinator ARGS --address HOST:PORT` and return HOST:PORT once it listens.

    Without ``address`` a free loopback port is picked. A port is only free until someone binds
    it: if another process takes it (or one of the SuperLink's own) before the coordinator
    does, the coordinator exits saying so, and it is started again on a newly picked port.
    """
    for _ in range(START_ATTEMPTS):
        addr = address or f"127.0.0.1:{free_loopback_port()}"
        proc = procs.start(name, [*args, "--address", addr])
        deadline = time.time() + timeout
        while "listening for institutions" not in procs.output(name) and proc.poll() is None:
            if time.time() > deadline:
                pytest.fail(f"`fedsynth {name}` did not listen within {timeout}s:\n{procs.output(name)[-4000:]}")
            time.sleep(0.2)
        port_taken = proc.poll() is not None and PORT_TAKEN in procs.output(name)
        if not port_taken or address is not None:
            break  # listening, or ended for a reason of its own: the test looks at that
    return addr


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the leader's pid
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """Silo files, certificates and keys, made with the CLI as in README."""
    root = tmp_path_factory.mktemp("deploy")
    for args in (["split", "--out", "demo/silos", "--clients", "3", "--rows-per-silo", "300"],
                 ["certs", "--out", "demo/certs"],
                 ["keys", "--out", "demo/keys", *sum((["--name", n] for n in (*INSTITUTIONS, "clinic-x", "rogue")), [])]):
        res = run_cli(args, root)
        assert res.returncode == 0, res.stderr + res.stdout
    # An institution whose schema differs from the coordinator's (a wider age bound: its own
    # table still validates against it, but the schema hash differs).
    schema = json.loads((root / "demo/silos/schema.json").read_text())
    age = next(c for c in schema["columns"] if c["name"] == "age")
    age["max"] = 99
    (root / "demo/schema-x.json").write_text(json.dumps(schema))
    return root


@pytest.fixture(scope="module")
def federation(demo):
    """Coordinator + three registered institutions + one with another schema + one unregistered."""
    procs = Processes(demo)
    try:
        registered = (*INSTITUTIONS, "clinic-x")
        addr = start_coordinator(procs, "coordinator", [
            "coordinator", "--config", str(EXAMPLE_CONFIG), "--schema", "demo/silos/schema.json",
            "--certs", "demo/certs", *sum((["--authorized-key", f"demo/keys/{n}.pub"] for n in registered), []),
            "--out", "demo/run"])
        for i, name in enumerate(INSTITUTIONS, start=1):
            procs.start(name, [
                "client", "--data", f"demo/silos/client-{i}.csv", "--schema", "demo/silos/schema.json",
                "--budget-epsilon", "1", "--budget-delta", "1e-5", "--coordinator", addr,
                "--ca-cert", "demo/certs/ca.pem", "--auth-key", f"demo/keys/{name}", "--state-dir", f"demo/state/{name}",
                "--init-ledger"])
        procs.start("clinic-x", [
            "client", "--data", "demo/silos/client-1.csv", "--schema", "demo/schema-x.json",
            "--budget-epsilon", "1", "--budget-delta", "1e-5", "--coordinator", addr,
            "--ca-cert", "demo/certs/ca.pem", "--auth-key", "demo/keys/clinic-x", "--state-dir", "demo/state/clinic-x",
            "--init-ledger"])
        procs.start("rogue", [
            "client", "--data", "demo/silos/client-2.csv", "--schema", "demo/silos/schema.json",
            "--budget-epsilon", "1", "--budget-delta", "1e-5", "--coordinator", addr,
            "--ca-cert", "demo/certs/ca.pem", "--auth-key", "demo/keys/rogue", "--state-dir", "demo/state/rogue",
            "--init-ledger", "--give-up-after", "5"])
        rogue_rc = procs.wait("rogue", timeout=120)
        coord_rc = procs.wait("coordinator", timeout=RUN_GUARD)
        yield {"root": demo, "procs": procs, "coordinator_rc": coord_rc, "rogue_rc": rogue_rc}
    finally:
        procs.stop_all()


def test_run_completes_with_tls_auth_and_secagg(federation):
    procs, root = federation["procs"], federation["root"]
    out = procs.output("coordinator")
    assert federation["coordinator_rc"] == 0, out[-4000:]
    assert "TLS, SuperNode authentication on" in out
    assert out.count("registered institution key") == 4
    assert "SecAgg+" in out
    assert "round 1 done" in out and "round 2 done" in out, out[-3000:]
    assert "3 updates securely aggregated" in out
    run = root / "demo/run"
    assert (run / "synthesizer" / "synthesizer.json").is_file()
    # The model card says what ran: both planned rounds, the three institutions of the coordinator's
    # schema (not clinic-x, not the rogue), SecAgg+ as configured, each within its own budget.
    card = json.loads((run / "model_card.json").read_text())
    schema_hash = Schema.load(root / "demo/silos/schema.json").hash()
    assert card["schema_hash"] == schema_hash and card["model"] == "vae"
    assert card["model_id"] == json.loads((run / "synthesizer" / "synthesizer.json").read_text())["model_id"]
    assert card["rounds_planned"] == card["rounds_completed"] == 2
    assert [(r["round"], r["contributors"]) for r in card["rounds"]] == [(1, 3), (2, 3)], card["rounds"]
    assert card["participating_clients"] == 3
    secagg = card["secure_aggregation"]  # as examples/federation.toml configures it
    assert (secagg["protocol"], secagg["num_shares"], secagg["reconstruction_threshold"]) == ("SecAgg+ (Flower)", 1.0, 0.67)
    ours = [c for c in card["clients"] if c["schema_hash"] == schema_hash]
    assert len(ours) == 3, card["clients"]
    assert all(0 < c["epsilon_spent"] <= 1.0 and c["delta"] == 1e-5 for c in ours), ours
    # Each institution's ledger stayed on its own disk, private, within its cap; the card states
    # what the ledgers hold (clients report their spend rounded to 0.01).
    for name in INSTITUTIONS:
        ledger = root / "demo/state" / name / "ledger.json"
        assert ledger.is_file()
        assert stat.S_IMODE(ledger.stat().st_mode) == 0o600
    in_ledgers = sorted(Ledger.open(root / "demo/state" / name, 1.0, 1e-5).epsilon_spent for name in INSTITUTIONS)
    assert sorted(c["epsilon_spent"] for c in ours) == pytest.approx(in_ledgers, abs=0.01)
    spent = [float(x) for x in _epsilons_reported(out)]
    assert spent and max(spent) <= 1.0 and max(spent) > 0.0


def _epsilons_reported(out: str) -> list[str]:
    final = [line for line in out.splitlines() if line.startswith("finished after round")]
    assert final, out[-3000:]
    return re.findall(r": (\d+\.\d+)", final[-1])


def test_synthesizer_is_sampled_with_the_cli(federation):
    root = federation["root"]
    assert federation["coordinator_rc"] == 0
    res = run_cli(["sample", "demo/run/synthesizer", "--rows", "200", "--out", "demo/synthetic.csv"], root)
    assert res.returncode == 0, res.stderr + res.stdout
    df = pd.read_csv(root / "demo/synthetic.csv")
    schema = json.loads((root / "demo/silos/schema.json").read_text())
    assert len(df) == 200
    assert list(df.columns) == [c["name"] for c in schema["columns"]]
    assert (root / "demo/synthetic.csv.lineage.json").is_file()


def test_unregistered_node_is_refused(federation):
    out = federation["procs"].output("rogue")
    assert federation["rogue_rc"] != 0
    assert "its public key is not registered" in out, out[-3000:]
    assert "Starting Flower SuperNode" in out  # it did try: the refusal came from the coordinator


def test_node_with_other_schema_is_left_out_with_reason(federation):
    out = federation["procs"].output("coordinator")
    assert "refused: schema mismatch" in out, out[-3000:]
    assert "4/4 institutions can afford" not in out
    assert "3/4 institutions can afford it" in out
    # clinic-x never trained: no privacy spent, nothing recorded as a round in its ledger
    ledger = federation["root"] / "demo/state/clinic-x/ledger.json"
    assert ledger.exists()  # started with --init-ledger
    assert "round" not in json.dumps(json.loads(ledger.read_text()).get("history", []))


def test_table_not_matching_schema_stops_client_before_connecting(demo):
    bad = demo / "demo/bad.csv"
    df = pd.read_csv(demo / "demo/silos/client-3.csv")
    df["age"] = df["age"].astype(object)
    df.loc[4, "age"] = "abc"
    df.to_csv(bad, index=False)
    res = run_cli(["client", "--data", "demo/bad.csv", "--schema", "demo/silos/schema.json",
                   "--budget-epsilon", "1", "--budget-delta", "1e-5", "--coordinator", NOBODY,
                   "--ca-cert", "demo/certs/ca.pem", "--auth-key", "demo/keys/hospital-c",
                   "--state-dir", "demo/state/bad"], demo, timeout=60)
    assert res.returncode == 2
    assert "demo/bad.csv" in res.stderr and "'age'" in res.stderr and "row 5" in res.stderr and "abc" in res.stderr
    assert "Starting Flower SuperNode" not in res.stdout + res.stderr


def test_client_needs_an_explicit_first_start_and_never_replaces_a_ledger(demo):
    common = ["client", "--data", "demo/silos/client-3.csv", "--schema", "demo/silos/schema.json",
              "--budget-epsilon", "1", "--budget-delta", "1e-5", "--coordinator", NOBODY,
              "--ca-cert", "demo/certs/ca.pem", "--auth-key", "demo/keys/hospital-c"]
    res = run_cli(common + ["--state-dir", "demo/state/never-started"], demo, timeout=60)
    assert res.returncode == 2 and "no privacy ledger" in res.stderr and "--init-ledger" in res.stderr
    assert not (demo / "demo/state/never-started/ledger.json").exists()
    (demo / "demo/state/has-ledger").mkdir(parents=True)
    Ledger.create(demo / "demo/state/has-ledger", 1.0, 1e-5)
    res = run_cli(common + ["--state-dir", "demo/state/has-ledger", "--init-ledger"], demo, timeout=60)
    assert res.returncode == 2 and "a ledger already exists" in res.stderr
    assert "Starting Flower SuperNode" not in res.stdout + res.stderr


def test_failed_run_makes_coordinator_exit_nonzero(demo, tmp_path):
    # Nobody connects within wait_timeout: the ServerApp raises, Flower marks the run failed
    # (while `flwr run` itself reported success); the coordinator must exit 1 and say why.
    cfg = tmp_path / "quick-fail.toml"
    cfg.write_text(EXAMPLE_CONFIG.read_text().replace("wait_timeout = 300", "wait_timeout = 2"))
    assert "wait_timeout = 2" in cfg.read_text()
    procs = Processes(demo)
    try:
        start_coordinator(procs, "coordinator-fail", [
            "coordinator", "--config", str(cfg), "--schema", "demo/silos/schema.json", "--insecure",
            "--clients", "2", "--out", "demo/run-fail"])
        rc = procs.wait("coordinator-fail", timeout=180)
    finally:
        procs.stop_all()
    out = procs.output("coordinator-fail")
    assert rc == 1, out[-3000:]
    assert "WARNING" in out and "--insecure" in out
    assert "finished:failed" in out and "clients connected within 2s" in out, out[-3000:]
    assert not (demo / "demo/run-fail/synthesizer").exists()


SHARED_CONFIG = REPO / "examples" / "federation-shared.toml"
SHARED_ROUNDS = 2  # the example's 4 cut to 2: a deployment round here takes 20-26 s of Flower's 3 s polls


@pytest.fixture(scope="module")
def shared_federation(demo):
    """The three registered institutions again, on fresh ledgers, with the noise shared under SecAgg+."""
    procs = Processes(demo)
    config = demo / "federation-shared.toml"
    example = SHARED_CONFIG.read_text()
    assert example.count("rounds = 4 ") == 1
    config.write_text(example.replace("rounds = 4 ", f"rounds = {SHARED_ROUNDS} "))
    try:
        addr = start_coordinator(procs, "coordinator-shared", [
            "coordinator", "--config", str(config), "--schema", "demo/silos/schema.json",
            "--certs", "demo/certs", *sum((["--authorized-key", f"demo/keys/{n}.pub"] for n in INSTITUTIONS), []),
            "--out", "demo/run-shared"])
        for i, name in enumerate(INSTITUTIONS, start=1):
            procs.start(f"{name}-shared", [
                "client", "--data", f"demo/silos/client-{i}.csv", "--schema", "demo/silos/schema.json",
                "--budget-epsilon", "1", "--budget-delta", "1e-5", "--coordinator", addr,
                "--ca-cert", "demo/certs/ca.pem", "--auth-key", f"demo/keys/{name}",
                "--state-dir", f"demo/state-shared/{name}", "--init-ledger"])
        rc = procs.wait("coordinator-shared", timeout=RUN_GUARD)
        yield {"root": demo, "procs": procs, "coordinator_rc": rc}
    finally:
        procs.stop_all()


def test_shared_noise_runs_end_to_end_with_tls_auth_and_secagg(shared_federation):
    """Shared-noise mode over the real deployment: the pooled counts from 3 shares, then every round
    one pooled step of 3 contributions, each institution's ledger holding its counts share and one
    shared-noise step per round and both epsilons, the
    model card stating both and the trust assumption behind them."""
    procs, root = shared_federation["procs"], shared_federation["root"]
    out = procs.output("coordinator-shared")
    assert shared_federation["coordinator_rc"] == 0, out[-4000:]
    assert "TLS, SuperNode authentication on" in out
    assert f"round {SHARED_ROUNDS} done" in out and "if all other parties colluded" in out, out[-3000:]
    assert "pooled counts: category counts and histograms summed from 3 institutions" in out, out[-3000:]
    card = json.loads((root / "demo/run-shared/model_card.json").read_text())
    assert card["rounds_completed"] == SHARED_ROUNDS and [r["contributors"] for r in card["rounds"]] == [3] * SHARED_ROUNDS
    assert card["plan"]["shared_noise"]["min_contributors"] == 3
    assert "1 colluding institution" in card["privacy_note"]
    for name in INSTITUTIONS:
        ledger = Ledger.open(root / "demo/state-shared" / name, 1.0, 1e-5)
        shared = [h for h in ledger.history if not isinstance(h, tuple)]  # every release is a share
        assert len(shared) == len(ledger.history)
        # its pooled counts share before round 1, the steps, then the marginal fit's shares
        counts, steps = shared[0], [h for h in shared if h.sample_rate < 1.0]
        assert counts.sample_rate == 1.0 and counts.honest_shares == 2
        assert [e["event"] for e in ledger.events].count("pooled_counts") == 1
        assert len(steps) == SHARED_ROUNDS and all(s.honest_shares == 2 and s.sample_rate < 1.0 for s in steps)
        assert 0 < ledger.epsilon_spent <= 1.0 and ledger.epsilon_alone > ledger.epsilon_spent
    reported = sorted((c["epsilon_spent"], c["epsilon_alone"]) for c in card["clients"])
    in_ledgers = sorted((round(lg.epsilon_spent, 2), round(lg.epsilon_alone, 2)) for lg in
                        (Ledger.open(root / "demo/state-shared" / n, 1.0, 1e-5) for n in INSTITUTIONS))
    assert reported == in_ledgers


def test_the_marginal_fit_runs_after_the_last_round_of_a_deployment(shared_federation):
    """The example config asks for a marginal fit: each institution made the pair-error release
    once (through SecAgg+, after the last round), and the model records what the coordinator did with it."""
    procs, root = shared_federation["procs"], shared_federation["root"]
    out = procs.output("coordinator-shared")
    assert "marginal fit" in out, out[-3000:]
    model = json.loads((root / "demo/run-shared/synthesizer/synthesizer.json").read_text())
    fit = model["info"]["marginal_fit"]
    for name in INSTITUTIONS:
        events = [e["event"] for e in Ledger.open(root / "demo/state-shared" / name, 1.0, 1e-5).events]
        assert events.count("pair_errors") == 1
        assert events.count("pair_counts") == (1 if fit.get("pairs") else 0)
    assert fit.get("contributors") == 3
