"""RDP accounting of the Poisson-subsampled multi-dimensional Skellam mechanism (shared-noise mode).

In shared-noise mode a round is one DP-SGD step on the pooled rows: every institution
Poisson-samples its rows at rate q, rounds each clipped, scaled example gradient to an integer
vector, sums and adds a share of Skellam noise; SecAgg+ sums the shares. The noise that
protects a row is Sk(mu, mu) = Poisson(mu) - Poisson(mu) per coordinate (variance 2 mu), mu
being the sum of the honest shares' mus. Its RDP curve (a bound in both directions) is
amplified by Poisson subsampling (:mod:`fedsynth.common.dp.subsampling`), composed (RDP adds up)
with fedsynth's Gaussian releases at integer orders, and converted to (epsilon, delta) the way
fedsynth's RDP accountant does.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedsynth.common.dp.gaussian_rdp import gaussian_rdp
from fedsynth.common.dp.rdp_epsilon import rdp_epsilon
from fedsynth.common.dp.subsampling import poisson_subsampled_rdp

# Integer orders only: the subsampling bounds hold at integers >= 2.
INTEGER_ORDERS: tuple[int, ...] = tuple(range(2, 65)) + (80, 96, 128, 192, 256)
_TAG = "skellam"


@dataclass(frozen=True)
class SkellamRelease:
    """`steps` Poisson-subsampled steps at `sample_rate`, each adding Skellam noise Sk(mu, mu) per coordinate
    to a sum in which one row moves the integer vector by at most l2_sensitivity (L2) and l1_sensitivity (L1)."""

    sample_rate: float
    steps: int
    mu: float
    l2_sensitivity: float
    l1_sensitivity: float

    def __post_init__(self) -> None:
        checks = {
            "sample_rate": 0 < self.sample_rate <= 1,
            "steps": self.steps >= 0,
            "mu": self.mu > 0,
            "l2_sensitivity": self.l2_sensitivity >= 0,
            "l1_sensitivity": self.l1_sensitivity >= 0,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not ok or not math.isfinite(value):
                raise ValueError(f"Skellam release: invalid {name} {value!r}")

    def to_list(self) -> list:
        """JSON-ready form for the privacy ledger: ["skellam", q, steps, mu, l2, l1]."""
        return [_TAG, self.sample_rate, self.steps, self.mu, self.l2_sensitivity, self.l1_sensitivity]

    @classmethod
    def from_list(cls, raw: object) -> SkellamRelease:
        """Inverse of :meth:`to_list`; a ledger entry that is not exactly that shape is refused."""
        if not isinstance(raw, (list, tuple)) or len(raw) != 6 or raw[0] != _TAG:
            raise ValueError(f"Skellam release: expected [{_TAG!r}, q, steps, mu, l2, l1], got {raw!r}")
        names = ("sample_rate", "steps", "mu", "l2_sensitivity", "l1_sensitivity")
        for name, value in zip(names, raw[1:]):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"Skellam release: invalid {name} {value!r}")  # noqa: TRY004 (the ledger reader catches ValueError)
        if not math.isfinite(raw[2]) or int(raw[2]) != raw[2]:
            raise ValueError(f"Skellam release: invalid steps {raw[2]!r}")
        q, steps, mu, l2, l1 = raw[1:]
        return cls(float(q), int(steps), float(mu), float(l2), float(l1))


def _integer_orders(orders: Sequence[float]) -> np.ndarray:
    alphas = np.asarray(orders, dtype=float)
    if alphas.ndim != 1 or np.any(alphas < 2) or np.any(alphas != np.round(alphas)) or np.any(np.diff(alphas) <= 0):
        raise ValueError(f"orders must be increasing integers >= 2, got {orders!r}")
    return alphas


def skellam_rdp(mu: float, l2: float, l1: float, orders: Sequence[float]) -> np.ndarray:
    """RDP of one unsubsampled multi-dimensional Skellam mechanism (Agarwal, Kairouz, Liu 2021, 'The Skellam
    Mechanism for Differentially Private Federated Learning', NeurIPS; the multi-dimensional RDP theorem,
    Theorem 3.5 of arXiv:2110.04995, stated for integer alpha > 1).

    The paper's noise Sk_mu has variance mu (Poisson(mu/2) - Poisson(mu/2)); ours, Sk(mu, mu), has
    variance 2 mu, so its mu is our 2 mu. For integer alpha > 1 that gives
        eps(alpha) <= alpha l2^2 / (4 mu) + min(((2 alpha - 1) l2^2 + 6 l1) / (16 mu^2), 3 l1 / (4 mu)):
    the Gaussian mechanism's RDP at variance 2 mu plus a discretisation surcharge that vanishes as mu grows.
    """
    if not mu > 0 or l2 < 0 or l1 < 0:
        raise ValueError(f"need mu > 0 and non-negative sensitivities, got mu={mu}, l2={l2}, l1={l1}")
    a = _integer_orders(orders)
    surcharge = np.minimum(((2 * a - 1) * l2**2 + 6 * l1) / (16 * mu**2), 3 * l1 / (4 * mu))
    return a * l2**2 / (4 * mu) + surcharge


def release_rdp(release: SkellamRelease, orders: Sequence[float] = INTEGER_ORDERS) -> np.ndarray:
    """RDP curve of `release`: `steps` times the subsampled per-step Skellam curve (RDP composes additively)."""
    alphas = _integer_orders(orders).astype(int)
    step = _step_rdp(release.sample_rate, release.mu, release.l2_sensitivity, release.l1_sensitivity,
                     int(alphas.max()))
    return release.steps * step[alphas - 2]


@functools.lru_cache(maxsize=64)
def _step_rdp(q: float, mu: float, l2: float, l1: float, max_order: int) -> np.ndarray:
    """One subsampled step at every integer order 2..max_order (cached: a ledger asks for the
    same step every round, and the subsampling bound is the slow part)."""
    grid = np.arange(2, max_order + 1)  # every integer order: the bounds need each one
    out = poisson_subsampled_rdp(skellam_rdp(mu, l2, l1, grid), q)
    out.flags.writeable = False
    return out


def composed_epsilon(gaussian: Sequence[tuple[float, float, int]], skellam: Sequence[SkellamRelease],
                     delta: float) -> float:
    """epsilon of the composition: Gaussian releases (noise_multiplier, sample_rate, steps) via Opacus'
    compute_rdp at INTEGER_ORDERS (:mod:`~fedsynth.common.dp.gaussian_rdp`), plus every Skellam
    release; converted with Opacus' get_privacy_spent (:mod:`~fedsynth.common.dp.rdp_epsilon`), the
    same conversion fedsynth's RDP accountant uses."""
    orders = list(INTEGER_ORDERS)
    total = np.zeros(len(orders))
    for sigma, q, steps in gaussian:
        if int(steps) > 0:
            total += gaussian_rdp(sigma, q, steps, orders)
    for release in skellam:
        if release.steps > 0:
            total += release_rdp(release, orders)
    if not np.any(total):
        return 0.0
    return rdp_epsilon(orders, total, delta)
