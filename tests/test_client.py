"""The institution's logic without Flower: budget checks, refusals, restarts, schema mismatch."""

import json

import numpy as np
import pytest

from fedsynth.client.app import ClientSettings, Institution
from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.errors import BudgetExhausted, FedsynthError
from fedsynth.common.protocol.federation import FederationPlan
from fedsynth.common.model.marginal_fit import MarginalFitConfig
from fedsynth.common.model.tabular import ModelConfig, build_model
from fedsynth.common.dp.accounting import epsilon_spent
from fedsynth.common.synthesizer import Synthesizer
from fedsynth.common.data.tables import write_table


@pytest.fixture()
def silo(tmp_path, adult, adult_paths, adult_schema):
    path = tmp_path / "silo.csv"
    write_table(adult.sample(2000, random_state=3), path, schema=adult_schema)
    return path


def make(silo, adult_paths, state, eps=1.0):
    return Institution(ClientSettings(data=str(silo), schema=str(adult_paths[1]), state_dir=str(state),
                                      epsilon=eps, delta=1e-5, init_ledger=True))


def plan_for(schema, rounds=3):
    """Training rounds only (the marginal fit's releases: tests/test_federated_marginal_fit.py)."""
    return FederationPlan(rounds=rounds, local_epochs=0.5, model=ModelConfig(hidden=16), schema_hash=schema.hash(),
                          marginal_fit=MarginalFitConfig(pairs=0))


def initial(schema, plan):
    return build_model(TableEncoder(schema), plan.model).get_arrays()


def test_rounds_land_on_the_cap_then_client_refuses(silo, adult_paths, adult_schema, tmp_path):
    inst = make(silo, adult_paths, tmp_path / "state")
    plan = plan_for(adult_schema, rounds=3)
    arrays = initial(adult_schema, plan)
    for r in (1, 2, 3):
        assert inst.check(plan, 3).can_train
        packed, metrics = inst.train_round(arrays, plan, r, 3, 8.0)
        assert len(packed) == len(arrays) + 1
        assert all(np.all(np.abs(p) <= 8.0) for p in packed)
    ledger = inst.ledger()
    assert ledger.epsilon_spent <= 1.0 and ledger.epsilon_spent > 0.99
    assert ledger.epsilon_spent == pytest.approx(epsilon_spent(ledger.history, 1e-5))
    check = inst.check(plan, 3)
    assert check.to_record() == {"can_train": False, "reason": "budget exhausted", "schema_hash": adult_schema.hash(),
                     "epsilon_spent": round(ledger.epsilon_spent, 2), "delta": 1e-5}
    with pytest.raises(BudgetExhausted):
        inst.train_round(arrays, plan, 4, 3, 8.0)
    assert inst.ledger().epsilon_spent == pytest.approx(ledger.epsilon_spent)  # refusal spent nothing


def test_restarted_client_keeps_its_spent_budget(silo, adult_paths, adult_schema, tmp_path):
    plan = plan_for(adult_schema, rounds=2)
    arrays = initial(adult_schema, plan)
    make(silo, adult_paths, tmp_path / "state").train_round(arrays, plan, 1, 2, 8.0)
    spent = make(silo, adult_paths, tmp_path / "state").ledger().epsilon_spent
    assert spent > 0
    again = make(silo, adult_paths, tmp_path / "state")  # fresh process, same state dir
    assert again.ledger().epsilon_spent == pytest.approx(spent)
    again.train_round(arrays, plan, 2, 2, 8.0)
    assert again.ledger().epsilon_spent > spent
    # the frequency release was charged once only
    events = [e["event"] for e in again.ledger().events]
    assert events.count("category_frequencies") == 1 and events.count("round") == 2


def test_schema_mismatch_is_refused_clearly(silo, adult_paths, adult_schema, tmp_path):
    inst = make(silo, adult_paths, tmp_path / "state")
    plan = plan_for(adult_schema)
    plan.schema_hash = "0" * 16
    assert inst.check(plan, 3).reason == "schema mismatch"
    with pytest.raises(FedsynthError, match="schema mismatch"):
        inst.train_round(initial(adult_schema, plan), plan, 1, 3, 8.0)
    assert not (tmp_path / "state" / "ledger.json").exists() or inst.ledger().epsilon_spent == 0


def test_bad_table_refuses_to_join(tmp_path, adult_paths, adult_schema):
    bad = tmp_path / "bad.csv"
    bad.write_text("age,workclass\n30,Private\n")
    inst = make(bad, adult_paths, tmp_path / "state")
    reply = inst.check(plan_for(adult_schema), 3)
    assert not reply.can_train and "does not match the schema" in reply.reason


def test_budget_reply_never_carries_a_cell_value(tmp_path, silo, adult_paths, adult_schema, caplog):
    """The coordinator reads budget replies in plaintext: a bad cell's value stays in the local log."""
    import pandas as pd

    df = pd.read_csv(silo)
    df.loc[3, "workclass"] = "Secret-Employer-7731"
    bad = tmp_path / "bad.csv"
    df.to_csv(bad, index=False)
    inst = make(bad, adult_paths, tmp_path / "state")
    with caplog.at_level("ERROR", logger="fedsynth.client"):
        reply = inst.check(plan_for(adult_schema), 3)
    assert not reply.can_train
    assert "Secret-Employer-7731" not in json.dumps(reply.to_record())
    assert "Secret-Employer-7731" in caplog.text  # the institution's own log says what is wrong


def test_wrong_shape_model_from_coordinator_is_rejected(silo, adult_paths, adult_schema, tmp_path):
    inst = make(silo, adult_paths, tmp_path / "state")
    plan = plan_for(adult_schema)
    arrays = initial(adult_schema, plan)
    arrays[0] = np.zeros((3, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="expected shape"):
        inst.train_round(arrays, plan, 1, 3, 8.0)
    arrays = initial(adult_schema, plan)
    arrays[1][:] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        inst.train_round(arrays, plan, 1, 3, 8.0)


def test_small_cap_scales_the_frequency_release_by_the_single_party_rule(silo, adult_paths, adult_schema, tmp_path):
    inst = make(silo, adult_paths, tmp_path / "state", eps=0.3)
    plan = plan_for(adult_schema, rounds=2)
    assert inst.check(plan, 2).can_train
    inst.train_round(initial(adult_schema, plan), plan, 1, 2, 8.0)
    ledger = inst.ledger()
    sigma, q, steps = ledger.history[0]
    same_rule = Synthesizer(adult_schema, epsilon=0.3, delta=1e-5).plan(2000)["frequency_noise"]
    assert (q, steps) == (1.0, 1) and sigma == same_rule > plan.marginal_noise
    assert ledger.epsilon_spent <= 0.3


def test_counts_released_under_another_layout_are_refused_not_released_again(silo, adult_paths, adult_schema,
                                                                             tmp_path):
    """A state folder whose counts release predates the histograms: re-releasing would charge twice,
    reusing it would send blocks the coordinator cannot place."""
    plan = plan_for(adult_schema, rounds=2)
    arrays = initial(adult_schema, plan)
    inst = make(silo, adult_paths, tmp_path / "state")
    inst.train_round(arrays, plan, 1, 2, 8.0)
    saved = json.loads(inst._freqs_path().read_text())
    enc = TableEncoder(adult_schema)
    assert [len(c) for c in saved["noisy_counts"]] == enc.count_sizes  # categories, then histograms
    saved["noisy_counts"] = saved["noisy_counts"][: len(enc.conditionable)]  # what an older version kept
    inst._freqs_path().write_text(json.dumps(saved))
    spent = inst.ledger().epsilon_spent
    with pytest.raises(FedsynthError, match="released for another layout"):
        make(silo, adult_paths, tmp_path / "state").train_round(arrays, plan, 2, 2, 8.0)
    assert inst.ledger().epsilon_spent == spent
