"""`fedsynth simulate` on Flower's simulation runtime: a local SuperLink in simulation mode, `flwr run`.

The whole successful route is tests/test_simulation.py; here, its parts: the events it
follows, how a simulated institution finds its silo, and a run that fails on the runtime
(an error naming the status and Flower's log, with no Flower process left behind)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from fedsynth.common.deploy.flwr_cli import FlwrCli
from fedsynth.common.deploy.processes import PID_FILE
from fedsynth.common.errors import FedsynthError
from fedsynth.common.protocol.federation import FederationPlan, SecAggSettings
from fedsynth.server.events import EventTail
from fedsynth.server.run_config import ServerRunSettings
from fedsynth.simulations import runtime
from fedsynth.simulations.components import COMPONENTS, HARNESS_ENV, Harness, simulated_institution


def test_the_event_tail_gives_each_complete_line_once_and_skips_what_was_there(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"event": "resumed", "round": 3}) + "\n")
    tail = EventTail(path)
    assert tail.new() == []  # a resumed run's old events are not news
    with open(path, "a") as fh:
        fh.write(json.dumps({"event": "round_done", "round": 4}) + "\n" + '{"event": "round_')
    assert tail.new() == [{"event": "round_done", "round": 4}]  # the half-written line waits
    with open(path, "a") as fh:
        fh.write('done", "round": 5}\n')
    assert tail.new() == [{"event": "round_done", "round": 5}]
    assert tail.new() == []


class _SlowControlApi(FlwrCli):
    """A SuperLink whose Control API refuses the first ``refusals`` calls (it is still starting)."""

    def __init__(self, refusals: int) -> None:
        super().__init__({}, Path("."), "local")
        self.calls, self.refusals = 0, refusals

    def __call__(self, *args: str, timeout: float = 120) -> dict:
        self.calls += 1
        if self.calls <= self.refusals:
            raise FedsynthError("`flwr run` failed: connection refused")
        return {"success": True, "run-id": 7}


def test_a_submit_waits_for_a_control_api_that_answers_late_and_no_longer():
    late = _SlowControlApi(refusals=2)
    assert late.submit(Path("app"), Path("run.toml"), within=5) == "7" and late.calls == 3
    never = _SlowControlApi(refusals=10**6)
    with pytest.raises(FedsynthError, match="connection refused"):
        never.once_up("ls", within=0.3, every=0.05)
    assert 2 <= never.calls <= 20  # retried, then gave up once the time was up
    once = _SlowControlApi(refusals=1)
    with pytest.raises(FedsynthError):  # a deployment's own submit (within=0) is not retried
        once.submit(Path("app"), Path("run.toml"))
    assert once.calls == 1


def test_a_simulated_institution_is_found_by_its_partition_id_in_the_harness_file(tmp_path, monkeypatch):
    context = SimpleNamespace(node_config={"partition-id": 1, "num-partitions": 3})
    monkeypatch.delenv(HARNESS_ENV, raising=False)
    with pytest.raises(FedsynthError, match="only under `fedsynth simulate`"):
        simulated_institution(context)  # a deployment never reaches a simulation's files
    Harness(str(tmp_path / "silos"), str(tmp_path / "clients"), str(tmp_path / "schema.json"), 2.0, 1e-6).save(
        tmp_path / "harness.json")
    monkeypatch.setenv(HARNESS_ENV, str(tmp_path / "harness.json"))
    s = simulated_institution(context)
    assert (s.data, s.state_dir) == (str(tmp_path / "silos" / "client-2.csv"), str(tmp_path / "clients" / "client-2"))
    assert (s.schema, s.epsilon, s.delta, s.init_ledger) == (str(tmp_path / "schema.json"), 2.0, 1e-6, False)


def test_a_run_that_fails_on_the_runtime_is_an_error_and_leaves_no_flower_process(tmp_path, adult_schema,
                                                                                 monkeypatch):
    """The plan names another schema: the ServerApp refuses to start. The simulation must not
    wait forever for events that never come, must say how the run ended and where Flower's log
    is, and must stop the SuperLink and everything it started."""
    monkeypatch.setattr(runtime, "STATUS_WHEN_QUIET_S", 2.0)
    out = tmp_path / "run"
    out.mkdir()
    adult_schema.save(out / "schema.json")
    plan = FederationPlan(rounds=1, schema_hash="0" * 16)
    settings = ServerRunSettings(plan, SecAggSettings(), str(out / "schema.json"), str(out), 2)
    harness = Harness(str(out / "silos"), str(out / "clients"), str(out / "schema.json"), 1.0, 1e-5)
    job = runtime.SimulationJob(settings, harness, COMPONENTS, out / "flower.log")
    with pytest.raises(FedsynthError, match=r"ended as finished:failed.*flower\.log"):
        runtime.run_simulation_job(job, lambda ev: None, warn=lambda line: None)
    assert not (out / runtime.FLOWER_DIR / PID_FILE).exists()  # every child stopped and forgotten
    assert not _processes_with(f"{HARNESS_ENV}={out}"), "a Flower process of this run is still alive"
    assert "\x1b[" not in (out / "flower.log").read_text()  # Flower's colours stripped from the log file


def _processes_with(env_entry_prefix: str) -> list[int]:
    """Pids whose environment has an entry starting with ``env_entry_prefix`` (this user's, Linux)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
        except OSError:
            continue
        if any(e.decode(errors="replace").startswith(env_entry_prefix) for e in env):
            found.append(int(entry))
    return found
