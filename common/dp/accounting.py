"""Privacy accounting: every epsilon fedsynth reports comes out of an Opacus accountant.

The privacy history is a list of Gaussian-mechanism releases ``(noise_multiplier,
sample_rate, steps)`` exactly as Opacus' accountants store it. DP-SGD steps are entries with
the Poisson sample rate; a one-off Gaussian release of counts (used for the GAN's noisy
category frequencies) is an entry with sample rate 1 and one step. Because the history is
plain data it can be persisted on the client's disk and re-loaded after a restart, so the
epsilon shown is always over *every* step the client ever took.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsynth.common.dp.gaussian_rdp import gaussian_rdp
from fedsynth.common.dp.rdp_epsilon import rdp_epsilon
from fedsynth.common.dp.rng import ChaChaStream
from fedsynth.common.dp.shared_noise import COALITION, SharedNoise, SharedNoiseRelease, is_shared, mixed_epsilon
from fedsynth.common.errors import PrivacyError

Release = tuple[float, float, int]  # (noise_multiplier, sample_rate, steps)
ACCOUNTANTS = ("rdp", "prv")
_MAX_SIGMA = 1e4
# The category-frequency release: at most this share of the budget on its own, and at least
# this noise multiplier up to epsilon 1 (the value measured on Adult at epsilon = 1), falling
# as 1 / sqrt(epsilon) above it (measured over the table suite at epsilon 3), see frequency_noise.
FREQUENCY_SHARE = 0.4
MIN_FREQUENCY_NOISE = 10.0
# RDP orders searched for the conversion to (epsilon, delta): Opacus' defaults stop at 63,
# which cannot certify less than about epsilon 0.1 at delta 1e-5 however much noise is added;
# the higher orders extend that down to about 0.005. More orders only ever tighten the bound,
# and where the optimum lies within the defaults (epsilon above ~0.3) nothing changes.
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 96, 128, 192, 256, 384, 512, 768, 1024]


def _accountant(kind: str):
    """Opacus' accountant for ``kind`` other than "rdp" (epsilon_spent converts RDP curves itself)."""
    # lazy: importing opacus loads torch (~2 s); check_privacy_params is used by CLI argument checks
    if kind == "prv":
        from opacus.accountants import PRVAccountant

        return PRVAccountant()
    raise PrivacyError(f"unknown accountant {kind!r}; choose one of {ACCOUNTANTS}")


def epsilon_spent(history: Sequence[Release | SharedNoiseRelease], delta: float, accountant: str = "rdp",
                  view: str = COALITION) -> float:
    """Epsilon of the composition of all releases in ``history`` at ``delta``.

    A history with shared-noise steps (:mod:`fedsynth.common.dp.shared_noise`) is accounted
    by RDP at integer orders (the Skellam bound needs them), in the trust ``view`` asked for;
    Gaussian-only histories are unchanged by ``view``.
    """
    if any(is_shared(h) for h in history):
        if accountant != "rdp":
            raise PrivacyError(f"shared-noise steps are accounted with RDP; this ledger uses {accountant!r}")
        return mixed_epsilon(history, delta, view)
    releases = [(float(s), float(q), int(n)) for s, q, n in history if int(n) > 0]  # type: ignore[misc]
    if not releases:
        return 0.0
    if accountant == "rdp":  # Opacus' RDPAccountant.get_epsilon, with each step's curve remembered
        return rdp_epsilon(RDP_ORDERS, sum([gaussian_rdp(s, q, n, RDP_ORDERS) for s, q, n in releases]), delta)
    acc = _accountant(accountant)
    acc.history = releases
    return float(acc.get_epsilon(delta=delta))


def check_privacy_params(epsilon: float, delta: float, n_rows: int | None = None) -> None:
    """Refuse settings that are impossible or give no meaningful guarantee."""
    if not isinstance(epsilon, (int, float)) or not math.isfinite(epsilon) or epsilon <= 0:
        raise PrivacyError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    if not isinstance(delta, (int, float)) or not math.isfinite(delta) or not 0 < delta < 1:
        raise PrivacyError(f"delta must be in (0, 1), got {delta!r}")
    if n_rows is not None:
        if n_rows <= 0:
            raise PrivacyError("the table has no rows to train on")
        if delta >= 1.0 / n_rows:
            raise PrivacyError(
                f"delta={delta:g} is not below 1/n = 1/{n_rows} = {1.0 / n_rows:.3g}: such a "
                "delta allows publishing whole records. Choose delta well below 1/n (e.g. 1e-5 "
                "or 1/n^1.1)."
            )


@dataclass(frozen=True)
class Calibration:
    noise_multiplier: float
    epsilon: float  # what the accountant gives for prior + this plan


def calibrate_noise(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    prior: Sequence[Release] = (),
    accountant: str = "rdp",
    tolerance: float = 0.005,
) -> Calibration:
    """Smallest noise multiplier (to ``tolerance`` in epsilon) so that ``prior`` plus
    ``steps`` DP-SGD steps at ``sample_rate`` spend at most ``target_epsilon``.

    The result lands on the target from below: the plan never exceeds it.
    """
    check_privacy_params(target_epsilon, delta)
    if not 0 < sample_rate <= 1:
        raise PrivacyError(f"sample rate must be in (0, 1], got {sample_rate}")
    if steps <= 0:
        raise PrivacyError(f"the plan needs at least one step, got {steps}")
    prior = list(prior)

    def eps(sigma: float) -> float:
        return epsilon_spent(prior + [(sigma, sample_rate, steps)], delta, accountant)

    return least_noise(eps, target_epsilon, epsilon_spent(prior, delta, accountant), tolerance,
                       f"{steps} steps at sample rate {sample_rate:.4g}")


def least_noise(spend: Callable[[float], float], target_epsilon: float, already: float, tolerance: float,
                what: str) -> Calibration:
    """The smallest noise multiplier sigma (to ``tolerance`` in epsilon) with ``spend(sigma) <=
    target_epsilon``: doubling, then bisection on sigma (``spend`` is decreasing). ``already`` is
    the spend before the plan; ``what`` names the plan in the error when no sigma reaches the target."""
    if already >= target_epsilon:
        raise PrivacyError(
            f"the budget is already spent: epsilon {already:.3f} of {target_epsilon:.3f}"
        )
    lo, hi = 0.0, 1.0
    e_hi = spend(hi)  # each spend() runs the accountant over every order: evaluated once per sigma
    while e_hi > target_epsilon:
        lo, hi = hi, hi * 2
        if hi > _MAX_SIGMA:
            raise PrivacyError(
                f"cannot reach epsilon={target_epsilon} with {what}: plan fewer steps or a larger budget"
            )
        e_hi = spend(hi)
    while True:
        mid = (lo + hi) / 2
        e_mid = spend(mid)
        if e_mid > target_epsilon:
            lo = mid
        else:
            hi, e_hi = mid, e_mid
        if target_epsilon - e_hi <= tolerance or hi - lo < 1e-6:
            return Calibration(hi, e_hi)


def calibrate_shared_noise(epsilon: float, delta: float, sample_rate: float, steps: int, dim: int, clip_norm: float,
                           prior: Sequence[Release | SharedNoiseRelease] = (), tolerance: float = 0.005,
                           **settings) -> SharedNoise:
    """The least noise multiplier (to ``tolerance`` in epsilon) with which ``steps`` shared-noise
    steps after ``prior`` spend at most ``epsilon`` in the coalition view; ``settings`` are the
    other :class:`~fedsynth.common.dp.shared_noise.SharedNoise` fields."""
    prior = list(prior)

    def spend(sigma: float) -> float:
        s = SharedNoise(sample_rate, sigma, **settings)
        return mixed_epsilon(prior + [s.release(s.grid(dim, clip_norm), steps)], delta)

    already = mixed_epsilon(prior, delta) if prior else 0.0
    cal = least_noise(spend, epsilon, already, tolerance, f"{steps} shared-noise steps at sample rate {sample_rate:.4g}")
    return SharedNoise(sample_rate, cal.noise_multiplier, **settings)


def frequency_noise(epsilon: float, delta: float, accountant: str = "rdp", floor: float = MIN_FREQUENCY_NOISE,
                    share: float = FREQUENCY_SHARE) -> float:
    """Noise multiplier of the one-off category-frequency release, for a total budget ``epsilon``.

    The release on its own may cost at most ``share`` of ``epsilon`` (by the same accountant;
    inside the composition it takes less, RDP composing sub-additively), and never gets less
    noise than ``floor`` up to epsilon 1, or ``floor / sqrt(epsilon)`` above it. DP-SGD is then
    calibrated with the release as its prior, so the composed total stays within ``epsilon``.
    A fixed noise would not scale down: sigma 10 alone costs 0.375 at delta 1e-5, more than a
    budget of 0.3; with the defaults, budgets below about 0.94 get sigma growing about as
    1/epsilon. Nor up: at epsilon 3 a fixed sigma 10 left the releases (category counts,
    histograms, the marginal fit's pairs) as noisy as at epsilon 1 and gave DP-SGD all the
    rest, which the table suite measured worse (docs/benchmarks.md, "The releases' noise above epsilon 1"). The
    marginal fit's releases are multiples of this noise. Single-party fits, every federated
    client and the shared-noise plan use this rule.
    """
    try:
        cal = calibrate_noise(share * epsilon, delta, 1.0, 1, (), accountant)
    except PrivacyError:
        raise PrivacyError(f"epsilon={epsilon:g} is too small: even the category-frequency release alone "
                           f"(allowed {share:.0%} of it) would need a noise multiplier above {_MAX_SIGMA:g}") from None
    return max(floor / math.sqrt(max(1.0, epsilon)), cal.noise_multiplier)


def gaussian_counts_release(sigma: float) -> Release:
    """History entry for one Gaussian release with noise multiplier ``sigma``."""
    return (float(sigma), 1.0, 1)


def noisy_counts(onehot_blocks: Sequence[Any], sigma: float) -> list[Any]:
    """Gaussian-mechanism release of counts, one block per column (raw noisy counts).

    A block is a one-hot matrix (a row per table row) or already its column sums (a histogram).
    Under add/remove-one-row neighbours each row adds 1 to one count in every block, so the
    L2 sensitivity of all blocks together is sqrt(#blocks); noise std is sigma * that. The
    caller must add ``gaussian_counts_release(sigma)`` to the privacy history. The noise
    comes from a ChaCha20 stream keyed by the OS CSPRNG (:mod:`fedsynth.common.dp.rng`),
    like DP-SGD's. Everything derived from the result (frequencies, a row-count estimate) is
    post-processing and costs nothing more.
    """
    stream = ChaChaStream.from_os()
    scale = sigma * math.sqrt(max(1, len(onehot_blocks)))
    return [exact + scale * stream.normal(exact.shape[0]) for exact in block_totals(onehot_blocks)]


def block_totals(blocks: Sequence[Any]) -> list[np.ndarray]:
    """The exact counts of each block: a one-hot matrix (a row per table row) summed over its rows,
    or a histogram (already column sums) as it is. Private: only ever released with noise."""
    out = []
    for block in blocks:
        block = np.asarray(block, dtype=float)
        out.append(block.sum(axis=0) if block.ndim == 2 else block)
    return out


def frequencies_from_counts(counts: Sequence[Any], floor: float = 1e-3,
                            ordered: Sequence[slice | None] | None = None) -> list[Any]:
    """Noisy counts (or unnormalised frequencies) -> per-column frequencies, ``floor`` added so
    that no category is ever empty.

    Each block is first projected onto the nonnegative counts with the table's estimated row
    count as their sum (:func:`rows_from_counts`; the Euclidean projection): clipping the
    negative noise alone would leave the positive noise of every empty cell, and a sparse
    histogram's tail (most of a 256-bin one when 90% of a column is 0) would gain mass it does
    not have. ``ordered`` (one per block, or None): the cells of a block that lie in value
    order (a histogram's bins), whose projected mass is then spread by :func:`halving_split`.
    """
    total = rows_from_counts(counts) if counts else None
    out = []
    for i, c in enumerate(counts):
        c = np.asarray(c, dtype=float)
        p = _projected(c, total)
        cells = ordered[i] if ordered is not None else None
        if cells is not None and c[cells].size > 1:
            p[cells] = halving_split(c[cells], float(p[cells].sum()))
        p = p + floor
        out.append(p / p.sum())
    return out


def halving_split(noisy: Any, mass: float) -> Any:
    """``mass`` spread over ordered cells from their ``noisy`` counts, top down: each range's mass is
    split between its halves by the mean of the two estimates of the left half (its own noisy
    sum, and the range's mass less the right half's), clipped to the range's mass.

    Post-processing of the noisy counts. Why: projecting cell by cell leaves the positive noise
    of every cell in an empty stretch (a long tail past the data's largest value) above the
    projection's threshold, a few percent of a column's mass in all; summed over the stretch the
    noise averages out, and a stretch whose sum is at most its noise gets almost nothing.
    Measured over the table suite's histograms in docs/benchmarks.md."""
    c = np.asarray(noisy, dtype=float)
    out = np.zeros(c.size)
    stack = [(0, c.size, float(mass))]
    while stack:
        lo, hi, m = stack.pop()
        if m <= 0:
            continue
        if hi - lo == 1:
            out[lo] = m
            continue
        mid = (lo + hi) // 2
        left = min(max(0.5 * (c[lo:mid].sum() + m - c[mid:hi].sum()), 0.0), m)
        stack += [(lo, mid, left), (mid, hi, m - left)]
    return out


def _projected(c: Any, total: float | None) -> Any:
    """The nonnegative vector with sum ``total`` nearest to ``c``: max(c - tau, 0) for the tau that
    gives that sum; plain clipping when there is no positive total to aim at."""
    if total is None or not total > 0 or c.size == 0:
        return np.clip(c, 0.0, None)
    top = np.sort(c)[::-1]
    taus = (np.cumsum(top) - total) / np.arange(1, c.size + 1)
    k = int(np.nonzero(top - taus > 0)[0][-1]) if np.any(top - taus > 0) else 0
    return np.clip(c - taus[k], 0.0, None)


def rows_from_counts(counts: Sequence[Any]) -> float | None:
    """Estimate of the table's row count from the noisy counts (post-processing, no new cost).

    Each block's total is the row count plus Gaussian noise of variance proportional to the
    block's number of categories, so the blocks are combined by inverse-variance weighting.
    None when no block was released.
    """
    if not counts:
        return None
    totals = np.array([float(np.sum(c)) for c in counts])
    inv = np.array([1.0 / max(1, len(c)) for c in counts])
    return float(np.sum(totals * inv) / np.sum(inv))
