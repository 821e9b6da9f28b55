"""Shared-noise mode without Flower: institutions' integer contributions, the ledger's two
figures, restarts, the coordinator's decoding and its refusal of rounds below K_min."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from opacus.grad_sample import GradSampleModuleFastGradientClipping

from fedsynth.client.app import ClientSettings, Institution
from fedsynth.client.ledger import Ledger
from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.data.tables import write_table
from fedsynth.common.dp.accounting import calibrate_shared_noise, epsilon_spent
from fedsynth.common.dp.shared_noise import ALONE, SharedNoise, SharedNoiseRelease
from fedsynth.common.dp.shared_step import clipped_gradient_sum, clipped_total
from fedsynth.common.model.tabular import ModelConfig, build_model
from fedsynth.common.protocol.federation import (FIELD_CLIPPING_RANGE, FederationPlan, model_arrays,
                                                 pack_shared_update, shared_grid, shared_threshold)
from fedsynth.server.round import RoundRejected
from fedsynth.server.shared_round import ServerAdam, finish_shared_round, unpack_shared_sum

SIGMA = 1.2


def shared_plan(schema, rounds=3, k_min=3, t=1, q=0.05, sigma=SIGMA):
    # the schema's bins: these rounds come without the pooled counts that measured ones need (test_pooled_counts)
    return FederationPlan(rounds=rounds, model=ModelConfig(hidden=16, binning="schema"), schema_hash=schema.hash(),
                          min_clients=k_min,
                          shared_noise=SharedNoise(sample_rate=q, noise_multiplier=sigma, collusion_tolerance=t,
                                                   min_contributors=k_min))


@pytest.fixture()
def institutions(tmp_path, adult, adult_paths, adult_schema):
    out = []
    for i in range(3):
        path = tmp_path / f"silo-{i}.csv"
        write_table(adult.sample(600, random_state=i), path, schema=adult_schema)
        out.append(Institution(ClientSettings(data=str(path), schema=str(adult_paths[1]),
                                              state_dir=str(tmp_path / f"state-{i}"), epsilon=3.0, delta=1e-5,
                                              init_ledger=True)))
    return out


def secure_mean(updates):
    """What SecAgg+ hands the coordinator: the mean of the residues (Flower divides the sum by K)."""
    return [np.mean(np.stack(parts), axis=0) for parts in zip(*updates)]


def test_a_round_is_one_pooled_step_charged_before_it_leaves(institutions, adult_schema):
    plan = shared_plan(adult_schema)
    arrays = model_arrays(adult_schema, plan)
    updates = []
    for inst in institutions:
        assert inst.check(plan, 3, 1).can_train
        packed, metrics = inst.train_round(arrays, plan, 1, 3, FIELD_CLIPPING_RANGE)
        ledger = inst.ledger()
        shared = [h for h in ledger.history if isinstance(h, SharedNoiseRelease)]
        assert len(shared) == 1 and shared[0].honest_shares == 2
        assert metrics.epsilon_spent == round(ledger.epsilon_spent, 2)
        assert metrics.epsilon_alone == round(ledger.epsilon_alone, 2)
        assert ledger.epsilon_alone > ledger.epsilon_spent  # its own share alone is half the noise
        updates.append(packed)
    grid = shared_grid(plan, arrays)
    opt = ServerAdam(arrays, plan.model.lr)
    outcome = finish_shared_round(secure_mean(updates), plan, grid, 1800.0, 3, opt)
    assert [a.shape for a in outcome.arrays] == [a.shape for a in arrays]
    assert any(not np.allclose(a, b) for a, b in zip(outcome.arrays, arrays))
    assert unpack_shared_sum(secure_mean(updates), 3).contributors == 3
    assert opt.steps == 1 and len(opt.moments()) == 2 * len(arrays)
    # the step released no counts: no institution charged a counts release of its own
    assert not any(e["event"] == "category_frequencies" for inst in institutions for e in inst.ledger().events)


def test_a_restarted_client_resends_a_paid_round_without_a_second_charge(institutions, adult_schema):
    plan = shared_plan(adult_schema)
    arrays = model_arrays(adult_schema, plan)
    inst = institutions[0]
    first, _ = inst.train_round(arrays, plan, 1, 3, FIELD_CLIPPING_RANGE)
    spent = inst.ledger().epsilon_spent
    again = Institution(inst.settings)  # a new process over the same state folder
    second, metrics = again.train_round(arrays, plan, 1, 3, FIELD_CLIPPING_RANGE)
    assert metrics.replayed == 1.0
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert again.ledger().epsilon_spent == spent
    assert len([e for e in again.ledger().events if e["event"] == "round"]) == 1


def test_a_clipping_range_that_would_clip_shares_is_refused_before_any_charge(institutions, adult_schema):
    plan = shared_plan(adult_schema)
    inst = institutions[0]
    with pytest.raises(Exception, match="clipping range"):
        inst.train_round(model_arrays(adult_schema, plan), plan, 1, 3, 8.0)
    assert not any(isinstance(h, SharedNoiseRelease) for h in inst.ledger().history)


def _noise_only_sum(schema, plan, honest):
    """The sum of ``honest`` institutions' contributions when no row is sampled: noise shares only."""
    torch.manual_seed(0)
    model = build_model(TableEncoder(schema), plan.model)
    grid = shared_grid(plan, model.get_arrays())
    mu = plan.shared_noise.share_mu(grid)
    x = torch.zeros((0, TableEncoder(schema).dim), dtype=torch.float32)  # no rows: nothing but the share
    total = sum(np.concatenate([g.ravel() for g in model.shared_contribution(x, 0.5, grid, mu).gradient])
                for _ in range(honest))
    return total.astype(np.float64), grid


def test_the_shares_of_k_min_minus_t_institutions_carry_the_pooled_noise(adult_schema):
    plan = shared_plan(adult_schema, k_min=4, t=1)
    total, grid = _noise_only_sum(adult_schema, plan, plan.shared_noise.honest_shares)
    target = (SIGMA * grid.l2_sensitivity) ** 2
    se = target * np.sqrt(2.0 / total.size)  # standard error of a sample variance
    assert abs(total.var() - target) < 5 * se
    # a share 10% too small in scale would be caught by the same test
    assert abs(0.81 * target - target) > 5 * se


def test_rounds_below_k_min_are_never_unmasked_and_never_stepped_on(adult_schema):
    assert shared_threshold(1.0, 0.67, 5, 5) == 5  # Flower's threshold (3 of 5) raised to K_min
    assert shared_threshold(1.0, 0.67, 10, 4) == 7  # already above K_min: kept
    with pytest.raises(ValueError, match="share holders"):
        shared_threshold(5, 2, 10, 5)  # each key has only 5 holders: K_min 5 can never be met
    plan = shared_plan(adult_schema, k_min=3)
    arrays = model_arrays(adult_schema, plan)
    fake = [np.zeros_like(a, dtype=np.float64) for a in arrays] + [np.ones(1)]
    with pytest.raises(RoundRejected, match="min_contributors"):
        finish_shared_round(fake, plan, shared_grid(plan, arrays), 1000.0, 2, ServerAdam(arrays, 1e-2))


def test_a_sum_that_miscounts_its_contributors_is_rejected(adult_schema):
    """An update with no contributor mark (a refusal's zeros) or a doubled one breaks the count."""
    plan = shared_plan(adult_schema)
    arrays = model_arrays(adult_schema, plan)
    one = pack_shared_update([np.zeros(a.shape, dtype=np.int64) for a in arrays])
    assert unpack_shared_sum(secure_mean([one, one, one]), 3).contributors == 3
    zeros = [np.zeros_like(a) for a in one]  # no noise share, no mark
    with pytest.raises(RoundRejected, match="counts 2 contributors"):
        unpack_shared_sum(secure_mean([one, one, zeros]), 3)


def test_ledger_keeps_both_figures_across_reopen(tmp_path):
    ledger = Ledger.create(tmp_path, 2.0, 1e-5)
    release = SharedNoiseRelease(0.05, 1, 2.0e6, 2000.0, 2000.0 * 100, 3)
    for r in range(5):
        ledger.charge([release], event="round", round=r + 1)
    again = Ledger.open(tmp_path, 2.0, 1e-5)
    assert again.history == ledger.history
    assert again.epsilon_spent == pytest.approx(epsilon_spent(ledger.history, 1e-5))
    assert again.epsilon_alone == pytest.approx(epsilon_spent(ledger.history, 1e-5, view=ALONE))
    assert again.epsilon_alone > again.epsilon_spent > 0


def test_local_noise_ledgers_show_one_figure(tmp_path):
    ledger = Ledger.create(tmp_path, 2.0, 1e-5)
    ledger.charge([(2.0, 0.05, 10)], event="round")
    assert ledger.epsilon_alone == ledger.epsilon_spent


def test_calibration_lands_on_the_budget_from_below(adult_schema):
    plan = shared_plan(adult_schema)
    dim = sum(a.size for a in model_arrays(adult_schema, plan))
    shared = calibrate_shared_noise(1.0, 1e-5, 0.05, 50, dim, 1.0, collusion_tolerance=1, min_contributors=3)
    grid = shared.grid(dim, 1.0)
    spent = epsilon_spent([shared.release(grid, 50)], 1e-5)
    assert 0.99 <= spent <= 1.0
    weaker = replace(shared, noise_multiplier=shared.noise_multiplier * 0.95)
    assert epsilon_spent([weaker.release(grid, 50)], 1e-5) > 1.0


def test_t_must_leave_a_secret_share():
    with pytest.raises(ValueError, match="collusion_tolerance"):
        SharedNoise(sample_rate=0.1, noise_multiplier=1.0, collusion_tolerance=3, min_contributors=3)


@pytest.mark.parametrize("engine", ["bookkeeping", "ghost"])
def test_the_clipped_gradient_sum_is_the_sum_of_each_rows_clipped_gradient(engine):
    """Both engines against the definition: one backward pass per row, clip, add."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    rows = torch.randn(40, 6) * 3

    def per_row(module, batch):
        return ((module(batch) - 1.0) ** 2).sum(dim=1)

    grads = []
    for r in rows:
        net.zero_grad()
        per_row(net, r[None]).sum().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in net.parameters()]).double())
    clip = float(np.median([float(g.norm()) for g in grads]))  # rows on both sides of the bound
    expected = sum((g * min(1.0, clip / float(g.norm()))).numpy() for g in grads)
    if engine == "bookkeeping":
        got = clipped_total(net, per_row, rows, clip)
    else:
        gsm = GradSampleModuleFastGradientClipping(net, batch_first=True, loss_reduction="sum", max_grad_norm=clip,
                                                   use_ghost_clipping=True)
        got = clipped_gradient_sum(gsm, per_row, rows)
        gsm._close()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
