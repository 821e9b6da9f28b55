import math
import warnings

import pytest
from opacus.accountants import PRVAccountant, RDPAccountant

from fedsynth.common.errors import PrivacyError
from fedsynth.common.dp.accounting import (FREQUENCY_SHARE, MIN_FREQUENCY_NOISE, RDP_ORDERS, calibrate_noise,
                                           check_privacy_params, epsilon_spent, frequency_noise,
                                           gaussian_counts_release)


def test_epsilon_is_opacus_rdp_over_all_steps():
    history = [(1.1, 0.01, 300), (2.0, 0.05, 100), gaussian_counts_release(10.0)]
    acc = RDPAccountant()
    for sigma, q, steps in history:
        for _ in range(steps):
            acc.step(noise_multiplier=sigma, sample_rate=q)
    assert epsilon_spent(history, 1e-5) == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)


def test_remembered_step_curves_give_opacus_rdp_exactly():
    """A ledger's repeated rounds and a calibration's repeated prior are accounted from remembered
    one-step curves (fedsynth.common.dp.gaussian_rdp): the epsilon of Opacus' accountant over the
    whole history at fedsynth's orders, the first time and from memory."""
    history = [(1.3, 0.05, 7)] * 40 + [gaussian_counts_release(10.0), (0.9, 0.2, 3)]
    acc = RDPAccountant()
    acc.history = list(history)
    expected = acc.get_epsilon(1e-5, alphas=RDP_ORDERS)
    assert epsilon_spent(history, 1e-5) == pytest.approx(expected, rel=1e-12)
    assert epsilon_spent(history, 1e-5) == pytest.approx(expected, rel=1e-12)
    assert epsilon_spent(history[:-1], 1e-5) < expected


def test_prv_accountant_matches_opacus():
    history = [(1.5, 0.02, 200)]
    acc = PRVAccountant()
    acc.history = list(history)
    assert epsilon_spent(history, 1e-5, "prv") == pytest.approx(acc.get_epsilon(1e-5), rel=1e-6)


@pytest.mark.parametrize("target, q, steps", [(1.0, 0.08, 380), (0.5, 0.01, 2000), (3.0, 0.2, 50), (10.0, 0.05, 500)])
def test_calibration_lands_on_target_from_below(target, q, steps):
    cal = calibrate_noise(target, 1e-5, q, steps)
    eps = epsilon_spent([(cal.noise_multiplier, q, steps)], 1e-5)
    assert eps == pytest.approx(cal.epsilon)
    assert eps <= target
    assert target - eps <= 0.005 + 1e-9


def test_calibration_probes_print_no_warning_and_keep_opacus_conversion():
    """The probes of little noise put the best order at the smallest one, where Opacus warns; the
    conversion is Opacus' own, without printing that to the user."""
    from opacus.accountants.analysis.rdp import get_privacy_spent

    from fedsynth.common.dp.gaussian_rdp import gaussian_rdp
    from fedsynth.common.dp.rdp_epsilon import rdp_epsilon

    rdp = gaussian_rdp(1.0, 1.0, 2000, RDP_ORDERS)  # the calibration's first probe: order 1.1 is the best
    with warnings.catch_warnings(record=True) as opacus_said:
        warnings.simplefilter("always")
        opacus_eps = get_privacy_spent(orders=RDP_ORDERS, rdp=rdp, delta=1e-5)[0]
    assert any("smallest alpha" in str(w.message) for w in opacus_said)
    with warnings.catch_warnings(record=True) as we_said:
        warnings.simplefilter("always")
        assert rdp_epsilon(RDP_ORDERS, rdp, 1e-5) == opacus_eps
        calibrate_noise(1.0, 1e-5, 1.0, 2000)  # probes sigma 1, 2, 4, ... from below
    assert not [str(w.message) for w in we_said]


def test_calibration_counts_prior_spend():
    prior = [(5.0, 0.05, 200)]
    cal = calibrate_noise(1.0, 1e-5, 0.05, 200, prior=prior)
    assert epsilon_spent(prior + [(cal.noise_multiplier, 0.05, 200)], 1e-5) <= 1.0
    alone = calibrate_noise(1.0, 1e-5, 0.05, 200)
    assert cal.noise_multiplier > alone.noise_multiplier


@pytest.mark.parametrize("eps", [0.3, 0.5, 1.0, 2.0, 3.0, 8.0])
def test_frequency_release_noise_follows_the_budget(eps):
    """The one-off release never costs more than its share of the budget; its noise holds the floor
    up to epsilon 1 and falls as 1/sqrt(epsilon) above it, so a larger budget buys better counts too."""
    sigma = frequency_noise(eps, 1e-5)
    assert epsilon_spent([gaussian_counts_release(sigma)], 1e-5) <= FREQUENCY_SHARE * eps + 1e-9
    floor = MIN_FREQUENCY_NOISE / math.sqrt(max(1.0, eps))
    assert sigma >= floor - 1e-12
    share_rule = calibrate_noise(FREQUENCY_SHARE * eps, 1e-5, 1.0, 1).noise_multiplier
    assert sigma == pytest.approx(max(floor, share_rule))
    if eps > 1:
        assert sigma < frequency_noise(1.0, 1e-5)


def test_calibration_refuses_when_budget_gone():
    with pytest.raises(PrivacyError, match="already spent"):
        calibrate_noise(0.1, 1e-5, 0.05, 10, prior=[(0.5, 1.0, 50)])


@pytest.mark.parametrize("eps, delta, n, message", [
    (0, 1e-5, None, "epsilon must be"),
    (-1, 1e-5, None, "epsilon must be"),
    (math.inf, 1e-5, None, "epsilon must be"),
    (1, 0, None, "delta must be"),
    (1, 1, None, "delta must be"),
    (1, 1e-3, 1000, "not below 1/n"),
    (1, 1e-5, 0, "no rows"),
])
def test_impossible_settings_refused(eps, delta, n, message):
    with pytest.raises(PrivacyError, match=message):
        check_privacy_params(eps, delta, n)
