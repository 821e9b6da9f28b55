"""The DP trainer (common/dp/trainer.py) and the sampling plan every trainer shares (common/dp/plan.py)."""

import pytest
import torch
from torch import nn

from fedsynth.common.dp.plan import SamplingPlan, default_batch_size, sampling_plan
from fedsynth.common.dp.trainer import DPOptimizerConfig, DPSchedule, train_dp_steps


def test_sampling_plan_covers_the_epochs_with_the_default_batch():
    plan = sampling_plan(1200, epochs=2.0)
    assert plan == SamplingPlan(expected_batch=100, sample_rate=100 / 1200, steps=24)
    batch, q, steps = sampling_plan(100, epochs=1.0, batch_size=400)  # a batch above n: every row, one step
    assert (batch, q, steps) == (400, 1.0, 1)
    assert default_batch_size(10) == 64 and default_batch_size(10**7) == 2048


def _regression_step(trainer, batch, rng):
    return trainer.step(lambda m: m(batch[:, :3]), batch[:, 3:])


@pytest.mark.parametrize("mode", ["bookkeeping", "ghost", "hooks"])
def test_runs_exactly_the_scheduled_steps_and_carries_the_optimiser(mode):
    torch.manual_seed(0)
    net, x = nn.Linear(3, 1), torch.randn(200, 4)
    ticks: list[int] = []
    opt = DPOptimizerConfig(max_grad_norm=1.0, lr=0.05, grad_sample_mode=mode)
    first = train_dp_steps(net, nn.MSELoss(), x, DPSchedule(7, 0.5, 1.0), opt, _regression_step,
                           on_step=ticks.append)
    assert len(first.losses) == 7 and ticks == [1] * 7  # P(empty sample) = 0.5**200
    assert first.module is net and not hasattr(net, "_module")  # Opacus' wrapper is gone
    assert all(not hasattr(p, "grad_sample") or p.grad_sample is None for p in net.parameters())
    assert {int(s["step"]) for s in first.optimizer_state["state"].values()} == {7}
    second = train_dp_steps(net, nn.MSELoss(), x, DPSchedule(3, 0.5, 1.0), opt, _regression_step,
                            optimizer_state=first.optimizer_state)
    assert {int(s["step"]) for s in second.optimizer_state["state"].values()} == {10}  # Adam continued


def test_the_step_sees_only_the_poisson_sample():
    seen: list[int] = []

    def step(trainer, batch, rng):
        seen.append(len(batch))
        return _regression_step(trainer, batch, rng)

    train_dp_steps(nn.Linear(3, 1), nn.MSELoss(), torch.randn(2000, 4), DPSchedule(40, 0.05, 1.0),
                   DPOptimizerConfig(1.0, 0.05), step)
    mean = sum(seen) / len(seen)
    assert len(set(seen)) > 1  # batch sizes vary: Poisson, not fixed-size batches
    assert mean == pytest.approx(100, rel=0.15)  # expected batch q * n
