"""The generative networks (VAE, GAN) and their per-sample losses.

Only layers Opacus can clip per sample are used (Linear, LeakyReLU/ReLU; no BatchNorm,
whose batch statistics mix rows). Losses return one value per *privacy unit* so that
Opacus' ghost clipping can bound each unit's gradient:

* VAE (in the spirit of TVAE): one unit = one real row. Encoder and decoder both see real
  rows, so both are trained with DP-SGD.
* Conditional GAN (in the spirit of CTGAN): one unit = a pair (real row, generated row).
  Only the discriminator sees real rows and is trained with DP-SGD; the generator learns
  through the discriminator's outputs, which is post-processing of a DP release.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fedsynth.common.data.encoding import Segment

OFFSET_SIGMA = 0.1  # std of the offset noise when sampling (in [-1, 1] units)
# Weight of the offset term in the loss. Under per-sample clipping every row's gradient is
# scaled to the same norm, so a heavily weighted offset term would crowd out the
# categorical terms that carry the relationships between columns.
OFFSET_LOSS_WEIGHT = 0.2


def mlp(sizes: list[int], act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), act()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------- VAE
class TabularVAE(nn.Module):
    """Conditional VAE: forward([x, cond]) -> concat(decoder output, mu, logvar).

    The condition (one category of one column, read off the row itself) goes to the decoder
    only. Under DP noise a VAE's latent code tends to collapse; the condition still lets the
    decoder learn p(row | column j = k), i.e. every 2-way marginal with the conditioned
    column, which is what keeps the label/feature relationships in the synthetic data.
    """

    def __init__(self, dim: int, cond_dim: int, hidden: int = 256, latent: int = 64, depth: int = 2) -> None:
        super().__init__()
        self.dim, self.cond_dim, self.latent = dim, cond_dim, latent
        self.encoder = mlp([dim] + [hidden] * depth + [2 * latent])
        self.decoder = mlp([latent + cond_dim] + [hidden] * depth + [dim])
        # Direct path from condition to output logits: under DP noise the per-condition
        # log-odds (a 2-way marginal table) are learned far faster through one linear map,
        # where each row's gradient lands on its own condition's column only.
        self.cond_skip = nn.Linear(cond_dim, dim, bias=False) if cond_dim else None

    def decode(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        out = self.decoder(torch.cat([z, cond], dim=1))
        return out + self.cond_skip(cond) if self.cond_skip is not None else out

    def forward(self, x_and_cond: torch.Tensor) -> torch.Tensor:
        """Input: the encoded row followed by its condition vector (one tensor for Opacus)."""
        x, cond = x_and_cond[:, : self.dim], x_and_cond[:, self.dim :]
        stats = self.encoder(x)
        mu, logvar = stats[:, : self.latent], stats[:, self.latent :].clamp(-10, 10)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.cat([self.decode(z, cond), mu, logvar], dim=1)

    @torch.no_grad()
    def generate(self, cond: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(cond.shape[0], self.latent, generator=rng)
        return self.decode(z, cond)


class VAELoss(nn.Module):
    """Per-row negative ELBO over the encoder's segments. ``reduction`` is read by Opacus."""

    def __init__(self, segments: list[Segment], dim: int, latent: int, beta: float = 1.0) -> None:
        super().__init__()
        self.segments, self.dim, self.latent, self.beta = segments, dim, latent, beta
        self.reduction = "mean"

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        recon = output[:, : self.dim]
        mu = output[:, self.dim : self.dim + self.latent]
        logvar = output[:, self.dim + self.latent :]
        loss = reconstruction_loss(recon, target, self.segments)
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
        per_row = loss + self.beta * kl
        if self.reduction == "mean":
            return per_row.mean()
        if self.reduction == "sum":
            return per_row.sum()
        return per_row


def reconstruction_loss(raw: torch.Tensor, target: torch.Tensor, segments: list[Segment]) -> torch.Tensor:
    total = torch.zeros(raw.shape[0], dtype=raw.dtype, device=raw.device)
    parent: Segment | None = None
    for seg in segments:
        if seg.kind == "softmax":
            logits = raw[:, seg.start : seg.end]
            total = total + F.cross_entropy(logits, target[:, seg.start : seg.end].argmax(1), reduction="none")
            parent = seg
        else:
            assert parent is not None
            in_bin = target[:, parent.start + seg.bins_from : parent.end].sum(1)
            pred = torch.tanh(raw[:, seg.start])
            err = OFFSET_LOSS_WEIGHT * (pred - target[:, seg.start]) ** 2
            total = total + in_bin * err
    return total


def sample_from_raw(raw: torch.Tensor, segments: list[Segment], rng: torch.Generator | None = None,
                    offset_noise: float = OFFSET_SIGMA) -> torch.Tensor:
    """Turn decoder logits into an encoded row: sample each softmax, squash each offset."""
    out = torch.zeros_like(raw)
    for seg in segments:
        if seg.kind == "softmax":
            probs = torch.softmax(raw[:, seg.start : seg.end], dim=1)
            idx = torch.multinomial(probs, 1, generator=rng).squeeze(1)
            out[torch.arange(raw.shape[0]), seg.start + idx] = 1.0
        else:
            noise = torch.randn(raw.shape[0], generator=rng) * offset_noise
            out[:, seg.start] = (torch.tanh(raw[:, seg.start]) + noise).clamp(-1, 1)
    return out


# ----------------------------------------------------------------------------- GAN
class GeneratorNet(nn.Module):
    """The GAN's generator network: (noise, condition) -> raw row logits."""

    def __init__(self, noise_dim: int, cond_dim: int, dim: int, hidden: int = 256, depth: int = 2) -> None:
        super().__init__()
        self.noise_dim = noise_dim
        self.net = mlp([noise_dim + cond_dim] + [hidden] * depth + [dim], act=nn.ReLU)

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, cond], dim=1))


def activate(raw: torch.Tensor, segments: list[Segment], tau: float = 0.2) -> torch.Tensor:
    """Differentiable GeneratorNet output: Gumbel-softmax per category block, tanh per offset."""
    parts = []
    for seg in segments:
        block = raw[:, seg.start : seg.end]
        parts.append(F.gumbel_softmax(block, tau=tau) if seg.kind == "softmax" else torch.tanh(block))
    return torch.cat(parts, dim=1)


class PairDiscriminator(nn.Module):
    """Scores (batch, 2, features): slot 0 a real row, slot 1 a generated one."""

    def __init__(self, in_dim: int, hidden: int = 256, depth: int = 2) -> None:
        super().__init__()
        self.net = mlp([in_dim] + [hidden] * depth + [1], act=lambda: nn.LeakyReLU(0.2))  # type: ignore[arg-type]

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.net(pairs).squeeze(-1)  # (batch, 2)


class PairGANLoss(nn.Module):
    """Per-pair discriminator loss: -log D(real) - log(1 - D(fake))."""

    def __init__(self) -> None:
        super().__init__()
        self.reduction = "mean"

    def forward(self, scores: torch.Tensor, _target: torch.Tensor | None = None) -> torch.Tensor:
        per_pair = F.softplus(-scores[:, 0]) + F.softplus(scores[:, 1])
        if self.reduction == "mean":
            return per_pair.mean()
        if self.reduction == "sum":
            return per_pair.sum()
        return per_pair
