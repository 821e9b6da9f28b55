"""Integer mechanics of the shared-noise mode: clipped real vectors onto a bounded integer grid,
Skellam noise shares, and the centred residues that SecAgg+ sums modulo ``2**b``.

Why integers: SecAgg+ sums in modular arithmetic, so each institution must send an integer
vector whose norm the privacy proof can bound, plus an integer noise share; the sum of shares
is Skellam noise, which is closed under addition (Sk(m1) + Sk(m2) = Sk(m1 + m2)).

* Scaling and rounding follow Kairouz, Liu & Steinke 2021, "The Distributed Discrete Gaussian
  Mechanism for Federated Learning with Secure Aggregation" (ICML), Section 4.1 ("conditional
  randomized rounding"): a vector of L2 norm <= c (grid units) rounded at random has, with
  probability >= 1 - beta, squared norm <= c^2 + d/4 + sqrt(2 ln(1/beta)) (c + sqrt(d)/2), and
  always norm <= c + sqrt(d); re-drawing roundings above the bound makes it the sensitivity.
  Same formula as their reference code (google-research/federated, distributed_dp/
  compression_utils.py). Agarwal, Kairouz & Liu 2021 ("The Skellam Mechanism for Differentially
  Private Federated Learning", NeurIPS) use the same rounding with Skellam noise.
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
ROUNDING_TRIES: int = 32  # re-draws of an over-norm row before it is rounded toward zero
_CLIP_SLACK = 1e-6  # relative slack on a row's norm for float32 clipping round-off
_PTRS_MIN_MU = 10.0  # PTRS is valid for mu >= 10 (Hoermann 1993); inversion below


@dataclass(frozen=True)
class IntegerGrid:
    """The public integer grid of one shared-noise run: per-example clip norm C, model dimension d,
    resolution r (C / gamma = r * sqrt(d)), and beta (conditional rounding's failure bound)."""

    clip_norm: float
    dim: int
    resolution: float = 4.0
    beta: float = math.exp(-0.5)

    def __post_init__(self) -> None:
        if not (self.clip_norm > 0 and self.dim >= 1 and self.resolution > 0 and 0 < self.beta < 1):
            raise ValueError(f"invalid integer grid {self}")

    @property
    def gamma(self) -> float:
        """Grid step in the model's units: C / (r sqrt(d))."""
        return self.clip_norm / (self.resolution * math.sqrt(self.dim))

    @property
    def l2_sensitivity(self) -> float:
        """Delta2, the L2 norm bound of one example's rounded vector in grid units (KLS21, Sec. 4.1):
        min(c + sqrt(d), sqrt(c^2 + d/4 + sqrt(2 ln(1/beta)) (c + sqrt(d)/2))), c = C / gamma."""
        c, d = self.clip_norm / self.gamma, self.dim
        conditional = c * c + d / 4 + math.sqrt(2 * math.log(1 / self.beta)) * (c + math.sqrt(d) / 2)
        return min(c + math.sqrt(d), math.sqrt(conditional))

    @property
    def l1_sensitivity(self) -> float:
        """Delta1 of an integer vector with L2 norm <= Delta2: |x|_1 <= |x|_2^2 and <= sqrt(d) |x|_2."""
        d2 = self.l2_sensitivity
        return min(d2 * d2, math.sqrt(self.dim) * d2)


def conditional_round(rows: np.ndarray, grid: IntegerGrid, stream: ChaChaStream) -> np.ndarray:
    """rows: (B, d) float array, each row already clipped to L2 <= C, in the model's units. Returns (B, d) int64:
    each row divided by gamma and stochastically rounded (unbiased: floor + Bernoulli(frac)), re-drawn for rows
    whose rounded L2 norm exceeds grid.l2_sensitivity; after ROUNDING_TRIES tries a row falls back to rounding
    toward zero (never increases the norm), so the bound holds for EVERY row deterministically."""
    x = np.asarray(rows, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != grid.dim:
        raise ValueError(f"rows must have shape (B, {grid.dim}), got {x.shape}")
    if np.any(np.linalg.norm(x, axis=1) > grid.clip_norm * (1 + _CLIP_SLACK)):
        raise ValueError("a row's L2 norm exceeds the grid's clip norm: clip before rounding")
    x = x / grid.gamma
    base = np.floor(x)
    frac = x - base
    bound_sq = grid.l2_sensitivity ** 2
    out = np.empty(x.shape, dtype=np.int64)
    todo = np.arange(x.shape[0])
    for _ in range(ROUNDING_TRIES):
        if todo.size == 0:
            return out
        up = stream.uniform(todo.size * grid.dim).reshape(todo.size, grid.dim) < frac[todo]
        cand = base[todo].astype(np.int64) + up
        fits = np.einsum("ij,ij->i", cand, cand) <= bound_sq
        out[todo[fits]] = cand[fits]
        todo = todo[~fits]
    out[todo] = np.trunc(x[todo]).astype(np.int64)  # |trunc(x)| <= |x| <= c <= Delta2
    return out


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
