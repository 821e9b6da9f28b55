"""Per-example gradient clipping in one backward pass, for networks built of ``nn.Linear`` layers.

A Linear layer applied once to a row ``i`` gives that row a weight gradient ``g_i a_iᵀ`` (its
output gradient times its input), whose norm is ``‖a_i‖·‖g_i‖``, and a bias gradient ``g_i``.
So every row's gradient norm follows from what one backward pass to the layers' outputs
already computes, and the sum of the clipped gradients is ``Aᵀ·diag(c)·G``, one matmul per
layer: the "book-keeping" technique (Bu, Wang, Zha, Karypis 2023). Opacus' ghost clipping
computes the same numbers with a second backward pass; its per-sample mode materialises every
row's gradient. A layer applied to a ``(rows, T, features)`` input (the GAN discriminator sees
a real and a generated row, T = 2) uses the identity
``‖Σ_t g_t a_tᵀ‖² = Σ_{t,s} (a_t·a_s)(g_t·g_s)``.

Never silently wrong: at construction every trainable parameter must be the weight or bias of
an ``nn.Linear`` that owns it alone, and at every step every such layer must have run at most
once, on a 2-D or 3-D input whose first dimension is the rows; anything else raises
:class:`UnsupportedNetwork` (the caller then uses Opacus, see :mod:`fedsynth.common.dp.dp_sgd`).
As for any per-example clipping, rows must not interact in the forward pass (no BatchNorm).
Written here rather than taken from a library because Opacus has no single-pass engine and the
book-keeping reference code is research code pinned to old torch versions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

log = logging.getLogger(__name__)

# Opacus' clipping factor is min(1, C / (norm + 1e-6)); the same constant keeps the two equal.
_NORM_EPS = 1e-6

# (module) -> one loss per row (extra dimensions are averaged, as Opacus' "mean" reduction does)
RowLosses = Callable[[nn.Module], torch.Tensor]


class UnsupportedNetwork(ValueError):
    """The network has a trainable part the single-pass engine cannot clip exactly."""


@dataclass(frozen=True)
class ClippedSum:
    """One step's result: per trainable parameter, the sum over rows of the clipped gradients."""

    grads: list[torch.Tensor]
    losses: torch.Tensor  # (rows,) detached per-row losses
    norms: torch.Tensor  # (rows,) each row's gradient norm before clipping


def linear_layers(module: nn.Module) -> list[nn.Linear]:
    """The Linear layers holding ``module``'s trainable parameters; raises if any is held elsewhere."""
    owner: dict[int, str] = {}
    layers: list[nn.Linear] = []
    for name, sub in module.named_modules():
        own = [p for p in sub.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if not isinstance(sub, nn.Linear):
            raise UnsupportedNetwork(f"layer {name or type(module).__name__!r} ({type(sub).__name__}) is not "
                                     "nn.Linear; only Linear layers are clipped in one pass")
        for p in own:
            if id(p) in owner:
                raise UnsupportedNetwork(f"layers {owner[id(p)]!r} and {name!r} share a parameter")
            owner[id(p)] = name
        layers.append(sub)
    if not layers:
        raise UnsupportedNetwork("the network has no trainable Linear layer")
    return layers


class BookkeepingClipper:
    """Clipped per-row gradient sums of ``module`` at ``max_grad_norm`` (see the module docstring).

    ``parameters`` lists the trainable parameters in ``module.parameters()`` order, the order of
    :attr:`ClippedSum.grads` (and of Opacus' optimizers, so one noise draw lines up with both).
    """

    def __init__(self, module: nn.Module, max_grad_norm: float) -> None:
        if not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0, got {max_grad_norm}")
        self.module, self.max_grad_norm = module, float(max_grad_norm)
        self._layers = linear_layers(module)
        self.parameters = [p for p in module.parameters() if p.requires_grad]
        self._records: dict[nn.Linear, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._capturing = False
        self._handles = [layer.register_forward_hook(self._record) for layer in self._layers]

    def _record(self, layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if self._capturing and torch.is_grad_enabled():
            self._records.setdefault(layer, []).append((inputs[0].detach(), output))  # type: ignore[index]

    def clipped_sum(self, row_losses: RowLosses) -> ClippedSum:
        """Run ``row_losses(module)`` and return the sum of its rows' gradients, each clipped to C."""
        return self.clipped_sum_of(self.record(row_losses))

    def record(self, row_losses: RowLosses) -> torch.Tensor:
        """The forward pass: ``row_losses(module)``, with each Linear layer's input and output kept."""
        self._records = {}
        self._capturing = True
        try:
            return row_losses(self.module)
        finally:
            self._capturing = False

    def clipped_sum_of(self, losses: torch.Tensor) -> ClippedSum:
        """The backward pass for the losses of the last :meth:`record`: norms, factors, clipped sums."""
        records, self._records = self._records, {}
        if losses.dim() == 0:
            raise UnsupportedNetwork("the loss must give one value per row (reduction 'none'), got a scalar")
        rows = losses.shape[0]
        losses = losses.reshape(rows, -1).mean(1)
        used = [(layer, *self._single(layer, records, rows)) for layer in self._layers if layer in records]
        outputs = [z for _, _, z in used]
        out_grads = torch.autograd.grad(losses.sum(), outputs, allow_unused=True) if outputs else ()
        squared = torch.zeros(rows, dtype=losses.dtype, device=losses.device)
        for (layer, a, _), g in zip(used, out_grads):
            if g is not None:
                squared += _squared_norms(a, g, layer.bias is not None and layer.bias.requires_grad)
        norms = squared.sqrt()
        factor = (self.max_grad_norm / (norms + _NORM_EPS)).clamp(max=1.0)
        sums: dict[int, torch.Tensor] = {}
        for (layer, a, _), g in zip(used, out_grads):
            if g is None:
                continue
            gc = (g * factor.view(-1, *([1] * (g.dim() - 1)))).reshape(-1, g.shape[-1])
            if layer.weight.requires_grad:
                sums[id(layer.weight)] = gc.T @ a.reshape(-1, a.shape[-1])
            if layer.bias is not None and layer.bias.requires_grad:
                sums[id(layer.bias)] = gc.sum(0)
        grads = [sums.get(id(p), torch.zeros_like(p)) for p in self.parameters]
        return ClippedSum(grads, losses.detach(), norms.detach())

    @staticmethod
    def _single(layer: nn.Module, records: dict, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        runs = records[layer]
        if len(runs) != 1:
            raise UnsupportedNetwork(f"a Linear layer ({layer}) ran {len(runs)} times in one forward pass; "
                                     "per-row norms need each layer to run once")
        a, z = runs[0]
        if a.dim() not in (2, 3) or a.shape[0] != rows:
            raise UnsupportedNetwork(f"a Linear layer ({layer}) saw input of shape {tuple(a.shape)}; the "
                                     f"single-pass engine needs (rows={rows}, features) or (rows, T, features)")
        return a, z

    def close(self) -> nn.Module:
        """Remove the hooks; returns the plain module."""
        for h in self._handles:
            h.remove()
        self._handles = []
        return self.module


def _squared_norms(a: torch.Tensor, g: torch.Tensor, bias: bool) -> torch.Tensor:
    """Each row's squared gradient norm for one Linear layer: input ``a``, output gradient ``g``."""
    if a.dim() == 2:
        sq = a.pow(2).sum(1) * g.pow(2).sum(1)
        return sq + g.pow(2).sum(1) if bias else sq
    steps, d_in, d_out = a.shape[1], a.shape[2], g.shape[2]
    if steps * steps <= d_in * d_out:  # Gram matrices over the T positions (ghost identity)
        sq = (torch.bmm(a, a.transpose(1, 2)) * torch.bmm(g, g.transpose(1, 2))).sum((1, 2))
    else:  # long sequences: the per-row gradient itself is smaller than its Gram matrices
        sq = torch.einsum("bto,bti->boi", g, a).pow(2).sum((1, 2))
    return sq + g.sum(1).pow(2).sum(1) if bias else sq


def single_pass_clipper(module: nn.Module, max_grad_norm: float) -> BookkeepingClipper | None:
    """The single-pass engine for ``module``, or None (logged) where it does not cover the network
    and the caller must fall back to Opacus' ghost clipping: the one place that choice is made."""
    try:
        return BookkeepingClipper(module, max_grad_norm)
    except UnsupportedNetwork as exc:
        log.info("single-pass clipping does not cover this network (%s); using Opacus' ghost clipping", exc)
        return None
