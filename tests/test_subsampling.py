"""Poisson-subsampling amplification of RDP curves: both directions against the exact divergences
of a subsampled Skellam pair, never below Opacus' tight subsampled Gaussian, Zhu & Wang written out."""

import math

import numpy as np
import pytest
from opacus.accountants.analysis.rdp import compute_rdp
from scipy.special import logsumexp
from scipy.stats import skellam

from fedsynth.common.dp.skellam import skellam_rdp
from fedsynth.common.dp.subsampling import add_rdp, poisson_subsampled_rdp, remove_rdp, zhu_wang_rdp

GRID = np.arange(2, 129)


def exact_subsampled(mu: float, shift: int, q: float, alpha: int) -> tuple[float, float]:
    """(D_alpha(R || P), D_alpha(P || R)) for P = Sk(mu, mu), Q = P + shift, R = (1 - q) P + q Q, summed
    numerically over the integers."""
    k = np.arange(-6000, 6001)
    log_p = skellam.logpmf(k, mu, mu)
    log_q = skellam.logpmf(k - shift, mu, mu)
    keep = np.isfinite(log_p) & np.isfinite(log_q)
    log_p, log_q = log_p[keep], log_q[keep]
    log_r = np.logaddexp(math.log1p(-q) + log_p, math.log(q) + log_q)
    remove = logsumexp(alpha * log_r + (1 - alpha) * log_p) / (alpha - 1)
    add = logsumexp(alpha * log_p + (1 - alpha) * log_r) / (alpha - 1)
    return float(remove), float(add)


@pytest.mark.parametrize("mu, shift", [(2.0, 1), (20.0, 2), (200.0, 3)])
@pytest.mark.parametrize("q", [0.02, 0.2, 0.6])
def test_both_directions_bound_the_exact_divergences_of_a_subsampled_skellam_pair(mu, shift, q):
    eps = skellam_rdp(mu, shift, shift, GRID)
    for alpha in (2, 3, 8, 24, 64):
        remove, add = exact_subsampled(mu, shift, q, alpha)
        assert remove <= remove_rdp(eps, q, alpha) + 1e-9
        assert add <= add_rdp(eps, q, alpha) + 1e-9
        assert max(remove, add) <= poisson_subsampled_rdp(eps, q)[alpha - 2] + 1e-9


def test_a_dropped_term_in_the_add_direction_would_be_caught():
    """The add bound without its tail term (as if L could never be small) undercuts the exact
    divergence where the noise is small: the test above can fail."""
    mu, shift, q, alpha = 2.0, 1, 0.6, 24
    eps = skellam_rdp(mu, shift, shift, GRID)
    m = alpha - 1
    no_tail = min(math.log(1 + ((1 - q + q * x0) ** -m - 1 + m * q * (x0 - 1)) / (x0 - 1) ** 2
                           * math.expm1(eps[0])) / m for x0 in np.linspace(0.5, 0.99, 50))
    assert no_tail < exact_subsampled(mu, shift, q, alpha)[1] <= add_rdp(eps, q, alpha)


@pytest.mark.parametrize("q", [0.01, 0.05, 0.2, 0.5])
@pytest.mark.parametrize("sigma", [0.8, 1.0, 2.0, 5.0, 15.0])
def test_never_below_opacus_tight_gaussian_and_never_above_no_subsampling(q, sigma):
    gaussian = GRID / (2 * sigma**2)
    ours = poisson_subsampled_rdp(gaussian, q)
    tight = np.asarray(compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=list(GRID)))
    assert np.all(ours >= tight * (1 - 1e-9))
    assert np.all(ours <= gaussian + 1e-12)


def test_rate_one_is_the_identity_and_high_orders_stay_finite():
    eps = skellam_rdp(50.0, 3.0, 9.0, GRID)
    np.testing.assert_array_equal(poisson_subsampled_rdp(eps, 1.0), eps)
    huge = np.arange(2, 257) / (2 * 0.05**2)  # sigma 0.05: e^eps(256) overflows a float
    for q in (1e-4, 0.01, 0.5, 0.99):
        assert np.all(np.isfinite(poisson_subsampled_rdp(huge, q)))


@pytest.mark.parametrize("q, eps2, eps3", [(0.01, 0.5, 0.8), (0.1, 2.0, 3.5), (0.3, 0.1, 0.2)])
def test_zhu_wang_at_order_three_written_out(q, eps2, eps3):
    # the general bound by hand at alpha = 3: l = 2 carries factor 1, l = 3 carries factor 3
    expected = 0.5 * math.log((1 - q) ** 2 * (2 * q + 1) + 3 * q**2 * (1 - q) * math.exp(eps2)
                              + 3 * q**3 * math.exp(2 * eps3))
    assert zhu_wang_rdp(np.array([eps2, eps3]), q, 3) == pytest.approx(expected)
