"""The coordinator's ServerApp for the Deployment Engine: ``fedsynth.server.app:app``.

In deployment the SuperLink starts the ServerApp in its own process, so nothing can be
handed to it in memory. ``fedsynth coordinator`` passes everything through the Flower *run
config* instead (see :func:`run_config_for`), and this module rebuilds the same
:class:`~fedsynth.server.workflow.FederatedRun` the simulation uses. Progress events are
appended to ``<out-dir>/events.jsonl``, which the coordinator process follows to print
rounds and each institution's reported epsilon.

Only public things travel in the run config: the plan, SecAgg+ settings, the expected
number of institutions and paths on the coordinator's own machine.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fedsynth.common.errors import FedsynthError
from fedsynth.common.protocol.federation import FederationPlan, SecAggSettings
from fedsynth.common.protocol.flower_app import quiet_logs

# `flwr run` checks components statically (an `app = ...` or `__all__` entry in the source);
# `app` itself is built lazily by __getattr__ below so that importing helpers stays light.
__all__ = ["app", "ServerRunSettings", "run_config_for", "settings_from_run_config", "build_run", "event_log",
           "spent_in", "reported_spend"]

EVENTS_FILE = "events.jsonl"
RUN_CONFIG_KEYS = ("plan", "secagg", "schema", "out-dir", "clients", "wait-timeout")


@dataclass(frozen=True)
class ServerRunSettings:
    """Everything the deployment ServerApp needs, as carried in the Flower run config."""

    plan: FederationPlan
    secagg: SecAggSettings
    schema: str
    out_dir: str
    clients: int
    wait_timeout: int = 600


def run_config_for(settings: ServerRunSettings) -> dict[str, Any]:
    """Flat run-config values (TOML scalars) for ``flwr run --run-config``."""
    return {"plan": settings.plan.to_json(), "secagg": json.dumps(asdict(settings.secagg), sort_keys=True),
            "schema": str(settings.schema), "out-dir": str(settings.out_dir), "clients": int(settings.clients),
            "wait-timeout": int(settings.wait_timeout)}


def settings_from_run_config(run_config: dict[str, Any]) -> ServerRunSettings:
    missing = [k for k in RUN_CONFIG_KEYS if str(run_config.get(k, "")) == ""]
    if missing:
        raise FedsynthError(f"run config lacks {missing}; submit runs with `fedsynth coordinator`")
    return ServerRunSettings(
        plan=FederationPlan.from_json(str(run_config["plan"])),
        secagg=SecAggSettings(**json.loads(str(run_config["secagg"]))),
        schema=str(run_config["schema"]), out_dir=str(run_config["out-dir"]),
        clients=int(run_config["clients"]), wait_timeout=int(run_config["wait-timeout"]),
    )


def event_log(out_dir: Path):
    """An ``on_event`` callback appending one JSON line per event (flushed, so it can be followed)."""
    path = Path(out_dir) / EVENTS_FILE

    def on_event(ev: dict[str, Any]) -> None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(ev, default=str) + "\n")
            fh.flush()

    return on_event


def spent_in(replies: dict[str, dict[str, Any]]) -> dict[str, float]:
    """node id -> epsilon spent, from budget replies or fit reports (a refusal's -1 is no report)."""
    out = {}
    for nid, reply in replies.items():
        eps = reply.get("epsilon_spent")
        if isinstance(eps, (int, float)) and not isinstance(eps, bool) and eps >= 0:
            out[str(nid)] = float(eps)
    return out


_SPEND_FIELDS = {"budget_check": "replies", "round_done": "reports", "finished": "budget"}


def reported_spend(ev: dict[str, Any]) -> dict[str, float]:
    """What an event says each institution has spent (empty for events that say nothing about it)."""
    if ev.get("event") == "failed":
        return {str(k): float(v) for k, v in (ev.get("spent") or {}).items()}
    field = _SPEND_FIELDS.get(str(ev.get("event")))
    return spent_in(ev.get(field) or {}) if field else {}


def build_run(run_config: dict[str, Any]):
    """The FederatedRun described by a run config (schema hash checked against the plan)."""
    from fedsynth.common.data.schema import Schema
    from fedsynth.server.workflow import FederatedRun

    s = settings_from_run_config(run_config)
    schema = Schema.load(s.schema)
    if s.plan.schema_hash != schema.hash():
        raise FedsynthError(f"{s.schema}: schema hash {schema.hash()} differs from the plan's {s.plan.schema_hash}")
    out = Path(s.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return FederatedRun(s.plan, schema, out, s.secagg, s.clients, event_log(out), wait_timeout=s.wait_timeout)


def _make_app():
    from flwr.server import ServerApp

    server_app = ServerApp()

    @server_app.main()
    def main(grid, context) -> None:
        from fedsynth.server.dropout_grid import DropoutAwareGrid

        quiet_logs()
        # a failure is logged as a `failed` event; a node that went offline is not waited for
        build_run(dict(context.run_config))(DropoutAwareGrid(grid), context)

    return server_app


def __getattr__(name: str):
    # Built lazily so that importing this module (e.g. for its helpers) does not import Flower.
    if name == "app":
        return _make_app()
    raise AttributeError(name)
