"""DP-SGD with Opacus: Poisson sampling, per-sample clipping, Gaussian noise.

fedsynth drives Opacus' building blocks (grad-sample module, DP optimizer, DP loss) with its
own step loop instead of ``PrivacyEngine.make_private`` because federated clients must run
an exact number of steps per round and keep the accountant's history on their own disk.
The privacy analysis is unchanged: each step draws a Poisson sample at rate ``q`` (every row
independently), clips each unit's gradient to ``max_grad_norm`` and adds N(0, (sigma*C)^2).

``grad_sample_mode="ghost"`` (default) uses Opacus' ghost clipping: per-sample gradient
*norms* from activations and output gradients, no per-sample gradient tensors, which is
what makes DP-SGD affordable on CPU. ``"hooks"`` materialises per-sample gradients (the
classic Opacus path), kept for comparison and for layers ghost clipping lacks.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

GRAD_SAMPLE_MODES = ("ghost", "hooks")
# Opacus' ghost clipping triggers this harmless PyTorch warning on every step.
warnings.filterwarnings("ignore", message="Full backward hook is firing")


def secure_generator() -> torch.Generator:
    """A torch generator seeded from the OS CSPRNG (fresh, unpredictable seed)."""
    g = torch.Generator()
    g.manual_seed(secrets.randbits(63))
    return g


def poisson_indices(n: int, sample_rate: float, generator: torch.Generator) -> torch.Tensor:
    """Indices of a Poisson sample: each of the ``n`` rows is kept independently."""
    return torch.nonzero(torch.rand(n, generator=generator) < sample_rate, as_tuple=False).squeeze(1)


@dataclass
class DPStepConfig:
    noise_multiplier: float
    max_grad_norm: float
    expected_batch_size: int
    lr: float
    grad_sample_mode: str = "ghost"
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)


class DPSGD:
    """Wraps ``module`` for private training; ``step(inputs, target)`` does one DP step.

    ``loss`` must return per-unit losses when its ``reduction`` is ``"none"``.
    Call :meth:`close` to detach Opacus' hooks and get the plain module back.
    """

    def __init__(self, module: nn.Module, loss: nn.Module, cfg: DPStepConfig,
                 noise_generator: torch.Generator | None = None, optimizer_state: dict | None = None) -> None:
        if cfg.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise ValueError(f"grad_sample_mode must be one of {GRAD_SAMPLE_MODES}")
        self.cfg = cfg
        self.loss = loss
        base_opt = torch.optim.Adam(module.parameters(), lr=cfg.lr, betas=cfg.betas,
                                    weight_decay=cfg.weight_decay)
        if optimizer_state:
            # Adam moments are post-processing of earlier noisy gradients: keeping them is free.
            base_opt.load_state_dict(optimizer_state)
        self.base_optimizer = base_opt
        gen = noise_generator or secure_generator()
        if cfg.grad_sample_mode == "ghost":
            from opacus.grad_sample import GradSampleModuleFastGradientClipping
            from opacus.optimizers import DPOptimizerFastGradientClipping
            from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

            self.module = GradSampleModuleFastGradientClipping(
                module, batch_first=True, loss_reduction="mean",
                max_grad_norm=cfg.max_grad_norm, use_ghost_clipping=True)
            self.optimizer = DPOptimizerFastGradientClipping(
                base_opt, noise_multiplier=cfg.noise_multiplier, max_grad_norm=cfg.max_grad_norm,
                expected_batch_size=cfg.expected_batch_size, loss_reduction="mean", generator=gen)
            self._dp_loss = DPLossFastGradientClipping(self.module, self.optimizer, loss, "mean")
        else:
            from opacus import GradSampleModule
            from opacus.optimizers import DPOptimizer

            self.module = GradSampleModule(module, batch_first=True, loss_reduction="mean")
            self.optimizer = DPOptimizer(
                base_opt, noise_multiplier=cfg.noise_multiplier, max_grad_norm=cfg.max_grad_norm,
                expected_batch_size=cfg.expected_batch_size, loss_reduction="mean", generator=gen)
            self._dp_loss = None

    def step(self, forward: Callable[[nn.Module], torch.Tensor], target: torch.Tensor | None) -> float:
        """One DP step. ``forward(module)`` returns the module output for the sampled units."""
        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        output = forward(self.module)
        # ghost clipping: Opacus' DP loss runs both backward passes inside backward()
        loss = (self._dp_loss or self.loss)(output, target)
        loss.backward()
        self.optimizer.step()
        return float(loss.item())

    def set_hooks(self, enabled: bool) -> None:
        """Switch Opacus' capture hooks (off while a non-private loss flows through)."""
        if enabled:
            self.module.enable_hooks()
        else:
            self.module.disable_hooks()

    def close(self) -> nn.Module:
        self.optimizer.zero_grad(set_to_none=True)
        inner = self.module._module
        self.module._close()
        for p in inner.parameters():
            if hasattr(p, "grad_sample"):
                p.grad_sample = None
            if hasattr(p, "_norm_sample"):
                del p._norm_sample
        return inner
