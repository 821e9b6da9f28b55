"""Whole federated runs (fedsynth's FederatedRun + ClientApps + SecAgg+) under faults and hostile peers.

Transport: tests/_loopback.py (in-process; the coordinator, the clients' ClientApps, their
ledgers on disk and SecAgg+ are the real code). Tiny silos, 2-3 rounds, so each run takes
seconds; tests/test_simulation.py covers the Ray-backed Simulation Engine.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from flwr.app import Context, RecordDict

from _loopback import LoopbackGrid, stage_of
from fedsynth.client.app import ClientSettings, make_client_app
from fedsynth.client.ledger import Ledger
from fedsynth.common.dp.shared_noise import SharedNoise
from fedsynth.common.protocol.federation import FederationPlan, SecAggSettings
from fedsynth.common.model.marginal_fit import MarginalFitConfig
from fedsynth.common.model.tabular import ModelConfig
from fedsynth.common.dp.accounting import epsilon_spent
from fedsynth.common.data.tables import write_table
from fedsynth.server.checkpoint import Checkpoint
from fedsynth.server.workflow import FederatedRun

NODES = (11, 12, 13, 14)


def federation(tmp_path, adult, schema_path, schema, *, nodes=NODES, rounds=2, drop=None, tamper=None,
               shared: SharedNoise | None = None, marginal_fit: MarginalFitConfig | None = None):
    """Silos, explicitly initialised ledgers, one ClientApp per node; returns (run it, state dirs, events).
    No marginal fit after the last round unless ``marginal_fit`` asks for one."""
    states = {}
    for i, nid in enumerate(nodes):
        write_table(adult.sample(250, random_state=i), tmp_path / f"silo-{nid}.csv", schema=schema)
        states[nid] = tmp_path / "clients" / str(nid)
        Ledger.create(states[nid], 1.0, 1e-5)

    def resolve(context) -> ClientSettings:
        nid = int(context.node_id)
        return ClientSettings(data=str(tmp_path / f"silo-{nid}.csv"), schema=str(schema_path),
                              state_dir=str(states[nid]), epsilon=1.0, delta=1e-5)

    app = make_client_app(resolve)
    grid = LoopbackGrid({nid: app for nid in nodes}, drop=drop, tamper=tamper)
    plan = FederationPlan(rounds=rounds, local_epochs=0.3, model=ModelConfig(hidden=16),
                          schema_hash=schema.hash(), server_lr=1.0, shared_noise=shared,
                          min_clients=shared.min_contributors if shared else 2,
                          marginal_fit=marginal_fit or MarginalFitConfig(pairs=0))
    events: list[dict] = []
    run = FederatedRun(plan, schema, tmp_path / "out", SecAggSettings(), len(nodes), events.append, wait_timeout=10)

    def go():
        run(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={}))

    return go, states, events, grid, plan


def rounds_charged(state) -> list[int]:
    return [e["round"] for e in Ledger.open(state, 1.0, 1e-5).events if e["event"] == "round"]


def assert_consistent(state):
    ledger = Ledger.open(state, 1.0, 1e-5)
    assert ledger.epsilon_spent == pytest.approx(epsilon_spent(ledger.history, 1e-5))
    assert ledger.epsilon_spent <= 1.0 + 1e-9
    charged = rounds_charged(state)
    assert len(charged) == len(set(charged))  # no round charged twice


@pytest.fixture()
def fed(tmp_path, adult, adult_paths, adult_schema):
    return lambda **kw: federation(tmp_path, adult, adult_paths[1], adult_schema, **kw)


def kill_once_before_masked_vector(node: int, killed: list[int], skip: int = 0):
    """A tamper rule: ``node``'s first masked vector after ``skip`` delivered ones is lost (it died
    after training or releasing), then it is back."""
    seen = []

    def kill(nid, reply):
        if nid == node and stage_of_reply(reply) == "masked" and not killed:
            seen.append(nid)
            if len(seen) > skip:
                killed.append(nid)
                return None
        return reply

    return kill


def test_client_killed_after_training_is_recovered_by_secagg(fed, tmp_path):
    """Node 12 charges and trains in round 1, then dies before its masked vector arrives; it is back for round 2."""
    go, states, events, grid, _ = fed(tamper=kill_once_before_masked_vector(12, []))
    go()
    done = [e for e in events if e["event"] == "round_done"]
    assert [e["contributors"] for e in done] == [3, 4]  # round 1 completed without it (masks reconstructed)
    assert rounds_charged(states[12]) == [1, 2]  # round 1 stays charged (its update left); no double charge
    for s in states.values():
        assert_consistent(s)
    assert Checkpoint.load(tmp_path / "out").round == 2


def test_a_shared_noise_round_below_k_min_is_never_unmasked(fed, tmp_path):
    """The same loss as above under shared noise with K_min = 4 of 4: SecAgg+'s threshold (raised to
    K_min) refuses to unmask three contributions, so no round ever carries fewer than K_min noise
    shares; the retry re-sends every paid contribution free and completes with all four."""
    killed: list[int] = []
    shared = SharedNoise(sample_rate=0.2, noise_multiplier=8.0, collusion_tolerance=1, min_contributors=4)
    # skip=1: node 12's pooled counts share (round 0) arrives; its round-1 vector is lost
    go, states, events, grid, _ = fed(tamper=kill_once_before_masked_vector(12, killed, skip=1), shared=shared)
    go()
    assert killed
    assert [e["round"] for e in events if e["event"] == "round_failed"] == [1]
    assert [e["contributors"] for e in events if e["event"] == "pooled_counts"] == [4]
    assert [e["contributors"] for e in events if e["event"] == "round_done"] == [4, 4]
    for s in states.values():
        assert rounds_charged(s) == [1, 2]
        assert_consistent(s)


def test_a_pooled_counts_round_below_k_min_is_never_unmasked_and_each_retry_is_charged(fed, tmp_path):
    """Node 12 dies after releasing its pooled counts share: three shares (K_min = 4) are never
    unmasked. Every institution paid for its share, and the retry sends fresh shares, charged again
    (the same vector into a second sum could be differenced); training then runs as planned."""
    killed: list[int] = []
    shared = SharedNoise(sample_rate=0.2, noise_multiplier=8.0, collusion_tolerance=1, min_contributors=4)
    go, states, events, grid, _ = fed(tamper=kill_once_before_masked_vector(12, killed), shared=shared)
    go()
    assert killed
    assert [e["round"] for e in events if e["event"] == "round_failed"] == [0]
    assert [e["contributors"] for e in events if e["event"] == "pooled_counts"] == [4]
    assert [e["contributors"] for e in events if e["event"] == "round_done"] == [4, 4]
    assert Checkpoint.load(tmp_path / "out").pooled_rows == pytest.approx(1000, abs=150)
    for s in states.values():
        shares = [e for e in Ledger.open(s, 1.0, 1e-5).events if e["event"] == "pooled_counts"]
        assert len(shares) == 2
        assert rounds_charged(s) == [1, 2]
        assert_consistent(s)


def test_a_threshold_below_k_min_is_refused_before_any_charge(fed, monkeypatch):
    """A coordinator that sets SecAgg+ up with a reconstruction threshold of 2 under a plan whose
    K_min is 4 (its fit instruction still states that plan): every institution refuses inside the
    SecAgg+ round, before it trains, so nothing is charged and no round completes."""
    import fedsynth.server.workflow as wf
    monkeypatch.setattr(wf, "shared_threshold", lambda *args: 2)
    shared = SharedNoise(sample_rate=0.2, noise_multiplier=8.0, collusion_tolerance=1, min_contributors=4)
    go, states, events, grid, _ = fed(shared=shared, rounds=1)
    with pytest.raises(RuntimeError, match="failed 3 times"):
        go()
    thresholds = {int(m.content.config_records["secaggplus_configs"]["threshold"]) for m in grid.sent
                  if stage_of(m) == "setup"}
    assert thresholds == {2}  # the lie was told, and SecAgg+ ran with it
    assert not [e for e in events if e["event"] == "round_done"]
    for s in states.values():
        assert rounds_charged(s) == []
        assert not [e for e in Ledger.open(s, 1.0, 1e-5).events if e.get("releases")]


def test_round_without_enough_survivors_is_retried_and_charged_once(fed):
    """Round 1's masked vectors from 3 of 4 nodes are lost: no aggregate; the retry re-sends, no new charge."""
    lost = {"n": 0}

    def lose(nid, reply):
        if stage_of_reply(reply) == "masked" and nid != 11 and lost["n"] < 3:
            lost["n"] += 1
            return None
        return reply

    go, states, events, grid, _ = fed(tamper=lose)
    go()
    failed = [e for e in events if e["event"] == "round_failed"]
    assert [e["round"] for e in failed] == [1]
    assert [e["contributors"] for e in events if e["event"] == "round_done"] == [4, 4]
    replayed = [r.get("replayed") for e in events if e["event"] == "round_done" and e["round"] == 1
                for r in e["reports"].values()]
    assert sorted(replayed) == [1.0, 1.0, 1.0, 1.0]  # every node had trained in the failed attempt
    for s in states.values():
        assert rounds_charged(s) == [1, 2]
        assert_consistent(s)


def test_coordinator_restart_resumes_and_does_not_recharge(fed, tmp_path):
    """Round 2 is lost with the coordinator (killed before checkpointing): the restart re-asks round 2."""
    go, states, events, grid, plan = fed(rounds=2)

    import fedsynth.server.workflow as wf

    original = wf.Checkpoint.save
    calls = {"n": 0}

    def crash_on_second(self, out_dir):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("coordinator killed")
        return original(self, out_dir)

    wf.Checkpoint.save = crash_on_second
    try:
        with pytest.raises(KeyboardInterrupt):
            go()
    finally:
        wf.Checkpoint.save = original
    assert Checkpoint.load(tmp_path / "out").round == 1
    spent = {nid: Ledger.open(s, 1.0, 1e-5).epsilon_spent for nid, s in states.items()}
    go()  # restarted coordinator, same clients (their SecAgg+ state starts over at setup)
    assert any(e["event"] == "resumed" and e["round"] == 1 for e in events)
    assert Checkpoint.load(tmp_path / "out").round == 2
    for nid, s in states.items():
        assert rounds_charged(s) == [1, 2]
        assert Ledger.open(s, 1.0, 1e-5).epsilon_spent == pytest.approx(spent[nid])  # round 2 re-sent free
        assert_consistent(s)


def test_a_coordinator_killed_during_the_marginal_fit_asks_again_and_nobody_pays_twice(fed, tmp_path):
    """The marginal fit's two releases are made after the last round; the coordinator dies before
    its fine-tune. Restarted, it asks for both again: the same releases come back free."""
    import fedsynth.server.workflow as wf

    go, states, events, grid, plan = fed(rounds=2, marginal_fit=MarginalFitConfig(pairs=3, steps=20))
    chosen = []
    original_choose, original_fit = wf.choose_pairs, wf.fit_global_model

    def choose(schema, plan, errors):  # tiny silos: the noisy errors may pick no pair; pick two
        chosen.append(errors)
        return [(0, 1), (3, 4)]

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("coordinator killed")

    wf.choose_pairs, wf.fit_global_model = choose, killed
    try:
        with pytest.raises(KeyboardInterrupt):
            go()
        assert Checkpoint.load(tmp_path / "out").marginal_fit is None
        spent = {nid: Ledger.open(s, 1.0, 1e-5).epsilon_spent for nid, s in states.items()}
        wf.fit_global_model = original_fit
        go()
    finally:
        wf.choose_pairs, wf.fit_global_model = original_choose, original_fit
    np.testing.assert_array_equal(chosen[0].values, chosen[1].values)  # the same releases, re-sent
    assert chosen[0].contributors == len(states)
    fit = Checkpoint.load(tmp_path / "out").marginal_fit
    assert fit["pairs"] == [["age", "workclass"], ["education", "education-num"]] and fit["contributors"] == len(states)
    assert [e for e in events if e["event"] == "marginal_fit"][-1]["pairs"] == fit["pairs"]
    for nid, s in states.items():
        ledger = Ledger.open(s, 1.0, 1e-5)
        made = [e["event"] for e in ledger.events if e["event"] in ("pair_errors", "pair_counts")]
        assert made == ["pair_errors", "pair_counts"]  # each charged once, before the kill
        assert ledger.epsilon_spent == pytest.approx(spent[nid])
        assert 0.99 < ledger.epsilon_spent <= 1.0  # the plan kept exactly this much for the fit
        assert_consistent(s)


def test_hostile_masked_vector_is_rejected_without_crashing_the_coordinator(fed, tmp_path):
    """Node 13 replaces its masked vector: once with random integers, once with a wrong shape."""
    from flwr.common import bytes_to_ndarray, ndarray_to_bytes

    attacks = ["garbage", "shape"]

    def hostile(nid, reply):
        if nid == 13 and stage_of_reply(reply) == "masked" and attacks:
            rec = reply.content.config_records["secaggplus_configs"]
            arrays = [bytes_to_ndarray(b) for b in rec["masked_params"]]
            kind = attacks.pop(0)
            rng = np.random.default_rng(0)
            if kind == "garbage":
                arrays = [rng.integers(0, 2**32, a.shape, dtype=np.int64) for a in arrays]
            else:
                arrays = [a[:1] for a in arrays]
            rec["masked_params"] = [ndarray_to_bytes(a) for a in arrays]
        return reply

    go, states, events, grid, plan = fed(rounds=1, tamper=hostile)
    go()
    failed = [e for e in events if e["event"] == "round_failed"]
    assert len(failed) == 2
    assert "aggregate rejected" in failed[0]["reason"]
    assert "ValueError" in failed[1]["reason"] or "shape" in failed[1]["reason"] or "broadcast" in failed[1]["reason"]
    ckpt = Checkpoint.load(tmp_path / "out")
    assert ckpt.round == 1 and all(np.all(np.isfinite(a)) for a in ckpt.arrays)
    for s in states.values():
        assert rounds_charged(s) == [1]  # the retries re-sent the cached update
        assert_consistent(s)


def test_soak_many_small_rounds_with_random_dropouts(fed, tmp_path):
    """8 rounds; each masked vector is lost with probability 0.15. Ends with a sound model and ledgers."""
    rng = random.Random(7)

    def flaky(nid, reply):
        return None if stage_of_reply(reply) == "masked" and rng.random() < 0.15 else reply

    go, states, events, grid, plan = fed(rounds=8, tamper=flaky)
    go()
    done = [e for e in events if e["event"] == "round_done"]
    assert [e["round"] for e in done] == list(range(1, 9))
    assert all(2 <= e["contributors"] <= 4 for e in done)
    ckpt = Checkpoint.load(tmp_path / "out")
    assert ckpt.round == 8 and all(np.all(np.isfinite(a)) for a in ckpt.arrays)
    from fedsynth.common.synthesizer import Synthesizer

    synth = Synthesizer.load(tmp_path / "out" / "synthesizer")
    assert len(synth.sample(50, seed=0)) == 50
    # the global model moved by at most server_lr * update_clip_norm per round (a weighted mean
    # of norm-clipped deltas is norm-bounded too), from the public initial weights
    import torch

    from fedsynth.common.data.encoding import TableEncoder
    from fedsynth.common.model.tabular import build_model

    torch.manual_seed(plan.seed)
    start = build_model(TableEncoder(synth.schema), plan.model).get_arrays()
    moved = float(np.sqrt(sum(float(np.sum((a.astype(np.float64) - b) ** 2)) for a, b in zip(ckpt.arrays, start))))
    assert 0 < moved <= len(done) * plan.server_lr * plan.update_clip_norm * (1 + 1e-3)
    for s in states.values():
        assert_consistent(s)
        assert 1 <= len(rounds_charged(s)) <= 8


def stage_of_reply(reply) -> str:
    """'masked' for a client's stage-2 reply (its masked vector), else ''."""
    if reply is None or reply.has_error() or reply.content is None:
        return ""
    rec = reply.content.config_records.get("secaggplus_configs")
    return "masked" if rec is not None and "masked_params" in rec else ""
