"""DP-SGD: Poisson sampling, per-sample clipping, Gaussian noise; Opacus for what it does best.

fedsynth runs its own step loop (:mod:`fedsynth.common.dp.trainer`) instead of
``PrivacyEngine.make_private`` because federated clients must run an exact number of steps per
round and keep the accountant's history on their own disk. The privacy analysis is unchanged:
each step draws a Poisson sample at rate ``q`` (every row independently), clips each unit's
gradient to ``max_grad_norm`` and adds N(0, (sigma*C)^2) to the sum.

Three engines compute the clipped sum (``grad_sample_mode``):

* ``"bookkeeping"`` (default): :mod:`fedsynth.common.dp.bookkeeping`, the per-row norms and
  the clipped sum from one backward pass, for networks of Linear layers (all of fedsynth's).
  A network it cannot clip exactly is detected when the trainer is built, and the trainer then
  uses ``"ghost"``.
* ``"ghost"``: Opacus' ghost clipping (norms from activations and output gradients, then a
  second backward pass with the clipping factors folded into the loss).
* ``"hooks"``: Opacus' per-sample gradients, kept for comparison and for any layer type.

Randomness that the privacy proof relies on (which rows a step samples, the Gaussian noise)
comes from :class:`~fedsynth.common.dp.rng.ChaChaStream`, ChaCha20 keyed with 256
bits from ``os.urandom`` for each trainer, not from torch's Mersenne Twister. Why not the
simpler "reseed torch from ``secrets`` every step": MT19937 is not a CSPRNG (its state
follows from its outputs), and a per-step 64-bit seed caps the entropy of a whole step's
noise at 64 bits, so the noise is a deterministic function of a guessable value instead of
fresh Gaussian draws; DP's proof assumes the latter. Opacus' own ``secure_mode`` needs
torchcsprng, which is not installable here. The noise is drawn as float64 (Box-Muller on
53-bit uniforms) and rounded once to the gradient's dtype, which also blunts the
floating-point attacks on textbook samplers (Mironov 2012; Jin et al. 2021): the released
value is further post-processed by Adam, many steps, clipping and stochastic quantisation.
Every engine draws the same noise from the same stream, in ``module.parameters()`` order.
Its cost is part of the timings in docs/benchmarks.md (bench/dp_cost.py).
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedsynth.common.dp.bookkeeping import BookkeepingClipper, single_pass_clipper
from fedsynth.common.dp.rng import ChaChaStream

GRAD_SAMPLE_MODES = ("bookkeeping", "ghost", "hooks")
# Opacus' ghost clipping triggers this harmless PyTorch warning on every step.
warnings.filterwarnings("ignore", message="Full backward hook is firing")


def csprng_torch_rng() -> torch.Generator:
    """A torch RNG (``torch.Generator``) seeded from the OS CSPRNG, for randomness the DP proof
    does not rely on (a VAE's reparameterisation, sampling synthetic rows). DP noise and batch
    sampling use :class:`ChaChaStream` instead."""
    g = torch.Generator()
    g.manual_seed(secrets.randbits(63))
    return g


def poisson_indices(n: int, sample_rate: float, source: ChaChaStream | torch.Generator) -> torch.Tensor:
    """Indices of a Poisson sample: each of the ``n`` rows is kept independently.

    DP training passes a :class:`ChaChaStream` (53-bit uniforms); a torch generator is
    accepted for benchmarks that want torch's sampler.
    """
    if isinstance(source, ChaChaStream):
        keep = np.flatnonzero(source.uniform(n) < sample_rate)
        return torch.from_numpy(keep)
    return torch.nonzero(torch.rand(n, generator=source) < sample_rate, as_tuple=False).squeeze(1)


class _CSPRNGNoise:
    """Mixin for Opacus' DP optimizers: the Gaussian noise comes from a :class:`ChaChaStream`.

    Opacus' ``add_noise`` is kept for everything but the draw (it sums, checks and marks the
    clipped gradients): it runs with the noise multiplier set to 0, for which Opacus adds
    exact zeros, and the CSPRNG noise of std ``noise_multiplier * max_grad_norm`` is added
    to each ``p.grad`` straight after. ``noise_multiplier`` itself is restored at once.
    """

    noise_stream: ChaChaStream

    def add_noise(self) -> None:
        sigma = getattr(self, "_adjusted_noise_multiplier", self.noise_multiplier)
        saved = self.noise_multiplier, self.__dict__.get("_adjusted_noise_multiplier")
        self.noise_multiplier = 0.0
        if saved[1] is not None:
            self._adjusted_noise_multiplier = 0.0
        try:
            super().add_noise()  # type: ignore[misc]
        finally:
            self.noise_multiplier = saved[0]
            if saved[1] is not None:
                self._adjusted_noise_multiplier = saved[1]
        params = self.params  # type: ignore[attr-defined]
        add_gaussian(params, self.noise_stream, float(sigma) * float(self.max_grad_norm))


def add_gaussian(params: list[torch.Tensor], stream: ChaChaStream, std: float) -> None:
    """Add N(0, std^2) to every ``p.grad``: one float64 draw from ``stream`` per step, in order."""
    if std == 0.0:
        return
    draw = stream.normal_tensor(sum(p.grad.numel() for p in params)).mul_(std)
    pos = 0
    for p in params:
        k = p.grad.numel()
        p.grad.add_(draw[pos : pos + k].to(dtype=p.grad.dtype, device=p.grad.device).view_as(p.grad))
        pos += k


def _secure_optimizer(base: type, stream: ChaChaStream, **kwargs):
    cls = type(f"CSPRNG{base.__name__}", (_CSPRNGNoise, base), {})
    opt = cls(**kwargs)
    opt.noise_stream = stream
    return opt


@dataclass
class DPStepConfig:
    noise_multiplier: float
    max_grad_norm: float
    expected_batch_size: int
    lr: float
    grad_sample_mode: str = "bookkeeping"
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)


class DPSGD:
    """Wraps ``module`` for private training; ``step(inputs, target)`` does one DP step.

    ``loss`` must return per-unit losses when its ``reduction`` is ``"none"``.
    ``engine`` is the clipping engine in use (``"ghost"`` where ``"bookkeeping"`` was asked
    for a network it cannot clip). Call :meth:`close` to detach the hooks and get the plain
    module back.
    """

    def __init__(self, module: nn.Module, loss: nn.Module, cfg: DPStepConfig,
                 noise_stream: ChaChaStream | None = None, optimizer_state: dict | None = None) -> None:
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
        self.noise_stream = stream = noise_stream or ChaChaStream.from_os()
        self.engine = cfg.grad_sample_mode
        self._clipper: BookkeepingClipper | None = None
        self._dp_loss = None
        if self.engine == "bookkeeping":
            self._clipper = single_pass_clipper(module, cfg.max_grad_norm)
            if self._clipper is None:
                self.engine = "ghost"
        if self._clipper is not None:
            self.module, self.optimizer = module, base_opt
            return
        # lazy: opacus takes ~2 s to import; loading a model only to sample (fedsynth sample, the
        # coordinator) never trains, and the default engine does not need it
        if self.engine == "ghost":
            from opacus.grad_sample import GradSampleModuleFastGradientClipping
            from opacus.optimizers import DPOptimizerFastGradientClipping
            from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

            self.module = GradSampleModuleFastGradientClipping(
                module, batch_first=True, loss_reduction="mean",
                max_grad_norm=cfg.max_grad_norm, use_ghost_clipping=True)
            self.optimizer = _secure_optimizer(
                DPOptimizerFastGradientClipping, stream, optimizer=base_opt, noise_multiplier=cfg.noise_multiplier,
                max_grad_norm=cfg.max_grad_norm, expected_batch_size=cfg.expected_batch_size, loss_reduction="mean")
            self._dp_loss = DPLossFastGradientClipping(self.module, self.optimizer, loss, "mean")
        else:
            from opacus import GradSampleModule
            from opacus.optimizers import DPOptimizer

            self.module = GradSampleModule(module, batch_first=True, loss_reduction="mean")
            self.optimizer = _secure_optimizer(
                DPOptimizer, stream, optimizer=base_opt, noise_multiplier=cfg.noise_multiplier,
                max_grad_norm=cfg.max_grad_norm, expected_batch_size=cfg.expected_batch_size, loss_reduction="mean")

    def step(self, forward: Callable[[nn.Module], torch.Tensor], target: torch.Tensor | None) -> float:
        """One DP step. ``forward(module)`` returns the module output for the sampled units."""
        self.module.train()
        if self._clipper is not None:
            loss = self.noisy_gradient(self.row_losses(forward, target))
            self.base_optimizer.step()
            return loss
        self.optimizer.zero_grad(set_to_none=True)
        output = forward(self.module)
        # ghost clipping: Opacus' DP loss runs both backward passes inside backward()
        loss = (self._dp_loss or self.loss)(output, target)
        loss.backward()
        self.optimizer.step()
        return float(loss.item())

    # The single-pass engine's step, in the two parts bench/dp_cost.py times apart.
    def row_losses(self, forward: Callable[[nn.Module], torch.Tensor], target: torch.Tensor | None) -> torch.Tensor:
        """Forward pass: one loss per sampled unit, with what the clipping engine needs recorded."""
        assert self._clipper is not None, "row_losses belongs to the single-pass engine"
        reduction, self.loss.reduction = self.loss.reduction, "none"
        try:
            return self._clipper.record(lambda m: self.loss(forward(m), target))
        finally:
            self.loss.reduction = reduction

    def noisy_gradient(self, losses: torch.Tensor) -> float:
        """Set each ``p.grad`` to (clipped sum + noise) / expected batch, without stepping: the
        value Opacus' optimizers hand to Adam (``loss_reduction="mean"``). Returns the mean loss."""
        assert self._clipper is not None, "noisy_gradient belongs to the single-pass engine"
        result = self._clipper.clipped_sum_of(losses)
        params = self._clipper.parameters
        for p, g in zip(params, result.grads):
            p.grad = g
        add_gaussian(params, self.noise_stream, self.cfg.noise_multiplier * self.cfg.max_grad_norm)
        for p in params:
            p.grad.div_(self.cfg.expected_batch_size)
        return float(result.losses.mean())

    def set_hooks(self, enabled: bool) -> None:
        """Switch the capture hooks (off while a non-private loss flows through). The single-pass
        engine captures only inside :meth:`step`, so it has nothing to switch."""
        if self._clipper is not None:
            return
        if enabled:
            self.module.enable_hooks()
        else:
            self.module.disable_hooks()

    def close(self) -> nn.Module:
        self.optimizer.zero_grad(set_to_none=True)
        if self._clipper is not None:
            return self._clipper.close()
        inner = self.module._module
        self.module._close()
        for p in inner.parameters():
            if hasattr(p, "grad_sample"):
                p.grad_sample = None
            if hasattr(p, "_norm_sample"):
                del p._norm_sample
        return inner
