"""The model artifact (common/artifact.py): one format for single-party and federated models."""

import json

import numpy as np
import pytest

from fedsynth.common.artifact import (
    META_FILE,
    ClientPrivacy,
    read_model,
    read_model_card,
)
from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.dp.plan import TrainingConfig
from fedsynth.common.errors import FedsynthError
from fedsynth.common.model.marginal_fit import MarginalFitConfig
from fedsynth.common.model.tabular import build_model
from fedsynth.common.protocol.federation import FederationPlan
from fedsynth.common.protocol.messages import BudgetReply
from fedsynth.common.synthesizer import Synthesizer
from fedsynth.server.checkpoint import SYNTHESIZER, Checkpoint, write_global_model


def _untrained(schema) -> Synthesizer:
    s = Synthesizer(schema, epsilon=1.0, delta=1e-5, training=TrainingConfig(epochs=2, accountant="prv"))
    s.model = build_model(s.encoder, s.model_config)
    s.privacy.history = [(10.0, 1.0, 1), (1.5, 0.01, 300)]
    s.info = {"plan": {"steps": 300}}
    return s


def test_saved_meta_reads_back_and_keeps_its_model_id(adult_schema, tmp_path):
    synth = _untrained(adult_schema)
    path = synth.save(tmp_path / "m")
    meta, arrays = read_model(path)
    written = json.loads((path / META_FILE).read_text())
    assert meta.model_id == written["model_id"]
    assert meta.privacy.accountant == "prv" and meta.training.accountant == "prv"
    assert meta.privacy.history == synth.privacy.history
    assert meta.schema.hash() == adult_schema.hash() and meta.round is None and meta.federation is None
    for a, b in zip(arrays, synth.model.get_arrays()):
        np.testing.assert_array_equal(a, b)
    # what determines the samples is unchanged by a load and save: same model id
    assert Synthesizer.load(path).to_state()[0]["model_id"] == written["model_id"]
    written["format"] = "fedsynth-synthesizer/99"
    (path / META_FILE).write_text(json.dumps(written))
    with pytest.raises(FedsynthError, match="unsupported format"):
        Synthesizer.load(path)


def test_federated_model_and_its_card_state_the_same_model_and_guarantee(adult_schema, tmp_path):
    plan = FederationPlan(rounds=4, schema_hash=adult_schema.hash())
    model = build_model(TableEncoder(adult_schema), plan.model)
    freqs = [np.full(s.size, 1.0 / s.size) for s in model.conditioner.segments]
    history = [{"round": 1, "contributors": 2, "reports": {"a": {}, "b": {}, "c": {"refused": True}}, "secret": 1}]
    ckpt = Checkpoint(1, model.get_arrays(), freqs, history, plan.to_json(), "2026-01-01T00:00:00Z")
    budget = {"node-b": BudgetReply(True, epsilon_spent=0.8, delta=1e-5, schema_hash=adult_schema.hash()),
              "node-a": BudgetReply(True, epsilon_spent=0.5, delta=1e-6, schema_hash=adult_schema.hash()),
              "node-c": BudgetReply(False, epsilon_spent=-1.0)}
    returned = write_global_model(tmp_path, adult_schema, plan, ckpt, budget, {"num_shares": 3})
    card = read_model_card(tmp_path)
    assert card.to_json() == returned
    loaded = Synthesizer.load(tmp_path / SYNTHESIZER)
    assert card.model_id == loaded.info["model_id"]
    assert loaded.epsilon_spent == 0.8 and loaded.privacy.delta == 1e-5  # the largest reported
    assert loaded.info["round"] == card.rounds_completed == 1 and card.rounds_planned == 4
    assert card.participating_clients == 2 == loaded.info["federation"]["participating_clients"]
    assert card.clients[0] == ClientPrivacy("client-1", 0.5, 1e-6, adult_schema.hash())  # node ids not published
    assert [c["client"] for c in loaded.info["federation"]["clients"]] == ["client-1", "client-2", "client-3"]
    assert card.rounds == [{"round": 1, "contributors": 2}]
    assert card.marginal_fit is None  # none was made
    meta, _ = read_model(tmp_path / SYNTHESIZER)
    assert meta.privacy.per_client and meta.privacy.accountant == meta.training.accountant
    assert f"Opacus {meta.training.accountant.upper()} accountant" in card.privacy_note
    # a loaded federated model saved again still states the clients' guarantee, not epsilon 0
    again = Synthesizer.load(loaded.save(tmp_path / "copy"))
    assert again.epsilon_spent == 0.8 and read_model(tmp_path / "copy")[0].privacy.per_client


def test_a_fitted_model_rebuilds_its_measured_bins_and_an_older_one_keeps_schema_bins(adult_schema, adult_small,
                                                                                      tmp_path):
    """A fit's bins come from its released histograms, so load() derives them again from the saved
    ones; a model saved before measured bins existed (no ``binning`` key) is read with the
    schema's equal-width bins and keeps its model id."""
    from fedsynth.common.model.tabular import ModelConfig

    quick, no_fit = TrainingConfig(epochs=0.2), MarginalFitConfig(pairs=0)  # the bins come before any fine-tune
    synth = Synthesizer(adult_schema, epsilon=1.0, training=quick, model_config=ModelConfig(hidden=16),
                        marginal_fit=no_fit).fit(adult_small)
    path = synth.save(tmp_path / "m")
    loaded = Synthesizer.load(path)
    assert loaded.encoder.binning == "measured"
    for col, edges in synth.encoder.bin_edges.items():
        np.testing.assert_array_equal(loaded.encoder.bin_edges[col], edges)
        assert not np.allclose(edges, TableEncoder(synth.schema).bin_edges[col]), col
    plain = Synthesizer(adult_schema, epsilon=1.0, training=quick,
                        model_config=ModelConfig(hidden=16, binning="schema"), marginal_fit=no_fit).fit(adult_small)
    old = plain.save(tmp_path / "old")
    written = json.loads((old / META_FILE).read_text())
    assert "binning" not in written["model_config"]
    again = Synthesizer.load(old)
    assert again.encoder.binning == "schema" and again.to_state()[0]["model_id"] == written["model_id"]


def test_the_model_card_says_whether_the_marginal_fit_was_made(adult_schema, tmp_path):
    """A run whose fit could not be made ends with DP-SGD's model: its card says so, where a
    reader of the run (and every benchmark) looks, not only the event log."""
    plan = FederationPlan(rounds=1, schema_hash=adult_schema.hash())
    model = build_model(TableEncoder(adult_schema), plan.model)
    freqs = [np.full(s.size, 1.0 / s.size) for s in model.conditioner.segments]
    why = {"skipped": "the pair-count round did not complete"}
    ckpt = Checkpoint(1, model.get_arrays(), freqs, [], plan.to_json(), "2026-01-01T00:00:00Z", marginal_fit=why)
    write_global_model(tmp_path, adult_schema, plan, ckpt, {}, {})
    assert read_model_card(tmp_path).marginal_fit == why
    assert Synthesizer.load(tmp_path / SYNTHESIZER).info["marginal_fit"] == why

