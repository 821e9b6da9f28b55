"""Killed and restarted deployment processes: the federation survives, nothing runs unsupervised.

Real `fedsynth coordinator` and `fedsynth client` processes over TLS with node
authentication on loopback, set up with tests/test_deployment.py's helpers. One run of two
institutions and two rounds goes through, in order:

1. hospital-b's `fedsynth client` process group is SIGKILLed right after it trained and
   stored its round-1 update; its Flower processes end with it; the coordinator stops waiting
   for the reply its dead SuperNode owed (no [secagg] timeout here, as deployed by default);
   hospital-b is started again and rejoins; the retried round re-sends the stored update (no
   second charge). (That the coordinator waits for an institution that
   is away longer is tests/test_absent_institutions.py's subject.)
2. the coordinator's process group is SIGKILLed after round 1; its SuperLink and ServerApp
   end with it; the clients keep running;
3. hospital-a's main process is SIGKILLed while the coordinator is down, and started again;
4. the coordinator is started again: it re-registers the keys, resumes from its round-1
   checkpoint, the clients reconnect by themselves, and the run completes.

Also: a coordinator whose main process alone is SIGKILLed restarts on its own port (its
SuperLink is gone, not holding the port and the keys), and one whose port is held by another
process names it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import test_deployment
from test_deployment import EXAMPLE_CONFIG, Processes, run_cli, start_coordinator

from fedsynth.common.deploy.pids import descendants, process_identity

demo = test_deployment.demo  # the module-scoped fixture: silo files, certificates, node keys

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree in /proc")

FAST_PLAN = """
wait_timeout = 240
run_timeout = 900
[plan]
rounds = 2
local_epochs = 0.2
min_clients = 2
[plan.model]
model = "vae"
hidden = 16
[secagg]
num_shares = 1.0
reconstruction_threshold = 0.67
"""  # no [secagg] timeout: as deployed by default, a reply owed by a dead SuperNode is waited for until seen offline


def assert_gone(tree: dict[int, str], seconds: float = 15) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        left = {pid: ident for pid, ident in tree.items() if process_identity(pid) == ident}
        if not left:
            return
        time.sleep(0.2)
    pytest.fail(f"still running {seconds}s after their parent was killed: {left}")


def kill_and_check(proc: subprocess.Popen, *, group: bool) -> None:
    tree = descendants(proc.pid)
    assert any("flower-super" in ident for ident in tree.values()), tree  # it did run Flower
    if group:
        os.killpg(proc.pid, signal.SIGKILL)  # started in its own session: its group
    else:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert_gone(tree)


def wait_until(cond: Callable[[], bool], timeout: float, what: str, procs: Processes, running: list[str]) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        for name in running:
            if procs.procs[name].poll() is not None:
                pytest.fail(f"`fedsynth {name}` exited ({procs.procs[name].returncode}) while waiting for {what}:\n"
                            f"{procs.output(name)[-4000:]}")
        time.sleep(0.5)
    pytest.fail(f"no {what} within {timeout}s:\n" + "\n".join(f"--- {n}\n{procs.output(n)[-2500:]}" for n in running))


def rounds_charged(state: Path) -> list[int]:
    ledger = json.loads((state / "ledger.json").read_text())
    return [e["round"] for e in ledger["events"] if e["event"] == "round"]


def test_killed_processes_end_their_flower_children_and_the_run_resumes(demo, tmp_path):
    root = demo
    config = tmp_path / "fast.toml"
    config.write_text(FAST_PLAN)
    state = root / "demo/faults/state"
    institutions = {"hospital-a": 1, "hospital-b": 2}
    coordinator = ["coordinator", "--config", str(config), "--schema", "demo/silos/schema.json",
                   "--certs", "demo/certs", "--authorized-key", "demo/keys/hospital-a.pub",
                   "--authorized-key", "demo/keys/hospital-b.pub", "--out", "demo/faults/run"]

    def client(name: str, first: bool) -> list[str]:
        return ["client", "--data", f"demo/silos/client-{institutions[name]}.csv", "--schema", "demo/silos/schema.json",
                "--budget-epsilon", "1", "--budget-delta", "1e-5", "--coordinator", addr,
                "--ca-cert", "demo/certs/ca.pem", "--auth-key", f"demo/keys/{name}",
                "--state-dir", str(state / name)] + (["--init-ledger"] if first else [])

    procs = Processes(root)
    try:
        addr = start_coordinator(procs, "coord-1", coordinator)  # client() reads it
        wait_until(lambda: "waiting for 2 institutions" in procs.output("coord-1"), 120, "key registration",
                   procs, ["coord-1"])  # clients started earlier would only be refused and retry
        procs.start("a-1", client("hospital-a", True))
        procs.start("b-1", client("hospital-b", True))

        # 1. hospital-b dies (its whole process group) once its round-1 update is paid for and stored
        wait_until(lambda: (state / "hospital-b/last_update.npz").exists(), 300, "round-1 update from hospital-b",
                   procs, ["coord-1", "a-1", "b-1"])
        kill_and_check(procs.procs["b-1"], group=True)
        procs.start("b-2", client("hospital-b", False))
        wait_until(lambda: "round 1 done" in procs.output("coord-1"), 300, "round 1", procs, ["coord-1", "a-1", "b-2"])
        assert "round_failed: round=1" in procs.output("coord-1")  # the attempt hospital-b died in

        # 2. the coordinator dies (its process group); 3. so does hospital-a's main process, meanwhile
        kill_and_check(procs.procs["coord-1"], group=True)
        kill_and_check(procs.procs["a-1"], group=False)
        procs.start("a-2", client("hospital-a", False))
        assert procs.procs["b-2"].poll() is None, procs.output("b-2")[-3000:]  # still trying to reconnect

        # 4. restart: keys registered again, round 1 checkpoint resumed, clients back by themselves
        procs.start("coord-2", [*coordinator, "--address", addr])  # on its own port again
        rc = procs.wait("coord-2", timeout=420)
        out2 = procs.output("coord-2")
        assert rc == 0, out2[-4000:]
        assert out2.count("registered institution key") == 2 and "resumed: round=1" in out2, out2[-3000:]
        assert "round 2 done" in out2 and "round 1 done" not in out2
        assert procs.procs["b-2"].poll() is None and "reconnecting" in procs.output("b-2")  # survived the restart
        assert (root / "demo/faults/run/synthesizer/synthesizer.json").is_file()
        for name in institutions:  # lost attempts re-sent, never charged twice
            ledger = json.loads((state / name / "ledger.json").read_text())
            spending = [e["event"] for e in ledger["events"] if e.get("releases")]
            assert spending == ["category_frequencies", "round", "round"], name
            assert rounds_charged(state / name) == [1, 2] and len(ledger["history"]) == 3, name
    finally:
        procs.stop_all()
    assert procs.procs["b-2"].returncode == 0  # a deliberate stop (SIGTERM) is a clean exit


def test_coordinator_killed_alone_restarts_on_its_own_port(demo, tmp_path):
    """kill -9 of the main process only: its SuperLink must not survive to hold the port and the
    keys (the restart would talk to the orphan: "SuperLink listening", then "Public key already in use")."""
    args = ["coordinator", "--config", str(EXAMPLE_CONFIG), "--schema", "demo/silos/schema.json",
            "--certs", "demo/certs", "--authorized-key", "demo/keys/hospital-a.pub",
            "--authorized-key", "demo/keys/hospital-b.pub", "--out", str(tmp_path / "run")]
    procs = Processes(demo)
    try:
        addr = start_coordinator(procs, "coord-alone-1", args)
        first = procs.procs["coord-alone-1"]
        wait_until(lambda: "waiting for 2 institutions" in procs.output("coord-alone-1"), 120, "key registration",
                   procs, ["coord-alone-1"])
        kill_and_check(first, group=False)
        second = procs.start("coord-alone-2", [*args, "--address", addr])
        wait_until(lambda: "waiting for 2 institutions" in procs.output("coord-alone-2"), 120,
                   "key registration after the restart", procs, ["coord-alone-2"])
        out = procs.output("coord-alone-2")
        assert out.count("registered institution key") == 2 and "already in use" not in out, out
        tree = descendants(second.pid)
        second.send_signal(signal.SIGTERM)  # a deliberate stop takes its Flower processes along
        assert second.wait(timeout=30) == 130
        assert_gone(tree)
    finally:
        procs.stop_all()
    assert not (tmp_path / "run/flower/fedsynth-children.json").exists()


def test_coordinator_names_the_process_holding_its_port(demo, tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        res = run_cli(["coordinator", "--config", str(EXAMPLE_CONFIG), "--schema", "demo/silos/schema.json",
                       "--insecure", "--clients", "2", "--address", f"127.0.0.1:{port}",
                       "--out", str(tmp_path / "run")], demo, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"port in use by another process (pid {os.getpid()}" in res.stderr, res.stderr
    assert "listening for institutions" not in res.stdout
    assert not (tmp_path / "run/flower/fedsynth-children.json").exists()  # nothing left behind
