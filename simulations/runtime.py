"""Flower's simulation runtime, for one ``fedsynth simulate`` run.

Flower's current route to a simulation is a SuperLink in simulation mode and ``flwr run``
(``flwr.simulation.run_simulation`` is deprecated). The simulation starts its own SuperLink
on a free loopback port with its own ``FLWR_HOME`` under ``<out>/flower``, submits an app
naming :mod:`fedsynth.simulations.components`, follows ``events.jsonl`` as the coordinator
does, and stops the SuperLink and everything it started when the run ends. Flower's and
Ray's own lines go to the log file, not the console.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fedsynth.common.atomic import atomic_write_text
from fedsynth.common.deploy.addresses import free_loopback_port
from fedsynth.common.deploy.flwr_cli import FlwrCli
from fedsynth.common.deploy.processes import PID_FILE, Supervisor, child_env, executable, log_tail
from fedsynth.common.errors import FedsynthError
from fedsynth.server.events import EVENTS_FILE, Event, EventTail
from fedsynth.server.run_config import (
    CONNECTION,
    ServerRunSettings,
    run_config_for,
    write_app_project,
    write_flwr_config,
    write_run_config,
)
from fedsynth.server.run_watch import follow_run
from fedsynth.simulations.components import HARNESS_ENV, Harness

FLOWER_DIR = "flower"  # in the run's output folder: FLWR_HOME, the app, the run config, the harness file
LOOPBACK = "127.0.0.1"
# without an event for this long, the SuperLink is asked whether the run has ended (a ServerApp
# that died without a last event; fedsynth.server.run_watch)
STATUS_WHEN_QUIET_S = 20.0
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class SimulationJob:
    """One run for the simulation runtime: the ServerApp's settings and the simulated institutions."""

    settings: ServerRunSettings
    harness: Harness
    components: dict[str, str]
    log_file: Path  # Flower's and Ray's lines


def run_simulation_job(job: SimulationJob, on_event: Callable[[Event], None],
                       warn: Callable[[str], None] = print) -> None:
    """Run ``job`` to its end, each new event to ``on_event``; a run that did not complete is an error."""
    out = Path(job.settings.out_dir)
    flower_dir = out / FLOWER_DIR
    home = flower_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    port = free_loopback_port()
    write_flwr_config(home, f"{LOOPBACK}:{port}", None)
    job.harness.save(flower_dir / "harness.json")
    env = child_env(home)
    env[HARNESS_ENV] = str((flower_dir / "harness.json").resolve())
    env.setdefault("RAY_DEDUP_LOGS", "0")
    env["RAY_COLOR_PREFIX"] = "0"  # Ray's worker-line prefixes: no colour codes in a log file
    children = Supervisor(flower_dir / PID_FILE, "fedsynth simulate")
    for stale in children.reclaim():  # a killed earlier attempt's SuperLink
        warn(stale)
    try:
        cmd = [executable("flower-superlink"), "--simulation", "--insecure", "--host", LOOPBACK, "--port", str(port),
               "--isolation", "subprocess", "--disable-runtime-dependency-installation"]
        link = children.start("SuperLink", cmd, env, job.log_file)
        children.wait_listening(link, LOOPBACK, port, 60)
        flwr = FlwrCli(env, flower_dir, CONNECTION)
        app = write_app_project(flower_dir / "app", job.components)
        run_cfg = write_run_config(flower_dir / "run_config.toml", run_config_for(job.settings))
        n = job.settings.clients
        run_id = flwr.submit(app, run_cfg, "--federation-config",
                             f"num-supernodes={n} client-resources-num-cpus=1 client-resources-num-gpus=0",
                             within=30)
        try:
            end = follow_run(flwr, run_id, EventTail(out / EVENTS_FILE), children, on_event, STATUS_WHEN_QUIET_S)
            if end.dead is not None:
                raise FedsynthError(f"Flower's {end.dead.name} exited unexpectedly (status "
                                    f"{end.dead.proc.returncode}): {log_tail(end.dead.log_file)}")
            if not end.completed:
                raise FedsynthError(f"the simulated run ended as {end.status}: {end.failure or end.details} "
                                    f"(Flower's log: {job.log_file})")
        finally:
            _keep_run_logs(flwr, run_id, job.log_file, warn)
    finally:
        children.close()
        _strip_colours(job.log_file)


def _keep_run_logs(flwr: FlwrCli, run_id: str, log_file: Path, warn: Callable[[str], None]) -> None:
    """The run's own lines (the ServerApp's and the ClientApps', SecAgg+'s stages among them) are
    kept by the SuperLink, not written to its output: append them to the log file before it stops."""
    try:
        text = flwr.logs(run_id)
    except FedsynthError as exc:
        warn(f"Flower's log of the run is not in {log_file}: {exc}")
        return
    with open(log_file, "a", encoding="utf-8") as fh:
        fh.write(f"\n--- the run's own log (flwr log {run_id} --show) ---\n{text}")


def _strip_colours(path: Path) -> None:
    """Flower's processes colour their lines whatever they write to: a log file gets them plain."""
    if path.exists():
        text = path.read_text(encoding="utf-8", errors="replace")
        atomic_write_text(path, ANSI.sub("", text))
