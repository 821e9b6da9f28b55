"""The simulation's Flower components, run by Flower's simulation runtime.

``fedsynth simulate`` submits an app naming these two (see :mod:`fedsynth.simulations.runtime`)
to a local SuperLink in simulation mode. They are the deployment components with one
difference: a simulated institution's settings (its silo file, state dir and budget) come
from the harness file the simulation wrote, named by ``$FEDSYNTH_SIMULATION`` and keyed by
Flower's partition id, where a real institution's come from its own SuperNode's node config.
The run config (what a coordinator submits) carries the plan only: nothing in it picks a table.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from flwr.app import Context
from flwr.server import Grid, ServerApp
from flwr.superlink.grid import InMemoryGrid

from fedsynth.client.app import ClientSettings, make_client_app
from fedsynth.common.atomic import atomic_write_text
from fedsynth.common.errors import FedsynthError
from fedsynth.common.protocol.flower_app import quiet_logs
from fedsynth.server.app import build_run

PULL_INTERVAL_S = 0.02
"""How often the simulation's ServerApp looks for replies; Flower's InMemoryGrid waits 0.1 s between
looks. A shared-noise round is four SecAgg+ stages, each of which waited half that on average after its
replies were in; a look is a read of the runtime's in-memory state, so looking more often costs little."""
HARNESS_ENV = "FEDSYNTH_SIMULATION"  # the harness file's path, set for the simulation runtime's processes
COMPONENTS = {"serverapp": "fedsynth.simulations.components:server_app",
              "clientapp": "fedsynth.simulations.components:client_app"}
# benchmarks only (bench/scale.py measures what SecAgg+ costs): SecAgg+ off on both sides
INSECURE_PLAIN_COMPONENTS = {"serverapp": "fedsynth.simulations.components:insecure_plain_server_app",
                             "clientapp": "fedsynth.simulations.components:insecure_plain_client_app"}


@dataclass(frozen=True)
class Harness:
    """What the simulated institutions are: one silo file and state dir each, one budget for all."""

    silo_dir: str
    state_root: str
    schema: str
    epsilon: float
    delta: float

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def from_env(cls) -> Harness:
        path = os.environ.get(HARNESS_ENV, "")
        if not path:
            raise FedsynthError(f"${HARNESS_ENV} is not set: fedsynth.simulations.components run only under "
                                "`fedsynth simulate`; a deployment's are fedsynth.server.app and fedsynth.client.app")
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))

    def client_settings(self, partition_id: int) -> ClientSettings:
        i = partition_id + 1
        return ClientSettings(data=str(Path(self.silo_dir) / f"client-{i}.csv"), schema=self.schema,
                              state_dir=str(Path(self.state_root) / f"client-{i}"), epsilon=self.epsilon,
                              delta=self.delta)


def simulated_institution(context: Any) -> ClientSettings:
    """A simulated institution's settings, by its partition id (``make_client_app``'s resolver)."""
    return Harness.from_env().client_settings(int(context.node_config["partition-id"]))


def server_app_for(*, insecure_plain_aggregation: bool = False,
                   wrap_grid: Callable[[Grid, Context], Grid] | None = None) -> ServerApp:
    """The simulation's ServerApp: the deployment's FederatedRun from the run config (:func:`build_run`).
    ``wrap_grid``: benchmarks only (bench/scale.py counts every message's bytes)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        quiet_logs()
        # The coordinator shares the machine's cores with the simulated institutions (one CPU
        # each): with torch's default of a thread a core, its fine-tune and another torch process
        # (a test worker's `fit`) oversubscribed two cores and each ran many times slower
        torch.set_num_threads(1)
        run = build_run(dict(context.run_config), insecure_plain_aggregation=insecure_plain_aggregation)
        if isinstance(grid, InMemoryGrid):
            grid.pull_interval = PULL_INTERVAL_S
        run(wrap_grid(grid, context) if wrap_grid else grid, context)

    return app


server_app = server_app_for()
client_app = make_client_app(simulated_institution)
insecure_plain_server_app = server_app_for(insecure_plain_aggregation=True)
insecure_plain_client_app = make_client_app(simulated_institution, secure=False)
