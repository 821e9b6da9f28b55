import numpy as np
import pytest
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

from fedsynth.common.federation import FederationPlan, pack_update, unpack_aggregate
from fedsynth.server.strategy import SecureDeltaFedAvg


def test_pack_unpack_is_exact_within_bounds():
    plan = FederationPlan(update_scale=4.0, update_clip_norm=100.0)
    old = [np.zeros((3, 2), np.float32), np.zeros(4, np.float32)]
    new = [np.full((3, 2), 0.25, np.float32), np.array([-0.5, 0, 0.5, 1], np.float32)]
    freqs = [np.array([0.2, 0.8]), np.array([0.5, 0.25, 0.25])]
    packed, stats = pack_update(old, new, freqs, plan, clipping_range=8.0)
    assert stats["norm_clipped"] == 0.0
    assert all(np.all(np.abs(p) <= 8.0) for p in packed)
    deltas, f = unpack_aggregate(packed, plan, [2, 3])
    np.testing.assert_allclose(deltas[0], 0.25)
    np.testing.assert_allclose(deltas[1], [-0.5, 0, 0.5, 1])
    np.testing.assert_allclose(f[0], [0.2, 0.8], atol=1e-6)


def test_update_norm_bounds_a_clients_influence():
    plan = FederationPlan(update_scale=1.0, update_clip_norm=1.0)
    packed, stats = pack_update([np.zeros(4, np.float32)], [np.full(4, 3.0, np.float32)], [], plan, 8.0)
    assert stats["norm_clipped"] == 1.0
    assert np.linalg.norm(packed[0]) == pytest.approx(1.0, rel=1e-5)


def _result(arrays, n=1):
    return FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrays), n, {"epsilon_spent": 0.5})


class _Proxy:
    def __init__(self, cid):
        self.cid = cid


@pytest.mark.parametrize("server_lr, expected", [(None, 2 * 0.1), (1.0, 0.1)])
def test_strategy_steps_by_server_lr_times_mean(server_lr, expected):
    plan = FederationPlan(update_scale=4.0, server_lr=server_lr)
    strat = SecureDeltaFedAvg(plan, [np.zeros(3, np.float32)], [2], total_clients=2, clipping_range=8.0)
    mean = [np.full(3, 0.1 * 4.0, np.float32), np.array([0.5, 0.5])]  # what SecAgg+ hands over
    params, metrics = strat.aggregate_fit(1, [(_Proxy("1"), _result(mean)), (_Proxy("2"), _result(mean))], [])
    assert metrics == {"contributors": 2}
    np.testing.assert_allclose(strat.current[0], expected, rtol=1e-6)
    np.testing.assert_allclose(strat.freqs[0], [0.5, 0.5])


def test_strategy_rejects_non_finite_and_wrong_shape():
    plan = FederationPlan()
    strat = SecureDeltaFedAvg(plan, [np.zeros(3, np.float32)], [2], 2, 8.0)
    bad = [np.array([np.nan, 0, 0], np.float32), np.array([0.5, 0.5])]
    with pytest.raises(ValueError, match="non-finite"):
        strat.aggregate_fit(1, [(_Proxy("1"), _result(bad))], [])
    np.testing.assert_array_equal(strat.current[0], 0.0)
    with pytest.raises(ValueError, match="arrays"):
        strat.aggregate_fit(1, [(_Proxy("1"), _result([np.zeros(3, np.float32)]))], [])


def test_refusals_contribute_nothing():
    strat = SecureDeltaFedAvg(FederationPlan(), [np.zeros(3, np.float32)], [2], 2, 8.0)
    assert strat.aggregate_fit(1, [(_Proxy("1"), _result([np.zeros(3), np.zeros(2)], n=0))], []) == (None, {})
