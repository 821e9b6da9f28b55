"""The benchmark-only plain-aggregation mode: off by default everywhere, loud when on, and
computing the same mean that SecAgg+ would unmask."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from fedsynth.common.protocol.federation import FederationPlan, SecAggSettings
from fedsynth.common.data.schema import Schema
from fedsynth.common.data.encoding import CountsLayout
from fedsynth.server.strategy import PlainMeanFedAvg
from fedsynth.server.workflow import PLAIN_AGGREGATION_WARNING, FederatedRun
from fedsynth.simulations.driver import SimulationConfig


def _schema() -> Schema:
    return Schema.from_json({"format": "fedsynth-schema/1", "name": "t",
                             "columns": [{"name": "a", "type": "categorical", "categories": ["x", "y"]}]})


def test_secure_aggregation_is_the_default_everywhere(tmp_path):
    assert SimulationConfig(out=str(tmp_path)).insecure_plain_aggregation is False
    assert inspect.signature(FederatedRun).parameters["insecure_plain_aggregation"].default is False
    from fedsynth.client.app import make_client_app

    assert inspect.signature(make_client_app).parameters["secure"].default is True


def test_cli_has_no_plain_aggregation_flag():
    """No subcommand exposes a switch that turns secure aggregation off (``--insecure`` is about
    transport only and keeps SecAgg+ on)."""
    import typer.main

    from fedsynth import cli

    group = typer.main.get_command(cli.app)
    names = []
    for command in group.commands.values():
        subcommands = getattr(command, "commands", None)
        for leaf in (subcommands.values() if subcommands else [command]):
            for param in leaf.params:
                names += [param.name or "", *getattr(param, "opts", [])]
    assert names, "the CLI exposes no options at all?"
    assert "--insecure" in names  # the introspection does see real options
    assert not [n for n in names if "plain" in n.lower() or "aggregation" in n.lower()]


def test_plain_aggregation_warns_that_updates_are_exposed(tmp_path):
    with pytest.warns(RuntimeWarning, match="individual update"):
        FederatedRun(FederationPlan(), _schema(), tmp_path, SecAggSettings(), 2, insecure_plain_aggregation=True)
    assert "INSECURE" in PLAIN_AGGREGATION_WARNING


def test_plain_mean_matches_what_secagg_would_unmask():
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

    plan = FederationPlan(server_lr=1.0)
    initial = [np.zeros(3, dtype=np.float32)]
    strategy = PlainMeanFedAvg(plan, initial, CountsLayout.unordered([2]), 2, 8.0)
    # [frequencies, squared-norm slot, weight^2, weight]
    ups = [[np.array([4.0, 0.0, -4.0], np.float32), np.array([1.0, 0.0, 0.02, 1.0, 1.0])],
           [np.array([0.0, 4.0, 4.0], np.float32), np.array([0.0, 1.0, 0.02, 1.0, 1.0])]]
    results = [(type("P", (), {"cid": str(i)})(), FitRes(Status(Code.OK, ""), ndarrays_to_parameters(u), 1, {}))
               for i, u in enumerate(ups)]
    strategy.aggregate_fit(1, results, [])
    np.testing.assert_allclose(strategy.current[0], np.array([2.0, 2.0, 0.0]) / plan.update_scale)
    np.testing.assert_allclose(strategy.freqs[0], [0.5, 0.5], atol=1e-6)
