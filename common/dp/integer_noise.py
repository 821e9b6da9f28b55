"""Integer mechanics of the shared-noise mode: clipped real vectors onto a bounded integer grid,
Skellam noise shares, and the centred residues that SecAgg+ sums modulo ``2**b``.

Why integers: SecAgg+ sums in modular arithmetic, so each institution must send an integer
vector whose norm the privacy proof can bound, plus an integer noise share; the sum of shares
is Skellam noise, which is closed under addition (Sk(m1) + Sk(m2) = Sk(m1 + m2)).

* Each institution rounds the *sum* of its clipped example gradients once, stochastically
  (floor + Bernoulli(frac), unbiased). Sensitivity by coupling: write the rounding as
  floor(x + W) with W uniform per coordinate; for two sums x, x' that differ by one example
  (L2 <= c in grid units) the same W gives integer vectors differing by at most |x_i - x'_i| + 1
  in each coordinate, so by at most c + sqrt(d) in L2. The output is a mixture over W of the
  Skellam mechanism on such a pair, and Renyi divergence is jointly quasi-convex (van Erven &
  Harremoes 2014, Thm 13), so the Skellam bound at Delta2 = c + sqrt(d) holds for the mixture.
  Rounding each example instead (Kairouz, Liu & Steinke 2021, ICML, Sec. 4.1, conditional
  randomized rounding) gives about sqrt(c^2 + d/4) but needs every per-example gradient
  rounded: 10-20x the cost of a round on a 64-wide VAE, for a few % of noise at resolution 16.
* Before its noise share is added, each coordinate of the rounded sum is clipped to
  +-:func:`signal_bound` (1-Lipschitz, so the sensitivity stands), which leaves room in the
  field for the share's tail: wrap-around then has probability below ``WRAP_TARGET`` whatever
  the data (:func:`wrap_probability`).
* Poisson draws are exact: inversion of the pmf table for mu < 10, otherwise Hoermann 1993
  ("The transformed rejection method for generating Poisson random variables", Insurance:
  Mathematics and Economics 12(1)), PTRS, vectorised, driven by ChaCha20 uniforms.

All randomness comes from :class:`~fedsynth.common.dp.rng.ChaChaStream`: it protects privacy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from fedsynth.common.dp.rng import ChaChaStream

FIELD_BITS: int = 26  # residues mod 2**26: K * 2**26 < 2**32 (Flower's mask modulus) for K < 64
#: chance, per institution and round, that its noise share pushes a coordinate out of the field
WRAP_TARGET = 1e-30
_PTRS_MIN_MU = 10.0  # PTRS is valid for mu >= 10 (Hoermann 1993); inversion below


@dataclass(frozen=True)
class IntegerGrid:
    """The public integer grid of one shared-noise run: per-example clip norm C, model dimension d
    and resolution r (C / gamma = r * sqrt(d))."""

    clip_norm: float
    dim: int
    resolution: float = 16.0

    def __post_init__(self) -> None:
        if not (self.clip_norm > 0 and self.dim >= 1 and self.resolution > 0):
            raise ValueError(f"invalid integer grid {self}")

    @property
    def gamma(self) -> float:
        """Grid step in the model's units: C / (r sqrt(d))."""
        return self.clip_norm / (self.resolution * math.sqrt(self.dim))

    @property
    def l2_sensitivity(self) -> float:
        """Delta2: what one example moves an institution's rounded sum by, in L2 (grid units):
        c + sqrt(d), c = C / gamma = r sqrt(d) (see the module docstring)."""
        return self.clip_norm / self.gamma + math.sqrt(self.dim)

    @property
    def l1_sensitivity(self) -> float:
        """Delta1 of an integer vector with L2 norm <= Delta2: |x|_1 <= |x|_2^2 and <= sqrt(d) |x|_2."""
        d2 = self.l2_sensitivity
        return min(d2 * d2, math.sqrt(self.dim) * d2)


def stochastic_round(x: np.ndarray, grid: IntegerGrid, stream: ChaChaStream) -> np.ndarray:
    """``x`` (model units) / gamma, rounded up with probability equal to its fractional part (int64)."""
    scaled = np.asarray(x, dtype=np.float64) / grid.gamma
    base = np.floor(scaled)
    return base.astype(np.int64) + (stream.uniform(scaled.size).reshape(scaled.shape) < scaled - base)


def signal_bound(mu_share: float, dim: int, field_bits: int = FIELD_BITS, target: float = WRAP_TARGET) -> int:
    """The largest per-coordinate signal magnitude that leaves the field wrap-free except with
    probability ``target`` once a share Sk(mu_share, mu_share) is added (see wrap_probability)."""
    lo, hi = 0, (1 << (field_bits - 1)) - 1
    if wrap_probability(0, mu_share, dim, field_bits) > target:
        raise ValueError(f"a noise share with mu = {mu_share:.3g} does not fit the 2^{field_bits} field")
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if wrap_probability(mid, mu_share, dim, field_bits) <= target else (lo, mid - 1)
    return lo


def poisson(mu: float, size: int, stream: ChaChaStream) -> np.ndarray:
    """``size`` exact Poisson(mu) draws (int64) from the CSPRNG."""
    if not (mu >= 0 and math.isfinite(mu)):
        raise ValueError(f"Poisson mean must be finite and >= 0, got {mu}")
    if mu == 0:
        return np.zeros(size, dtype=np.int64)
    if mu < _PTRS_MIN_MU:
        return _poisson_inversion(mu, size, stream)
    return _poisson_ptrs(mu, size, stream)


def _poisson_inversion(mu: float, size: int, stream: ChaChaStream) -> np.ndarray:
    """Inversion X = min{k : U <= F(k)} on a pmf table; for mu < 10 the table's tail beyond
    k = 80 is below 1e-40, far under the 2**-53 resolution of the uniforms."""
    k = np.arange(81, dtype=np.float64)
    cdf = np.cumsum(np.exp(k * math.log(mu) - mu - gammaln(k + 1)))
    return np.minimum(np.searchsorted(cdf, stream.uniform(size), side="left"), 80).astype(np.int64)


def _poisson_ptrs(mu: float, size: int, stream: ChaChaStream) -> np.ndarray:
    """Hoermann 1993, PTRS: transformed rejection with a squeeze, acceptance ~0.9 for mu >= 10."""
    smu, log_mu = math.sqrt(mu), math.log(mu)
    b = 0.931 + 2.53 * smu
    a = -0.059 + 0.02483 * b
    log_inv_alpha = math.log(1.1239 + 1.1328 / (b - 3.4))
    v_r = 0.9277 - 3.6224 / (b - 2)
    out = np.empty(size, dtype=np.int64)
    todo = np.arange(size)
    while todo.size:
        u = stream.uniform(todo.size) - 0.5
        v = stream.uniform(todo.size)
        us = 0.5 - np.abs(u)  # > 0: the uniforms are never 0 or 1
        k = np.floor((2 * a / us + b) * u + mu + 0.43)
        accept = (us >= 0.07) & (v <= v_r)  # the squeeze
        test = ~accept & (k >= 0) & ~((us < 0.013) & (v > us))
        kt = k[test]
        accept[test] = (np.log(v[test]) + log_inv_alpha - np.log(a / us[test] ** 2 + b)
                        <= -mu + kt * log_mu - gammaln(kt + 1))
        out[todo[accept]] = k[accept].astype(np.int64)
        todo = todo[~accept]
    return out


def skellam_noise(mu: float, size: int, stream: ChaChaStream) -> np.ndarray:
    """int64 draws of Sk(mu, mu) = Poisson(mu) - Poisson(mu), from the CSPRNG (variance 2 mu)."""
    return poisson(mu, size, stream) - poisson(mu, size, stream)


def share_mu(noise_multiplier: float, grid: IntegerGrid, honest_shares: int) -> float:
    """Skellam parameter of ONE institution's share: variance 2*mu_share = (sigma * Delta2)^2 / honest_shares,
    where honest_shares = K_min - T (>= 1, else ValueError): any honest_shares shares sum to variance
    (sigma * Delta2)^2, the noise the accountant assumes after the others subtract theirs."""
    if honest_shares < 1:
        raise ValueError(f"honest_shares = K_min - T must be >= 1, got {honest_shares}")
    if noise_multiplier < 0:
        raise ValueError("noise_multiplier must be >= 0")
    return (noise_multiplier * grid.l2_sensitivity) ** 2 / (2 * honest_shares)


def to_field(v: np.ndarray, field_bits: int = FIELD_BITS) -> np.ndarray:
    """int64 vector -> float64 centred residues in [-2^(b-1), 2^(b-1)) (v mod 2^b, centred);
    floats because Flower's SecAgg+ takes float arrays (every residue is exact for b <= 53)."""
    half = 1 << (field_bits - 1)
    return (np.mod(np.asarray(v, dtype=np.int64) + half, 1 << field_bits) - half).astype(np.float64)


def from_field_sum(total: np.ndarray, field_bits: int = FIELD_BITS) -> np.ndarray:
    """A (possibly float, integer-valued up to rounding) sum of to_field() residues -> int64, reduced mod 2^b and
    centred: equals the true integer sum whenever that lies in [-2^(b-1), 2^(b-1)) (see wrap_probability)."""
    t = np.asarray(total)
    ints = np.rint(t).astype(np.int64) if np.issubdtype(t.dtype, np.floating) else t.astype(np.int64)
    half = 1 << (field_bits - 1)
    return np.mod(ints + half, 1 << field_bits) - half


def wrap_probability(signal_bound: float, total_mu: float, dim: int, field_bits: int = FIELD_BITS) -> float:
    """Upper bound on P(some coordinate of signal + Sk(total_mu, total_mu) leaves [-2^(b-1), 2^(b-1))),
    given |signal_i| <= signal_bound on each of the dim coordinates.

    Chernoff on the Skellam tail: E[e^{tX}] = exp(2 mu (cosh t - 1)), so with t = asinh(a / (2 mu)),
    P(X >= a) <= exp(-a asinh(a / 2mu) + 2 mu (sqrt(1 + (a / 2mu)^2) - 1)); a = 2^(b-1) - 1 - signal_bound
    covers both sides (X is symmetric), then a union bound over the coordinates: 2 * dim * tail.
    """
    a = (1 << (field_bits - 1)) - 1 - signal_bound
    if a <= 0:
        return 1.0
    if total_mu <= 0:
        return 0.0
    z = a / (2 * total_mu)
    log_tail = -a * math.asinh(z) + 2 * total_mu * (math.hypot(1.0, z) - 1)
    return min(1.0, 2 * dim * math.exp(log_tail))
