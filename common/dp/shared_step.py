"""One institution's part of a shared-noise DP-SGD step (see :mod:`fedsynth.common.dp.shared_noise`).

The step: a Poisson sample of the institution's rows at the plan's rate, each example's
gradient clipped to C and summed (the single-pass engine of :mod:`fedsynth.common.dp.bookkeeping`,
or Opacus' ghost clipping for a network it does not cover), rounded once onto the public
integer grid (one example moves the rounded sum by at most ``Delta2``, see
:mod:`fedsynth.common.dp.integer_noise`), each coordinate clipped to the field's signal bound,
plus the institution's Skellam noise share. The result is an integer vector; SecAgg+ adds the
contributions up and the coordinator turns the sum into the pooled step
(``fedsynth.server.shared_round``). All randomness the guarantee relies on (the sample, the
rounding, the noise) comes from one ChaCha20 stream keyed by the OS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedsynth.common.dp.bookkeeping import single_pass_clipper
from fedsynth.common.dp.dp_sgd import poisson_indices
from fedsynth.common.dp.integer_noise import IntegerGrid, signal_bound, skellam_noise, stochastic_round
from fedsynth.common.dp.rng import ChaChaStream

# (module, rows of the sample) -> one loss per row
PerRowLoss = Callable[[nn.Module, torch.Tensor], torch.Tensor]
# Rows per forward/backward pass (bounds the activations held at once).
CHUNK = 1024


@dataclass(frozen=True)
class Contribution:
    """What one institution adds to a shared-noise step's secure sum."""

    gradient: list[np.ndarray]  # int64, shaped like the module's parameters
    sampled: int  # rows in the Poisson sample (never leaves the institution)


def parameter_dim(module: nn.Module) -> int:
    """d: the number of trainable values, the dimension of the integer grid."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


def clipped_gradient_sum(gsm: nn.Module, per_row_loss: PerRowLoss, rows: torch.Tensor) -> np.ndarray:
    """(d,) float64: the sum over ``rows`` of each row's gradient clipped to the Opacus wrapper's
    ``max_grad_norm``, by Opacus' ghost clipping: the first backward pass gives each row's
    gradient norm without materialising per-row gradients, the second the clipped sum as the
    gradient of the rows' losses weighted by their clipping factors (as Opacus' DP loss does)."""
    params = [p for p in gsm.parameters() if p.requires_grad]
    gsm.zero_grad(set_to_none=True)
    losses = per_row_loss(gsm, rows)
    losses.sum().backward(retain_graph=True)
    gsm.zero_grad(set_to_none=True)
    coeff = gsm.get_clipping_coef()
    gsm.disable_hooks()
    try:
        (coeff.detach() * losses).sum().backward()
    finally:
        gsm.enable_hooks()
    total = torch.cat([p.grad.reshape(-1) for p in params]).to(torch.float64).numpy().copy()
    gsm.zero_grad(set_to_none=True)
    return total


def clipped_total(module: nn.Module, per_row_loss: PerRowLoss, rows: torch.Tensor, clip_norm: float) -> np.ndarray:
    """(d,) float64: the sum over ``rows`` of each row's gradient clipped to ``clip_norm``, in chunks
    of :data:`CHUNK` rows; one backward pass a chunk where the single-pass engine covers the
    network, Opacus' ghost clipping (two passes) where it does not."""
    total = np.zeros(parameter_dim(module), dtype=np.float64)
    clipper = single_pass_clipper(module, clip_norm)
    if clipper is None:
        # lazy: opacus takes ~2 s to import; only networks the single-pass engine lacks need it
        from opacus.grad_sample import GradSampleModuleFastGradientClipping

        gsm = GradSampleModuleFastGradientClipping(module, batch_first=True, loss_reduction="sum",
                                                   max_grad_norm=clip_norm, use_ghost_clipping=True)
        try:
            for start in range(0, len(rows), CHUNK):
                total += clipped_gradient_sum(gsm, per_row_loss, rows[start : start + CHUNK])
        finally:
            gsm._close()
            for p in module.parameters():
                if hasattr(p, "_norm_sample"):
                    del p._norm_sample
        return total
    try:
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            grads = clipper.clipped_sum(lambda m: per_row_loss(m, chunk)).grads
            total += torch.cat([g.reshape(-1) for g in grads]).to(torch.float64).numpy()
    finally:
        clipper.close()
    return total


def shared_contribution(module: nn.Module, per_row_loss: PerRowLoss, x: torch.Tensor, sample_rate: float,
                        grid: IntegerGrid, mu_share: float, stream: ChaChaStream | None = None) -> Contribution:
    """This institution's integer contribution to one shared-noise step on ``module``'s current weights."""
    stream = stream or ChaChaStream.from_os()
    idx = poisson_indices(len(x), sample_rate, stream)
    module.train()
    total = clipped_total(module, per_row_loss, x[idx], grid.clip_norm)
    bound = signal_bound(mu_share, grid.dim)
    integers = np.clip(stochastic_round(total, grid, stream), -bound, bound) + skellam_noise(mu_share, grid.dim, stream)
    shapes = [p.shape for p in module.parameters() if p.requires_grad]
    ends = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
    return Contribution([integers[a:b].reshape(s) for a, b, s in zip(ends[:-1], ends[1:], shapes)], len(idx))
