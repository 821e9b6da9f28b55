"""The Skellam accountant of shared-noise mode: the RDP bound against the exact Renyi divergence, its
Gaussian limit, the subsampled composition against Opacus' tight Gaussian one, and the ledger form."""

import itertools
import json
import math

import numpy as np
import pytest
from fedsynth.common.dp.accounting import epsilon_spent
from fedsynth.common.dp.skellam import (
    INTEGER_ORDERS,
    SkellamRelease,
    composed_epsilon,
    release_rdp,
    skellam_rdp,
)
from scipy.special import logsumexp
from scipy.stats import skellam

ORDERS = np.array(INTEGER_ORDERS, dtype=float)
DELTA = 1e-5
DIM = 1000


def exact_skellam_divergence(mu: float, shift: int, alpha: int) -> float:
    """D_alpha(Sk(mu, mu) + shift || Sk(mu, mu)) summed numerically over the integers."""
    k = np.arange(-4000, 4001)
    log_p, log_q = skellam.logpmf(k - shift, mu, mu), skellam.logpmf(k, mu, mu)
    keep = np.isfinite(log_p) & np.isfinite(log_q)
    return float(logsumexp(alpha * log_p[keep] + (1 - alpha) * log_q[keep]) / (alpha - 1))


def gaussian_limit(l2: float, sigma: float) -> SkellamRelease:
    """A release whose noise has the variance (sigma l2)^2 of the Gaussian mechanism at noise multiplier sigma."""
    return SkellamRelease(1.0, 1, l2**2 * sigma**2 / 2, l2, math.sqrt(DIM) * l2)


@pytest.mark.parametrize("mu", [0.5, 2.0, 10.0, 100.0])
@pytest.mark.parametrize("shift", [1, 2, 5])
def test_skellam_rdp_bounds_the_exact_divergence_in_one_dimension(mu, shift):
    # one coordinate moved by `shift`: L1 = L2 = shift
    for alpha in (2, 8, 32, 128):
        exact = exact_skellam_divergence(mu, shift, alpha)
        assert exact <= skellam_rdp(mu, shift, shift, [alpha])[0] + 1e-9
    if mu >= 100:  # and it is tight where the noise is large: a factor-2 slip in mu's convention would show
        assert skellam_rdp(mu, shift, shift, [2])[0] <= 1.02 * exact_skellam_divergence(mu, shift, 2)


def test_skellam_rdp_tends_to_the_gaussian_rdp():
    sigma = 1.0
    excess = []
    for l2 in (1e2, 1e3, 1e4):
        r = gaussian_limit(l2, sigma)
        rdp = skellam_rdp(r.mu, r.l2_sensitivity, r.l1_sensitivity, INTEGER_ORDERS)
        gaussian = ORDERS / (2 * sigma**2)
        assert np.all(rdp >= gaussian)
        excess.append(float(np.max(rdp / gaussian - 1)))
    assert excess[0] > excess[1] > excess[2]
    assert excess[2] < 0.01


@pytest.mark.parametrize("mu, l2, l1, alpha, expected", [
    (1.0, 2.0, 4.0, 3, 3.0 + 44 / 16),  # surcharge ((2a-1) l2^2 + 6 l1) / (16 mu^2) is the smaller
    (0.5, 1.0, 1.0, 2, 1.0 + 1.5),  # surcharge 3 l1 / (4 mu) is the smaller
])
def test_skellam_rdp_known_values(mu, l2, l1, alpha, expected):
    assert skellam_rdp(mu, l2, l1, [alpha])[0] == pytest.approx(expected)


@pytest.mark.parametrize("orders", [[1.5, 2], [2, 2.5], [3, 2], [2, 2]])
def test_non_integer_or_unsorted_orders_are_refused(orders):
    with pytest.raises(ValueError, match="orders"):
        skellam_rdp(1.0, 1.0, 1.0, orders)


def test_release_rdp_is_steps_times_one_step():
    one = SkellamRelease(0.1, 1, 200.0, 10.0, 30.0)
    many = SkellamRelease(0.1, 37, 200.0, 10.0, 30.0)
    np.testing.assert_allclose(release_rdp(many), 37 * release_rdp(one))


@pytest.mark.parametrize("q", [0.05, 0.1, 0.2])
@pytest.mark.parametrize("sigma", [0.8, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("steps", [100, 500])
def test_skellam_in_the_gaussian_limit_costs_at_most_a_measured_factor_over_opacus(q, sigma, steps):
    limit = gaussian_limit(1e4, sigma)
    shared = SkellamRelease(q, steps, limit.mu, limit.l2_sensitivity, limit.l1_sensitivity)
    ours = composed_epsilon([], [shared], DELTA)
    opacus = composed_epsilon([(sigma, q, steps)], [], DELTA)
    # measured over this grid (two-sided subsampling bound): at most 1.2x, the worst at q 0.2 and large sigma
    assert opacus * (1 - 1e-6) <= ours <= 1.25 * opacus


@pytest.mark.parametrize("history", [
    [(1.0, 0.05, 300)],
    [(1.5, 0.1, 200)],
    [(10.0, 1.0, 1), (1.2, 0.02, 1000)],
    [(2.0, 0.2, 100), (0.9, 0.01, 2000)],
])
def test_gaussian_only_composition_matches_fedsynths_accountant(history):
    ours = composed_epsilon(history, [], DELTA)
    reference = epsilon_spent(history, DELTA)
    # the reference also searches fractional orders, so it may be slightly lower; never much higher
    assert reference * 0.99 <= ours <= reference * 1.05


def test_a_skellam_release_adds_to_the_epsilon_and_more_noise_lowers_it():
    gaussian = [(10.0, 1.0, 1), (1.2, 0.05, 200)]
    base = composed_epsilon(gaussian, [], DELTA)
    eps_by_mu = [composed_epsilon(gaussian, [SkellamRelease(0.05, 50, mu, 50.0, 500.0)], DELTA)
                 for mu in (1e3, 3e3, 1e4, 1e5)]
    assert all(e > base for e in eps_by_mu)
    assert all(a > b for a, b in itertools.pairwise(eps_by_mu))
    assert composed_epsilon([], [], DELTA) == 0.0


def test_release_round_trips_through_json():
    r = SkellamRelease(0.05, 12, 1234.5, 40.0, 400.0)
    raw = json.loads(json.dumps(r.to_list()))
    assert raw[0] == "skellam"
    assert SkellamRelease.from_list(raw) == r


@pytest.mark.parametrize("raw, field", [
    (["gaussian", 0.1, 1, 1.0, 1.0, 1.0], "expected"),
    (["skellam", 0.1, 1, 1.0, 1.0], "expected"),
    ({"q": 0.1}, "expected"),
    (["skellam", 1.5, 1, 1.0, 1.0, 1.0], "sample_rate"),
    (["skellam", "0.1", 1, 1.0, 1.0, 1.0], "sample_rate"),
    (["skellam", 0.1, 2.5, 1.0, 1.0, 1.0], "steps"),
    (["skellam", 0.1, True, 1.0, 1.0, 1.0], "steps"),
    (["skellam", 0.1, -1, 1.0, 1.0, 1.0], "steps"),
    (["skellam", 0.1, 1, 0.0, 1.0, 1.0], "mu"),
    (["skellam", 0.1, 1, float("nan"), 1.0, 1.0], "mu"),
    (["skellam", 0.1, 1, 1.0, -1.0, 1.0], "l2_sensitivity"),
    (["skellam", 0.1, 1, 1.0, 1.0, float("inf")], "l1_sensitivity"),
])
def test_from_list_rejects_garbage_naming_the_field(raw, field):
    with pytest.raises(ValueError, match=field):
        SkellamRelease.from_list(raw)
