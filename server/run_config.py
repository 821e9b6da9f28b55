"""What the ServerApp is handed through Flower: the app project, the run config, the CLI config.

In deployment the SuperLink starts the ServerApp in its own process, so nothing can be
handed to it in memory: everything travels in the Flower *run config*, whose keys and defaults
are :data:`RUN_CONFIG_DEFAULTS` (the same as ``[tool.flwr.app.config]`` in the repository's
pyproject). Two routes fill it:

* ``fedsynth coordinator`` writes a tiny Flower App project naming fedsynth's installed
  components (:func:`write_app_project`) and submits it with ``flwr run``, the resolved plan and
  SecAgg+ settings in the run config (:func:`run_config_for`, read back with
  :func:`settings_from_run_config`);
* a Flower user runs ``flwr run . <connection>`` from the repository with ``federation-config``
  (the coordinator's config file) and ``out-dir``; the ServerApp resolves the plan itself
  (:func:`fedsynth.server.deployment_config.settings_for_run`).

Only public things travel in the run config: the plan, SecAgg+ settings, the expected
number of institutions and paths on the coordinator's own machine.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fedsynth.common.atomic import atomic_write_text
from fedsynth.common.errors import FedsynthError
from fedsynth.common.protocol.federation import FederationPlan, SecAggSettings
from fedsynth.common.protocol.flower_app import APP_NAME, APP_PUBLISHER, COMPONENTS, app_version

#: the name of the one SuperLink connection in the `flwr` CLI config the coordinator writes
CONNECTION = "fedsynth"
RUN_CONFIG_KEYS = ("plan", "secagg", "schema", "out-dir", "clients", "wait-timeout")
#: every run-config key the ServerApp reads, with the app's defaults (empty: not given)
RUN_CONFIG_DEFAULTS: dict[str, str | int] = {"federation-config": "", "schema": "", "out-dir": "", "clients": 0,
                                             "plan": "", "secagg": "", "wait-timeout": 600, "threads": 0}


@dataclass(frozen=True)
class ServerRunSettings:
    """Everything the deployment ServerApp needs, as carried in the Flower run config."""

    plan: FederationPlan
    secagg: SecAggSettings
    schema: str
    out_dir: str
    clients: int
    wait_timeout: int = 600
    # torch threads for the coordinator's own fine-tune (the marginal fit); 0: as the ServerApp set
    # them. The simulation runs its institutions on the same cores, idle while the coordinator fits.
    threads: int = 0


def run_config_for(settings: ServerRunSettings) -> dict[str, Any]:
    """Flat run-config values (TOML scalars) for ``flwr run --run-config``."""
    return {"plan": settings.plan.to_json(), "secagg": json.dumps(asdict(settings.secagg), sort_keys=True),
            "schema": str(settings.schema), "out-dir": str(settings.out_dir), "clients": int(settings.clients),
            "wait-timeout": int(settings.wait_timeout), "threads": int(settings.threads)}


def settings_from_run_config(run_config: dict[str, Any]) -> ServerRunSettings:
    missing = [k for k in RUN_CONFIG_KEYS if str(run_config.get(k, "")) == ""]
    if missing:
        raise FedsynthError(f"run config lacks {missing}; submit runs with `fedsynth coordinator`, or give "
                            "federation-config and out-dir")
    return ServerRunSettings(
        plan=FederationPlan.from_json(str(run_config["plan"])),
        secagg=SecAggSettings(**json.loads(str(run_config["secagg"]))),
        schema=str(run_config["schema"]), out_dir=str(run_config["out-dir"]),
        clients=int(run_config["clients"]), wait_timeout=int(run_config["wait-timeout"]),
        threads=int(run_config.get("threads", 0)),
    )


def write_app_project(app_dir: Path, components: dict[str, str] = COMPONENTS) -> Path:
    """The Flower App that `flwr run` submits: only a pyproject naming fedsynth's components.

    fedsynth is installed on every machine, so the app bundle carries no code; its run
    config keys are filled per run from the federation config. Institutions check its
    identity (:mod:`fedsynth.common.protocol.flower_app`) and run their own installed ClientApp.
    ``components``: the deployment's, or the simulation's (:mod:`fedsynth.simulations.components`).
    """
    app_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(app_dir / "pyproject.toml", f"""[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{APP_NAME}"
version = "{app_version()}"
description = "fedsynth federated DP synthesizer (components are installed with fedsynth)"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "{APP_PUBLISHER}"

[tool.flwr.app.components]
serverapp = "{components['serverapp']}"
clientapp = "{components['clientapp']}"

[tool.flwr.app.config]
""" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in RUN_CONFIG_DEFAULTS.items()))
    return app_dir


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))  # a JSON string literal is a valid TOML basic string


def write_run_config(path: Path, values: dict[str, Any]) -> Path:
    atomic_write_text(path, "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items()))
    return path


def write_flwr_config(flwr_home: Path, address: str, ca: Path | None) -> None:
    """``$FLWR_HOME/config.toml`` with one connection, used by the `flwr` commands we run."""
    lines = ["[superlink]", f'default = "{CONNECTION}"', "", f"[superlink.{CONNECTION}]", f'address = "{address}"']
    lines += [f"root-certificates = {json.dumps(str(ca))}"] if ca else ["insecure = true"]
    flwr_home.mkdir(parents=True, exist_ok=True)
    atomic_write_text(flwr_home / "config.toml", "\n".join(lines) + "\n")
