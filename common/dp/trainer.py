"""The DP trainer: exactly ``steps`` Poisson-sampled DP-SGD steps on one module.

Every model trains through :func:`train_dp_steps` (``fedsynth.common.model.tabular`` supplies
what one step computes), so a single-party fit, an institution's federated round and the
benchmarks share the sampling, clipping and noise. The randomness the privacy proof relies
on, each step's Poisson sample and the Gaussian noise, comes from ChaCha20 streams keyed by
the OS (:class:`~fedsynth.common.dp.rng.ChaChaStream`); the model's own randomness (a
VAE's reparameterisation, a GAN's noise and conditions) from a torch RNG seeded by the OS
CSPRNG (:func:`~fedsynth.common.dp.dp_sgd.csprng_torch_rng`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from fedsynth.common.dp.dp_sgd import DPSGD, DPStepConfig, csprng_torch_rng, poisson_indices
from fedsynth.common.dp.rng import ChaChaStream

# One step on the sampled rows: (trainer, batch, the model's torch RNG) -> the step's loss.
StepFn = Callable[[DPSGD, torch.Tensor, torch.Generator], float]
# Called with 1 after every DP step taken (progress bars, step tallies).
StepHook = Callable[[int], None]


@dataclass(frozen=True)
class DPSchedule:
    """What the accountant charged for: ``steps`` steps at ``sample_rate`` with ``noise_multiplier``."""

    steps: int
    sample_rate: float
    noise_multiplier: float


@dataclass(frozen=True)
class DPOptimizerConfig:
    """Per-sample clipping bound and the Adam settings of the private module."""

    max_grad_norm: float
    lr: float
    grad_sample_mode: str = "bookkeeping"
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class DPTrainResult:
    losses: list[float]  # one per step that sampled at least one row
    module: nn.Module  # the plain module, Opacus' hooks detached
    # Adam's moments: post-processing of the noisy gradients, so a federated client carries
    # them into its next round for free.
    optimizer_state: dict


def train_dp_steps(module: nn.Module, loss: nn.Module, x: torch.Tensor, schedule: DPSchedule,
                   optimizer: DPOptimizerConfig, one_step: StepFn, *, optimizer_state: dict | None = None,
                   on_step: StepHook | None = None) -> DPTrainResult:
    """Run ``schedule.steps`` DP steps on ``module`` over the rows of ``x``.

    ``loss`` must return per-unit losses when its ``reduction`` is ``"none"`` (see
    :class:`~fedsynth.common.dp.dp_sgd.DPSGD`). A step whose Poisson sample is empty (probability
    below 1e-20 at the batch sizes allowed) is taken by the accountant but skipped here.
    """
    expected = max(1, round(schedule.sample_rate * len(x)))
    step_cfg = DPStepConfig(schedule.noise_multiplier, optimizer.max_grad_norm, expected, optimizer.lr,
                            optimizer.grad_sample_mode, betas=optimizer.betas)
    trainer = DPSGD(module, loss, step_cfg, optimizer_state=optimizer_state)
    sampler, rng = ChaChaStream.from_os(), csprng_torch_rng()  # sampler: CSPRNG (DP relies on it)
    losses: list[float] = []
    try:
        for _ in range(schedule.steps):
            idx = poisson_indices(len(x), schedule.sample_rate, sampler)
            if len(idx) == 0:
                continue
            losses.append(one_step(trainer, x[idx], rng))
            if on_step:
                on_step(1)
    finally:
        state = trainer.base_optimizer.state_dict()
        plain = trainer.close()
    return DPTrainResult(losses, plain, state)
