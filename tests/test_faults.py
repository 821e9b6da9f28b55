"""Faults on one machine: wiped state dirs, lost rounds, full disks, crashes mid-swap."""

import errno
import json
import os
import shutil

import numpy as np
import pytest

from fedsynth.client.app import ClientSettings, Institution
from fedsynth.client.ledger import Ledger
from fedsynth.common.digest import arrays_digest
from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.errors import PrivacyError, StorageError
from fedsynth.common.protocol.federation import FederationPlan
from fedsynth.common.protocol.messages import BudgetReply
from fedsynth.common.model.marginal_fit import MarginalFitConfig
from fedsynth.common.model.tabular import ModelConfig, build_model
from fedsynth.common.dp.accounting import epsilon_spent
from fedsynth.common.data.tables import write_table
from fedsynth.server.checkpoint import Checkpoint
from fedsynth.server.ledger_watch import SpendWatch


@pytest.fixture()
def silo(tmp_path, adult, adult_schema):
    path = tmp_path / "silo.csv"
    write_table(adult.sample(600, random_state=5), path, schema=adult_schema)
    return path


def inst(silo, adult_paths, state, init=False):
    return Institution(ClientSettings(data=str(silo), schema=str(adult_paths[1]), state_dir=str(state),
                                      epsilon=1.0, delta=1e-5, init_ledger=init))


@pytest.fixture()
def plan(adult_schema):
    return FederationPlan(rounds=2, local_epochs=0.2, model=ModelConfig(hidden=16), schema_hash=adult_schema.hash())


@pytest.fixture()
def arrays(adult_schema, plan):
    return build_model(TableEncoder(adult_schema), plan.model).get_arrays()


# --------------------------------------------------------------------------- wiped state dir
def test_wiped_state_dir_is_refused_not_turned_into_a_fresh_budget(silo, adult_paths, tmp_path, plan, arrays):
    state = tmp_path / "state"
    inst(silo, adult_paths, state, init=True).train_round(arrays, plan, 1, 3, 8.0)
    shutil.rmtree(state)  # the operator's disk is wiped; the client restarts without --init-ledger
    again = inst(silo, adult_paths, state)
    reply = again.check(plan, 3)
    assert reply.can_train is False and "no privacy ledger" in reply.reason
    assert "restore ledger.json from backup" in reply.reason
    with pytest.raises(PrivacyError, match="no privacy ledger"):
        again.train_round(arrays, plan, 2, 3, 8.0)
    assert not (state / "ledger.json").exists()  # refusing created nothing


def test_ledger_is_only_created_explicitly(tmp_path):
    with pytest.raises(PrivacyError, match="no privacy ledger"):
        Ledger.open(tmp_path, 1.0, 1e-5)
    Ledger.create(tmp_path, 1.0, 1e-5).charge([(3.0, 0.05, 100)])
    with pytest.raises(PrivacyError, match="already exists"):
        Ledger.create(tmp_path, 1.0, 1e-5)  # never replaces a ledger that holds spend
    assert Ledger.open(tmp_path, 1.0, 1e-5, create=True).history == [(3.0, 0.05, 100)]


def test_coordinator_excludes_a_node_whose_reported_spend_fell():
    def yes(eps: float) -> BudgetReply:
        return BudgetReply(can_train=True, epsilon_spent=eps)

    watch = SpendWatch()
    r1 = watch.review({"a": yes(0.4), "b": yes(0.4)})
    assert r1["a"].can_train and r1["b"].can_train
    r2 = watch.review({"a": yes(0.0), "b": yes(0.6)})
    assert not r2["a"].can_train and "fell from 0.4 to 0" in r2["a"].reason
    assert r2["b"].can_train
    # stays excluded even once its (new) ledger climbs back up; survives a coordinator restart
    assert not watch.review({"a": yes(0.5)})["a"].can_train
    history = [{"budget": {"a": {"epsilon_spent": 0.4}}}, {"budget": {"a": {"epsilon_spent": 0.0}}}]
    assert not SpendWatch.from_history(history).review({"a": yes(0.1)})["a"].can_train


# --------------------------------------------------------------------------- lost rounds
def test_a_lost_round_is_resent_identically_and_not_charged_again(silo, adult_paths, tmp_path, plan, arrays):
    state = tmp_path / "state"
    first, m1 = inst(silo, adult_paths, state, init=True).train_round(arrays, plan, 1, 2, 8.0)
    spent = Ledger.open(state, 1.0, 1e-5).epsilon_spent
    events = len(Ledger.open(state, 1.0, 1e-5).events)
    # the coordinator crashed before checkpointing round 1 and asks again: a new client process
    again, m2 = inst(silo, adult_paths, state).train_round(arrays, plan, 1, 2, 8.0)
    assert m1.replayed == 0.0 and m2.replayed == 1.0
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    ledger = Ledger.open(state, 1.0, 1e-5)
    assert ledger.epsilon_spent == pytest.approx(spent) and len(ledger.events) == events
    # a different global model (or round) is a new release: charged
    moved = [a + 0.01 for a in arrays]
    inst(silo, adult_paths, state).train_round(moved, plan, 2, 2, 8.0)
    ledger = Ledger.open(state, 1.0, 1e-5)
    assert ledger.epsilon_spent > spent
    assert ledger.epsilon_spent == pytest.approx(epsilon_spent(ledger.history, 1e-5)) and ledger.epsilon_spent <= 1.0


def test_at_the_cap_a_paid_round_is_still_affordable_as_a_replay(silo, adult_paths, tmp_path, plan, arrays):
    state = tmp_path / "state"
    client = inst(silo, adult_paths, state, init=True)
    client.train_round(arrays, plan, 1, 2, 8.0)
    moved = [a + 0.01 for a in arrays]
    client.train_round(moved, plan, 2, 2, 8.0)  # the plan lands on the cap after 2 rounds
    assert client.check(plan, 2).can_train is False
    assert client.check(plan, 2, 2, arrays_digest(moved)).can_train is True  # re-send of round 2
    assert client.check(plan, 2, 3, arrays_digest(moved)).can_train is False


# --------------------------------------------------------------------------- full disk
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_while_charging_keeps_the_old_ledger_and_sends_nothing(silo, adult_paths, tmp_path, plan, arrays,
                                                                          monkeypatch):
    state = tmp_path / "state"
    client = inst(silo, adult_paths, state, init=True)
    client.train_round(arrays, plan, 1, 2, 8.0)
    before = (state / "ledger.json").read_bytes()
    monkeypatch.setattr("fedsynth.common.atomic.os.replace", _enospc)
    with pytest.raises(StorageError, match="No space left on device") as exc:
        client.train_round([a + 0.01 for a in arrays], plan, 2, 2, 8.0)
    assert "ledger.json" in str(exc.value) and "unchanged" in str(exc.value)
    assert (state / "ledger.json").read_bytes() == before
    assert not [p for p in state.iterdir() if p.name.endswith(".tmp")]


def test_charge_that_cannot_be_saved_is_not_counted_in_memory_either(tmp_path, monkeypatch):
    ledger = Ledger.create(tmp_path, 5.0, 1e-5)
    events, head = list(ledger.events), ledger.head  # the created event only
    monkeypatch.setattr("fedsynth.common.atomic.os.replace", _enospc)
    with pytest.raises(StorageError):
        ledger.charge([(3.0, 0.05, 100)], event="round")
    assert ledger.history == [] and ledger.events == events and ledger.head == head


def test_full_disk_while_checkpointing_keeps_the_last_round(tmp_path, monkeypatch, arrays):
    ck = Checkpoint(round=1, arrays=arrays, freqs=None, history=[{"round": 1}], plan_json="{}", started="t")
    ck.save(tmp_path)
    original_write = type(tmp_path).write_bytes

    def full(self, data):
        if self.name == "weights.pt":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original_write(self, data)

    monkeypatch.setattr(type(tmp_path), "write_bytes", full)
    with pytest.raises(StorageError, match="No space left"):
        Checkpoint(round=2, arrays=arrays, freqs=None, history=[{"round": 1}, {"round": 2}], plan_json="{}",
                   started="t").save(tmp_path)
    monkeypatch.undo()
    assert Checkpoint.load(tmp_path).round == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]


def test_crash_between_the_swap_renames_restores_the_previous_checkpoint(tmp_path, arrays):
    Checkpoint(round=3, arrays=arrays, freqs=None, history=[], plan_json="{}", started="t").save(tmp_path)
    (tmp_path / "checkpoint").rename(tmp_path / ".checkpoint.old-123")  # killed right after the first rename
    loaded = Checkpoint.load(tmp_path)
    assert loaded is not None and loaded.round == 3
    assert all(np.array_equal(a, b) for a, b in zip(loaded.arrays, arrays))


def test_synthesizer_save_on_a_full_disk_keeps_the_old_model(tmp_path, monkeypatch, adult_schema, adult):
    from fedsynth.common.synthesizer import Synthesizer, TrainingConfig

    s = Synthesizer(adult_schema, epsilon=1.0, delta=1e-5, training=TrainingConfig(epochs=0.5),
                    model_config=ModelConfig(hidden=16),
                    marginal_fit=MarginalFitConfig(pairs=0)).fit(adult.sample(400, random_state=1))  # a model to save
    s.save(tmp_path / "model")
    before = json.loads((tmp_path / "model" / "synthesizer.json").read_text())
    monkeypatch.setattr(type(tmp_path), "rename", lambda self, target: _enospc())
    with pytest.raises(StorageError, match="No space left"):
        s.save(tmp_path / "model", overwrite=True)
    monkeypatch.undo()
    assert json.loads((tmp_path / "model" / "synthesizer.json").read_text()) == before
