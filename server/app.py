"""The coordinator's ServerApp for the Deployment Engine: ``fedsynth.server.app:app``.

In deployment the SuperLink starts the ServerApp in its own process, so nothing can be
handed to it in memory. Everything comes through the Flower *run config* instead, filled by
``fedsynth coordinator`` or given to ``flwr run`` (:mod:`fedsynth.server.run_config`), and this
module rebuilds the same :class:`~fedsynth.server.workflow.FederatedRun` the simulation uses. Progress events are
appended to ``<out-dir>/events.jsonl`` (:mod:`fedsynth.server.events`), which the coordinator
process follows to print rounds and each institution's reported epsilon.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flwr.server import ServerApp

from fedsynth.common.data.schema import Schema
from fedsynth.common.errors import FedsynthError
from fedsynth.common.protocol.flower_app import quiet_logs
from fedsynth.server.dropout_grid import DropoutAwareGrid
from fedsynth.server.events import event_log
from fedsynth.server.deployment_config import settings_for_run
from fedsynth.server.workflow import FederatedRun

# `flwr run` checks components statically (an `app = ...` or `__all__` entry in the source)
__all__ = ["app", "build_run"]


def build_run(run_config: dict[str, Any], *, insecure_plain_aggregation: bool = False) -> FederatedRun:
    """The FederatedRun described by a run config (schema hash checked against the plan).
    ``insecure_plain_aggregation``: the simulation's benchmark-only components, never a run config."""
    s = settings_for_run(run_config)
    schema = Schema.load(s.schema)
    if s.plan.schema_hash != schema.hash():
        raise FedsynthError(f"{s.schema}: schema hash {schema.hash()} differs from the plan's {s.plan.schema_hash}")
    out = Path(s.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return FederatedRun(s.plan, schema, out, s.secagg, s.clients, event_log(out), wait_timeout=s.wait_timeout,
                        fit_threads=s.threads, insecure_plain_aggregation=insecure_plain_aggregation)


app = ServerApp()


@app.main()
def main(grid, context) -> None:
    quiet_logs()
    # a failure is logged as a `failed` event; a node that went offline is not waited for
    build_run(dict(context.run_config))(DropoutAwareGrid(grid), context)
