"""Shared-noise integer mechanics: stochastic rounding and its sensitivity, exact Poisson/Skellam draws,
noise shares that sum to the accountant's variance, and residues that survive Flower's SecAgg+."""

import math
import os

import numpy as np
import pytest
from flwr.common.secure_aggregation.ndarrays_arithmetic import (
    factor_combine,
    factor_extract,
    parameters_addition,
    parameters_mod,
    parameters_multiply,
    parameters_subtraction,
)
from flwr.common.secure_aggregation.quantization import dequantize, quantize
from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen
from scipy import stats

from fedsynth.common.dp import integer_noise
from fedsynth.common.dp.integer_noise import (
    FIELD_BITS,
    IntegerGrid,
    from_field_sum,
    poisson,
    share_mu,
    signal_bound,
    skellam_noise,
    stochastic_round,
    to_field,
    wrap_probability,
)
from fedsynth.common.dp.rng import ChaChaStream

MUS = (0.5, 10.0, 1e3, 1e6)


def stream(tag: int) -> ChaChaStream:
    """A fixed key per test: the statistical checks are reproducible, never flaky."""
    return ChaChaStream(bytes([tag]) * 32)


def chi2_pvalue(draws: np.ndarray, dist) -> float:
    """Chi-square goodness of fit of integer draws to a scipy discrete distribution, on ~40
    equal-probability bins (merged where the support is small)."""
    m, sd = dist.mean(), dist.std()
    support = np.arange(math.floor(m - 12 * sd) - 2, math.ceil(m + 12 * sd) + 3)
    cdf = dist.cdf(support)  # a quantile table (scipy's skellam.ppf can fail to converge)
    edges = np.unique(support[np.searchsorted(cdf, np.linspace(0, 1, 41)[1:-1])])  # bin j: (e[j-1], e[j]]
    probs = np.diff(np.concatenate([[0.0], dist.cdf(edges), [1.0]]))
    observed = np.bincount(np.searchsorted(edges, draws, side="left"), minlength=len(probs))
    return float(stats.chisquare(observed, probs * draws.size).pvalue)


# ---------------------------------------------------------------- grid and rounding
@pytest.mark.parametrize("resolution", [1.0, 16.0])
def test_one_example_moves_the_coupled_rounded_sum_by_at_most_delta2(resolution):
    """The sensitivity argument itself: the same uniforms round two sums that differ by one
    clipped example to integer vectors whose difference in each coordinate is the floor or the
    ceiling of the scaled shift, hence at most c + sqrt(d) apart in L2."""
    grid = IntegerGrid(clip_norm=1.0, dim=400, resolution=resolution)
    rng = np.random.default_rng(0)
    for tag in range(50):
        total = rng.normal(0, 20, grid.dim)
        example = rng.normal(0, 1, grid.dim) * rng.choice([0.0, 1.0], grid.dim, p=[0.3, 0.7])
        example *= grid.clip_norm / np.linalg.norm(example)
        a = stochastic_round(total, grid, stream(tag))
        b = stochastic_round(total + example, grid, stream(tag))  # same key: coupled rounding
        shift = (total + example) / grid.gamma - total / grid.gamma
        assert np.all((b - a >= np.floor(shift) - 1e-9) & (b - a <= np.ceil(shift) + 1e-9))
        assert np.linalg.norm(b - a) <= grid.l2_sensitivity
        assert np.abs(b - a).sum() <= grid.l1_sensitivity


def test_stochastic_rounding_is_unbiased_and_integer():
    grid = IntegerGrid(clip_norm=1.0, dim=8, resolution=2.0)
    x = np.linspace(-0.4, 0.4, grid.dim)
    n = 40_000
    out = stochastic_round(np.tile(x, (n, 1)), grid, stream(4))
    assert out.dtype == np.int64
    scaled = x / grid.gamma
    assert np.all((out == np.floor(scaled)) | (out == np.floor(scaled) + 1))
    se = 0.5 / math.sqrt(n)
    assert np.all(np.abs(out.mean(axis=0) - scaled) < 5 * se)


def test_signal_bound_leaves_room_for_the_share_and_no_more():
    mu, dim = 1e8, 60_000
    bound = signal_bound(mu, dim)
    assert wrap_probability(bound, mu, dim) <= integer_noise.WRAP_TARGET
    assert wrap_probability(bound + 1, mu, dim) > integer_noise.WRAP_TARGET
    assert (1 << (FIELD_BITS - 1)) - bound < 20 * math.sqrt(2 * mu) * 2  # a margin of some tens of std, not more
    with pytest.raises(ValueError, match="does not fit"):
        signal_bound(1e15, dim)


# ---------------------------------------------------------------- Poisson and Skellam draws
@pytest.mark.parametrize("mu", MUS)
def test_poisson_matches_scipys_pmf_and_rejects_a_shifted_mean(mu):
    draws = poisson(mu, 100_000, stream(6))
    assert draws.dtype == np.int64
    assert chi2_pvalue(draws, stats.poisson(mu)) > 1e-4
    assert chi2_pvalue(draws, stats.poisson(mu * 1.05 + 0.05)) < 1e-4  # the check has power


@pytest.mark.parametrize("mu", MUS)
def test_skellam_is_centred_symmetric_with_variance_two_mu(mu):
    n = 200_000
    draws = skellam_noise(mu, n, stream(7))
    var = 2 * mu
    assert abs(draws.mean()) < 5 * math.sqrt(var / n)
    # sample variance: Var(s^2) ~ (kappa4 + 2 var^2) / n, every even cumulant of Sk(mu, mu) is 2 mu
    assert abs(draws.var() - var) < 5 * math.sqrt((var + 2 * var * var) / n)
    pos, neg = np.sum(draws > 0), np.sum(draws < 0)
    assert abs(pos - neg) < 5 * math.sqrt(pos + neg)
    assert chi2_pvalue(draws, stats.skellam(mu, mu)) > 1e-4


def test_poisson_of_zero_is_zero():
    assert not poisson(0.0, 10, stream(8)).any()
    with pytest.raises(ValueError):
        poisson(-1.0, 10, stream(8))


# ---------------------------------------------------------------- noise shares
def test_honest_shares_sum_to_the_accountants_variance_and_a_wrong_scale_is_caught():
    grid = IntegerGrid(clip_norm=1.0, dim=64, resolution=4.0)
    sigma, k_min, tolerance = 1.1, 5, 2
    honest = k_min - tolerance
    target = (sigma * grid.l2_sensitivity) ** 2
    n = 200_000
    se = math.sqrt((target + 2 * target * target) / n)  # see the Skellam variance test

    def summed_variance(mu: float) -> float:
        s = stream(9)
        return float(sum(skellam_noise(mu, n, s) for _ in range(honest)).var())

    mu = share_mu(sigma, grid, honest)
    assert 2 * mu * honest == pytest.approx(target)
    assert abs(summed_variance(mu) - target) < 5 * se
    assert abs(summed_variance(1.1 * mu) - target) > 5 * se  # a 10% wrong share scale fails
    with pytest.raises(ValueError):
        share_mu(sigma, grid, 0)


# ---------------------------------------------------------------- field residues
def centred_mod(v: np.ndarray, bits: int) -> np.ndarray:
    half = 1 << (bits - 1)
    return ((v + half) % (1 << bits)) - half


def test_field_round_trip_with_negatives_and_wrap():
    bits = 8
    v = np.array([0, 1, -1, 127, -128, 128, -129, 255, 1000, -1000])
    r = to_field(v, bits)
    assert r.dtype == np.float64 and r.min() >= -128 and r.max() < 128
    np.testing.assert_array_equal(r[:5], v[:5])  # in range: unchanged
    np.testing.assert_array_equal(r[5:7], [-128, 127])  # wrapped
    np.testing.assert_array_equal(from_field_sum(r, bits), centred_mod(v, bits))
    vs = np.random.default_rng(10).integers(-10**6, 10**6, size=(7, 1000))
    total = sum(to_field(x, bits) for x in vs) + 1e-7  # float sum, off by round-off
    np.testing.assert_array_equal(from_field_sum(total, bits), centred_mod(vs.sum(axis=0), bits))


@pytest.mark.parametrize("spread", [1 << 20, 1 << (FIELD_BITS - 1)])
def test_residues_survive_flowers_secagg_plus_arithmetic(spread):
    """K clients' residues through flwr's own client (quantize, weight factor, masks mod 2**32)
    and server (sum, unmask, dequantize, offset, 1/K) arithmetic, as secaggplus_mod/_workflow do;
    the large spread makes the true sum wrap, which must come back reduced mod 2**b."""
    k, bits, mod_range = 6, FIELD_BITS, 1 << 32
    clipping_range, target_range = 1 << (bits - 1), 1 << bits
    vectors = np.random.default_rng(11).integers(-spread, spread, size=(k, 3000))
    seeds = [os.urandom(32) for _ in range(k)]
    pair = [os.urandom(32) for _ in range(k)]  # pair[i] shared by clients i and i+1 (mod k)
    shape = [(1,), (vectors.shape[1],)]
    masked = []
    for i, v in enumerate(vectors):
        q_ratio = round(1.0 * target_range)  # num_examples == max_weight
        params = parameters_multiply([to_field(v, bits)], q_ratio / target_range)
        q = factor_combine(q_ratio, quantize(params, clipping_range, target_range))
        q = parameters_addition(q, pseudo_rand_gen(seeds[i], mod_range, shape))
        q = parameters_addition(q, pseudo_rand_gen(pair[i], mod_range, shape))
        q = parameters_subtraction(q, pseudo_rand_gen(pair[i - 1], mod_range, shape))
        masked.append(parameters_mod(q, mod_range))
    total = masked[0]
    for q in masked[1:]:
        total = parameters_mod(parameters_addition(total, q), mod_range)
    for seed in seeds:
        total = parameters_subtraction(total, pseudo_rand_gen(seed, mod_range, shape))
    q_total_ratio, recon = factor_extract(parameters_mod(total, mod_range))
    (mean,) = dequantize(recon, clipping_range, target_range)
    mean = (mean - (k - 1) * clipping_range) * (target_range / q_total_ratio)
    np.testing.assert_array_equal(from_field_sum(k * mean, bits), centred_mod(vectors.sum(axis=0), bits))


def test_wrap_probability_bounds_the_empirical_rate():
    bits, mu, dim = 12, 1e5, 50  # std ~447, half-range 2048 - signal 150: wraps are visible
    bound = wrap_probability(150, mu, dim, bits)
    noise = skellam_noise(mu, 20_000 * dim, stream(12)).reshape(20_000, dim) + 150
    wrapped = np.mean(np.any((noise < -(1 << (bits - 1))) | (noise >= 1 << (bits - 1)), axis=1))
    assert 0 < wrapped <= bound < 1
    assert wrap_probability(0, 1e6, 50_000) < 1e-100  # the default field is ample for typical runs
    assert wrap_probability(1 << FIELD_BITS, 1.0, 10) == 1.0
