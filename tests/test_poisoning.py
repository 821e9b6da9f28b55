"""Bounded influence of a malicious client under SecAgg+ (see fedsynth.server.aggregate_guard)."""

import numpy as np
import pytest

from _loopback import secagg_round
from fedsynth.common.federation import FederationPlan, pack_update
from fedsynth.server.aggregate_guard import aggregate_problem

CLIP = 8.0


def honest(plan, d, seed):
    rng = np.random.default_rng(seed)
    old = [np.zeros(d, np.float32)]
    new = [rng.normal(0, 5.0, d).astype(np.float32)]  # a big step: pack_update norm-clips it
    packed, _ = pack_update(old, new, [np.array([0.5, 0.5])], plan, CLIP)
    return packed


def test_guard_accepts_honest_means_and_rejects_what_no_honest_round_produces():
    plan = FederationPlan()
    ups = [honest(plan, 5000, s) for s in range(4)]
    mean = [np.mean([u[i] for u in ups], axis=0) for i in range(2)]
    assert aggregate_problem(mean, plan, CLIP) is None
    assert "non-finite" in aggregate_problem([mean[0] * np.nan, mean[1]], plan, CLIP)
    assert "clipping range" in aggregate_problem([mean[0] + 100.0, mean[1]], plan, CLIP)
    too_long = np.full(20_000, CLIP * 0.9)  # every element legal, the norm is not
    assert "L2 norm" in aggregate_problem([too_long, mean[1]], plan, CLIP)


@pytest.mark.parametrize("d, rejected", [(2000, False), (20_000, True)])
def test_a_client_that_skips_pack_update_is_clipped_by_secagg_and_bounded_by_the_guard(d, rejected):
    """Client 104 sends 1e6 everywhere. SecAgg+ clips it to +-clip per element; the guard bounds the norm."""
    plan = FederationPlan()
    ups = {100 + i: honest(plan, d, i) for i in range(1, 4)}
    # huge delta, frequencies left honest and the largest weight an honest client may send (1)
    ups[104] = [np.full(d, 1e6, np.float32), np.array([0.5, 0.5, 1.0, 1.0, 1.0], np.float32)]
    mean, _ = secagg_round(ups, threshold=0.6)
    assert np.all(np.abs(mean[0]) <= CLIP + 1e-3)  # element-clipped inside SecAgg+ quantisation
    problem = aggregate_problem(mean, plan, CLIP)
    assert (problem is not None) == rejected
    if not rejected:
        # what the coordinator applies: server_lr (at most K contributors) x mean / update_scale
        step = 4 * np.linalg.norm(mean[0]) / plan.update_scale
        assert step <= 4 * plan.update_clip_norm
        honest_only = np.mean([ups[n][0] for n in (101, 102, 103)], axis=0) * 3 / 4
        influence = np.linalg.norm(mean[0] - honest_only) * 4 / plan.update_scale  # the attacker's share
        assert influence <= CLIP * np.sqrt(d) / plan.update_scale + 1e-3  # at most +-clip per element


def test_a_client_claiming_more_than_the_largest_weight_is_caught():
    """Weight slot 1e6: SecAgg+ clips it to +clip, and the mean weight exceeds what honest clients send."""
    plan = FederationPlan()
    ups = {100 + i: honest(plan, 500, i) for i in range(1, 4)}
    ups[104] = [np.zeros(500, np.float32), np.array([0.5, 0.5, 0.0, 1.0, 1e6], np.float32)]
    mean, _ = secagg_round(ups, threshold=0.6)
    assert "weight" in aggregate_problem(mean, plan, CLIP, [2])


def test_a_client_inflating_its_norm_slot_is_caught():
    """Squared-norm slot 1e6 (to shrink the server step): clipped to +clip by SecAgg+, and the mean
    slot then exceeds the mean weight, which no honest round produces."""
    plan = FederationPlan()
    ups = {100 + i: honest(plan, 500, i) for i in range(1, 4)}
    ups[104] = [np.zeros(500, np.float32), np.array([0.5, 0.5, 1e6, 1.0, 1.0], np.float32)]
    mean, _ = secagg_round(ups, threshold=0.6)
    assert "squared-norm" in aggregate_problem(mean, plan, CLIP, [2])
