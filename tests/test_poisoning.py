"""Bounded influence of a malicious client under SecAgg+ (see fedsynth.server.aggregate_guard)."""

import numpy as np
import pytest

from _loopback import secagg_round
from fedsynth.common.data.encoding import CountsLayout
from fedsynth.common.protocol.federation import FederationPlan, pack_update
from fedsynth.server.aggregate import aligned_server_lr, squared_norm, unpack_aggregate
from fedsynth.server.aggregate_guard import aggregate_problem
from fedsynth.server.round import next_global

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
    assert "weight" in aggregate_problem(mean, plan, CLIP, CountsLayout.unordered([2]))


def test_a_client_inflating_its_norm_slot_is_caught():
    """Squared-norm slot 1e6 (to shrink the server step): clipped to +clip by SecAgg+, and the mean
    slot then exceeds the mean weight, which no honest round produces."""
    plan = FederationPlan()
    ups = {100 + i: honest(plan, 500, i) for i in range(1, 4)}
    ups[104] = [np.zeros(500, np.float32), np.array([0.5, 0.5, 1e6, 1.0, 1.0], np.float32)]
    mean, _ = secagg_round(ups, threshold=0.6)
    assert "squared-norm" in aggregate_problem(mean, plan, CLIP, CountsLayout.unordered([2]))


def test_a_liar_inside_the_guard_moves_the_model_no_further_than_an_honest_round_can():
    """Five institutions of ~300 rows (weight 0.03) with realistic deltas (norm ~6.7, like
    Adult's at epsilon 1). One of them lies inside every range the guard checks: it claims the
    largest weight (1) and a full squared-norm slot and sends +1.1 on every element (a
    full-norm delta). Without the step bound the aligned step reads the weight inequality it
    made as K independent deltas and moves the model ~4.4 clip norms; with it the model moves
    at most sqrt(K) clip norms, the longest step an honest equal-weight round of K can take."""
    plan = FederationPlan()
    d, k = 2000, 5
    small = plan.client_weight(300)
    assert small == pytest.approx(0.03)

    def institution(seed):
        rng = np.random.default_rng(seed)
        new = [rng.normal(0, 0.15, d).astype(np.float32)]
        return pack_update([np.zeros(d, np.float32)], new, [np.array([0.5, 0.5])], plan, CLIP, weight=small)[0]

    def round_step(ups):
        mean, _ = secagg_round(ups, threshold=0.6)
        assert aggregate_problem(mean, plan, CLIP, CountsLayout.unordered([2])) is None  # inside every bound the guard checks
        update = unpack_aggregate(mean, plan, CountsLayout.unordered([2]))
        unbounded = aligned_server_lr(update, k) * np.sqrt(squared_norm(update.deltas))
        moved, _, _ = next_global([np.zeros(d, np.float32)], mean, plan, CountsLayout.unordered([2]), k)
        return float(np.linalg.norm(moved[0])), unbounded

    honest = {100 + i: institution(i) for i in range(1, k + 1)}
    liar = [np.full(d, 1.1 * plan.update_scale, np.float32),  # delta 1.1 per element: norm 49.2
            np.array([0.5, 0.5, 1.0, 1.0, 1.0], np.float32)]  # frequencies, norm slot 1, weight^2 1, weight 1
    bound = np.sqrt(k) * plan.update_clip_norm

    honest_step, honest_unbounded = round_step(honest)
    assert honest_step == pytest.approx(honest_unbounded, rel=1e-4)  # an honest round is not shortened
    assert honest_step < bound / 4
    attacked_step, attacked_unbounded = round_step({**honest, 100 + k: liar})
    assert attacked_unbounded > 4 * plan.update_clip_norm  # the attack: K x ~0.9 of a full-norm delta
    assert attacked_unbounded > 10 * honest_step
    assert attacked_step <= bound * (1 + 1e-6)
