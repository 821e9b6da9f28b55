"""One-run canary audit of the shared-noise step (Steinke, Nasr & Jagielski 2023, Theorem 3.1):
the bound itself, the real client step (bound below the claim) and a build that draws 10x too
little noise per share (bound above the claim)."""

import math
from itertools import pairwise

import numpy as np
import pytest

from fedsynth.common.dp import shared_step
from fedsynth.common.dp.integer_noise import skellam_noise
from fedsynth.common.dp.shared_noise import SharedNoise
from fedsynth.common.protocol.federation import pack_shared_update, shared_sums
from fedsynth.evaluation.dp_audit import audit_shared_noise, epsilon_lower_bound
from fedsynth.server.shared_round import unpack_shared_sum

CANARIES, GUESSES = 2000, 200
CONFIDENCE = 0.99
DELTA = 1e-5
SIGMA = 2.0  # one step at sample rate 1: the accountant claims about 2.17 (coalition view)


def audit(shared):
    return audit_shared_noise(shared, CANARIES, GUESSES, delta=DELTA, confidence=CONFIDENCE)


def test_all_guesses_right_gives_a_finite_bound_that_grows_with_the_guesses():
    bounds = [epsilon_lower_bound(1000, r, r, DELTA, CONFIDENCE) for r in (25, 50, 100, 200)]
    assert all(0 < b < 20 for b in bounds)
    assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds)


def test_without_delta_all_right_matches_randomized_response_in_closed_form():
    """delta = 0: P[Bin(r, q) = r] = q^r = 1 - confidence at q = e^eps / (1 + e^eps)."""
    q = (1 - CONFIDENCE) ** (1 / 100)
    assert epsilon_lower_bound(1000, 100, 100, 0.0, CONFIDENCE) == pytest.approx(math.log(q / (1 - q)), abs=1e-6)
    # the delta term only ever weakens what a run proves
    assert epsilon_lower_bound(1000, 100, 100, DELTA, CONFIDENCE) < math.log(q / (1 - q))


def test_half_right_proves_nothing_and_the_bound_is_monotone_in_correct_guesses():
    assert epsilon_lower_bound(1000, 100, 50, DELTA, CONFIDENCE) == 0.0
    assert epsilon_lower_bound(1000, 100, 60, DELTA, CONFIDENCE) == 0.0  # within chance at 99%
    bounds = [epsilon_lower_bound(1000, 100, v, DELTA, CONFIDENCE) for v in range(50, 101)]
    assert all(a <= b for a, b in pairwise(bounds))
    assert bounds[-1] > bounds[-2] > bounds[-3] > 0


def test_the_audit_decodes_the_sum_as_the_coordinator_does():
    rng = np.random.default_rng(0)
    grads = [rng.integers(-2**20, 2**20, size=(1, 7)) for _ in range(3)]
    updates = [pack_shared_update([g]) for g in grads]
    mean = [np.mean(np.stack(parts), axis=0) for parts in zip(*updates)]
    audited = shared_sums(mean, 3)[:-1]  # what audit_shared_noise scores
    assert all(np.array_equal(a, b) for a, b in zip(audited, unpack_shared_sum(mean, 3).gradient))
    np.testing.assert_array_equal(audited[0], sum(grads))


def test_the_audit_refuses_a_sampled_step():
    with pytest.raises(ValueError, match="sample_rate"):
        audit_shared_noise(SharedNoise(0.5, SIGMA), CANARIES, GUESSES)


def test_the_real_shared_step_stays_below_its_claim():
    """Theorem 3.1: if the step really is (claim, delta)-DP, the bound exceeds the claim with
    probability at most 1 - CONFIDENCE = 1%, whatever the mechanism. For this one (each canary
    shifts its coordinate by 16/17 / SIGMA = 0.47 noise sd) a Gaussian simulation of 20,000 runs
    gave 146 +- 6.4 correct guesses (max 172); exceeding the claim needs 190, about 7 sd away,
    so the chance of a spurious failure is far below 1e-9."""
    result = audit(SharedNoise(1.0, SIGMA, collusion_tolerance=1, min_contributors=3))
    assert 1.0 < result.claimed_epsilon < 3.0
    assert result.correct > GUESSES * 0.6  # the canaries are visible: the audit is not vacuous
    assert result.consistent and result.epsilon_lower_bound < result.claimed_epsilon


def test_shares_ten_times_too_small_are_caught(monkeypatch):
    """The client draws Sk(mu / 100) (sd 10x too small) while its ledger records mu."""
    shared = SharedNoise(1.0, SIGMA, collusion_tolerance=1, min_contributors=3)
    draws = []

    def weak(mu, size, stream):
        draws.append(mu)
        return skellam_noise(mu / 100, size, stream)

    monkeypatch.setattr(shared_step, "skellam_noise", weak)
    result = audit(shared)
    assert len(draws) == shared.honest_shares  # the real client step drew every share through the patch
    assert 1.0 < result.claimed_epsilon < 3.0  # the ledger's claim is unchanged
    assert not result.consistent and result.epsilon_lower_bound > result.claimed_epsilon + 1.0
