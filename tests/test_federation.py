import numpy as np
import pytest
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

from fedsynth.common.data.encoding import CountsLayout
from fedsynth.common.dp.accounting import noisy_counts, rows_from_counts
from fedsynth.common.protocol.federation import FederationPlan, pack_update, refusal_update
from fedsynth.server.aggregate import aligned_server_lr, squared_norm, unpack_aggregate
from fedsynth.server.aggregate_guard import aggregate_problem
from fedsynth.server.round import next_global
from fedsynth.server.strategy import SecureDeltaFedAvg


def test_pack_unpack_is_exact_within_bounds():
    plan = FederationPlan(update_scale=4.0, update_clip_norm=100.0)
    old = [np.zeros((3, 2), np.float32), np.zeros(4, np.float32)]
    new = [np.full((3, 2), 0.25, np.float32), np.array([-0.5, 0, 0.5, 1], np.float32)]
    freqs = [np.array([0.2, 0.8]), np.array([0.5, 0.25, 0.25])]
    packed, norm_clipped = pack_update(old, new, freqs, plan, clipping_range=8.0)
    assert norm_clipped is False
    assert all(np.all(np.abs(p) <= 8.0) for p in packed)
    agg = unpack_aggregate(packed, plan, CountsLayout.unordered([2, 3]))
    np.testing.assert_allclose(agg.deltas[0], 0.25)
    np.testing.assert_allclose(agg.deltas[1], [-0.5, 0, 0.5, 1])
    np.testing.assert_allclose(agg.freqs[0], [0.2, 0.8], atol=1e-6)
    assert agg.mean_sq_norm == pytest.approx(6 * 0.25**2 + 0.25 + 0.25 + 1, rel=1e-5)  # ||delta||^2 = 1.875
    assert agg.weight == 1.0


def test_update_norm_bounds_a_clients_influence():
    plan = FederationPlan(update_scale=1.0, update_clip_norm=1.0)
    packed, norm_clipped = pack_update([np.zeros(4, np.float32)], [np.full(4, 3.0, np.float32)], [], plan, 8.0)
    assert norm_clipped is True
    assert np.linalg.norm(packed[0]) == pytest.approx(1.0, rel=1e-5)


def _result(arrays, n=1):
    return FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrays), n, {"epsilon_spent": 0.5})


class _Proxy:
    def __init__(self, cid):
        self.cid = cid


@pytest.mark.parametrize("server_lr, expected", [(None, 2 * 0.1), (1.0, 0.1)])
def test_strategy_steps_by_server_lr_times_mean(server_lr, expected):
    plan = FederationPlan(update_scale=4.0, server_lr=server_lr)
    strat = SecureDeltaFedAvg(plan, [np.zeros(3, np.float32)], CountsLayout.unordered([2]), total_clients=2, clipping_range=8.0)
    # what SecAgg+ hands over: mean delta 0.1 per element (||mean||^2 = 0.03) while the clients'
    # deltas had mean squared norm 0.06 (they half disagreed): the aligned step is 2 = K
    slot = 0.06 / plan.update_clip_norm**2
    mean = [np.full(3, 0.1 * 4.0, np.float32), np.array([0.5, 0.5, slot, 1.0, 1.0])]
    params, metrics = strat.aggregate_fit(1, [(_Proxy("1"), _result(mean)), (_Proxy("2"), _result(mean))], [])
    assert metrics == {"contributors": 2}
    assert strat.last_round["server_lr"] == pytest.approx(expected / 0.1, rel=1e-3)
    np.testing.assert_allclose(strat.current[0], expected, rtol=1e-3)
    np.testing.assert_allclose(strat.freqs[0], [0.5, 0.5])


def test_strategy_rejects_non_finite_and_wrong_shape():
    plan = FederationPlan()
    strat = SecureDeltaFedAvg(plan, [np.zeros(3, np.float32)], CountsLayout.unordered([2]), 2, 8.0)
    bad = [np.array([np.nan, 0, 0], np.float32), np.array([0.5, 0.5, 0.0, 1.0, 1.0])]
    with pytest.raises(ValueError, match="non-finite"):
        strat.aggregate_fit(1, [(_Proxy("1"), _result(bad))], [])
    np.testing.assert_array_equal(strat.current[0], 0.0)
    with pytest.raises(ValueError, match="arrays"):
        strat.aggregate_fit(1, [(_Proxy("1"), _result([np.zeros(3, np.float32)]))], [])


def test_refusals_contribute_nothing():
    strat = SecureDeltaFedAvg(FederationPlan(), [np.zeros(3, np.float32)], CountsLayout.unordered([2]), 2, 8.0)
    assert strat.aggregate_fit(1, [(_Proxy("1"), _result([np.zeros(3), np.zeros(3)], n=0))], []) == (None, {})


def test_aggregate_is_the_row_weighted_mean():
    """Two clients, deltas 0.5 and 1.5, weights 0.1 and 0.3: the coordinator applies 1.25, not 1."""
    plan = FederationPlan(update_scale=4.0, update_clip_norm=100.0, weight_cap_rows=10_000, server_lr=1.0)
    old = [np.zeros(4, np.float32)]
    a, _ = pack_update(old, [np.full(4, 0.5, np.float32)], [np.array([1.0, 0.0])], plan, 8.0,
                       weight=plan.client_weight(1_000))
    b, _ = pack_update(old, [np.full(4, 1.5, np.float32)], [np.array([0.0, 1.0])], plan, 8.0,
                       weight=plan.client_weight(3_000))
    mean = [(x + y) / 2 for x, y in zip(a, b)]  # what SecAgg+ unmasks: a plain mean
    assert aggregate_problem(mean, plan, 8.0, CountsLayout.unordered([2])) is None
    agg = unpack_aggregate(mean, plan, CountsLayout.unordered([2]))
    np.testing.assert_allclose(agg.deltas[0], 1.25, rtol=1e-6)
    np.testing.assert_allclose(agg.freqs[0], [0.25, 0.75], atol=1e-6)
    assert agg.mean_sq_norm == pytest.approx((0.1 * 4 * 0.25 + 0.3 * 4 * 2.25) / 0.4, rel=1e-5)
    equal = FederationPlan(update_scale=4.0, update_clip_norm=100.0, aggregation_weights="equal")
    assert equal.client_weight(1_000) == equal.client_weight(3_000) == 1.0


def test_client_weight_is_capped_and_never_zero():
    plan = FederationPlan(weight_cap_rows=5_000)
    assert plan.client_weight(50_000) == 1.0  # a big (or lying) institution counts as cap rows at most
    assert plan.client_weight(-40.0) == pytest.approx(1 / 5_000)  # noise can push a tiny estimate below 0
    assert plan.client_weight(None) == 1.0
    with pytest.raises(ValueError, match="aggregation_weights"):
        FederationPlan(aggregation_weights="median")


def test_row_estimate_from_the_released_counts_is_close_and_noisy():
    rng = np.random.default_rng(0)
    rows = 3_000
    blocks = [np.eye(k)[rng.integers(0, k, rows)] for k in (2, 5, 9, 16)]
    estimates = [rows_from_counts(noisy_counts(blocks, sigma=10.0)) for _ in range(30)]
    assert abs(np.mean(estimates) - rows) < 15  # unbiased: each block total is rows + noise
    assert np.std(estimates) > 1.0  # noise really is added (the release is DP, not exact)
    assert rows_from_counts([]) is None


def test_guard_rejects_weights_no_honest_client_sends():
    plan = FederationPlan(weight_cap_rows=10_000)
    delta = [np.zeros(3, np.float32)]
    assert aggregate_problem(delta + [np.array([0.25, 0.25, 0.1, 0.3, 0.5])], plan, 8.0, CountsLayout.unordered([2])) is None
    assert "weight" in aggregate_problem(delta + [np.array([0.5, 0.5, 0.0, 1.0, 1.7])], plan, 8.0, CountsLayout.unordered([2]))
    assert "weight" in aggregate_problem(delta + [np.array([0.0, 0.0, 0.0, 0.0, 0.0])], plan, 8.0, CountsLayout.unordered([2]))
    assert "sum to" in aggregate_problem(delta + [np.array([0.5, 0.9, 0.0, 0.3, 0.5])], plan, 8.0, CountsLayout.unordered([2]))
    assert "negative" in aggregate_problem(delta + [np.array([-0.5, 1.0, 0.0, 0.3, 0.5])], plan, 8.0, CountsLayout.unordered([2]))
    assert "squared-norm" in aggregate_problem(delta + [np.array([0.25, 0.25, 0.6, 0.3, 0.5])], plan, 8.0, CountsLayout.unordered([2]))
    assert "squared-norm" in aggregate_problem(delta + [np.array([0.25, 0.25, -0.1, 0.3, 0.5])], plan, 8.0, CountsLayout.unordered([2]))
    # mean weight 0.5: honest squared weights average between 0.25 (all equal) and 0.5
    assert "squared weight" in aggregate_problem(delta + [np.array([0.25, 0.25, 0.1, 0.2, 0.5])], plan, 8.0, CountsLayout.unordered([2]))
    assert "squared weight" in aggregate_problem(delta + [np.array([0.25, 0.25, 0.1, 0.6, 0.5])], plan, 8.0, CountsLayout.unordered([2]))
    refused = refusal_update([np.ones(3)], 2)
    assert [r.shape for r in refused] == [(3,), (5,)] and not any(r.any() for r in refused)


def _packed_round(deltas: list[np.ndarray], plan: FederationPlan, weights=None) -> list[np.ndarray]:
    """The plain mean of the clients' packed updates: what SecAgg+ would unmask."""
    old = [np.zeros_like(deltas[0])]
    weights = weights or [1.0] * len(deltas)
    packed = [pack_update(old, [d], [np.array([0.5, 0.5])], plan, 8.0, weight=w)[0] for d, w in zip(deltas, weights)]
    return [np.mean([p[j].astype(np.float64) for p in packed], axis=0) for j in range(2)]


def test_server_step_is_one_when_clients_agree_and_the_sum_when_they_are_noise():
    plan = FederationPlan(update_scale=4.0, update_clip_norm=100.0)
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 0.05, 400).astype(np.float32)
    agree = unpack_aggregate(_packed_round([shared] * 5, plan), plan, CountsLayout.unordered([2]))
    assert aligned_server_lr(agree, 5) == pytest.approx(1.0, abs=1e-3)
    noise = unpack_aggregate(_packed_round([rng.normal(0, 0.05, 400).astype(np.float32) for _ in range(5)], plan),
                             plan, CountsLayout.unordered([2]))
    assert 4.0 < aligned_server_lr(noise, 5) <= 5.0  # ~K for independent deltas (the old "sum" rule)
    mixed = unpack_aggregate(_packed_round([shared + rng.normal(0, 0.05, 400).astype(np.float32) for _ in range(5)],
                                           plan), plan, CountsLayout.unordered([2]))
    assert 1.4 < aligned_server_lr(mixed, 5) < 2.2  # half signal, half noise: (1 + 1) / (1 + 1/5) = 1.67
    # unequal row weights: independent noise still gets the sum (K), agreement about one mean step
    weights = [0.2, 0.4, 0.6, 0.8, 1.0]
    noisy = unpack_aggregate(_packed_round([rng.normal(0, 0.05, 400).astype(np.float32) for _ in range(5)], plan,
                                           weights), plan, CountsLayout.unordered([2]))
    assert 4.0 < aligned_server_lr(noisy, 5) <= 5.0
    agreed = unpack_aggregate(_packed_round([shared] * 5, plan, weights), plan, CountsLayout.unordered([2]))
    assert aligned_server_lr(agreed, 5) == pytest.approx(np.mean(np.square(weights)) / np.mean(weights) ** 2, rel=1e-3)
    # the step is bounded whatever the slot claims (a lying client moves it within [1, K] only)
    agree.mean_sq_norm = 1e9
    assert aligned_server_lr(agree, 5) == 5.0
    agree.mean_sq_norm = 0.0
    assert aligned_server_lr(agree, 5) == 5.0


@pytest.mark.parametrize("k", [2, 5, 10])
def test_the_step_is_at_most_sqrt_k_clip_norms_and_an_honest_equal_weight_round_is_never_shortened(k):
    """Full-norm honest deltas from independent to identical: the aligned step is taken as is
    and stays within sqrt(K) x update_clip_norm. The old fixed sum (server_lr = K) on agreeing
    deltas would move the model K clip norms; it is cut to the bound."""
    plan = FederationPlan(update_scale=4.0)
    rng = np.random.default_rng(k)
    d = 2000
    shared = rng.normal(0, 1, d)
    bound = np.sqrt(k) * plan.update_clip_norm

    def full_norm(agreement):  # norm 60 before pack_update clips it to 50
        v = agreement * shared + np.sqrt(1 - agreement**2) * rng.normal(0, 1, d)
        return (v * 60 / np.linalg.norm(v)).astype(np.float32)

    def step(mean, plan):
        moved, _, lr = next_global([np.zeros(d, np.float32)], mean, plan, CountsLayout.unordered([2]), k)
        return float(np.sqrt(squared_norm(moved))), lr

    for agreement in (0.0, 0.3, 0.7, 1.0):
        mean = _packed_round([full_norm(agreement) for _ in range(k)], plan)
        moved, lr = step(mean, plan)
        assert lr == pytest.approx(aligned_server_lr(unpack_aggregate(mean, plan, CountsLayout.unordered([2])), k), rel=1e-6)
        assert moved <= bound * (1 + 1e-6)
    fixed_sum = FederationPlan(update_scale=4.0, server_lr=float(k))
    agreed = _packed_round([full_norm(1.0)] * k, fixed_sum)
    mean_norm = np.sqrt(squared_norm(unpack_aggregate(agreed, fixed_sum, CountsLayout.unordered([2])).deltas))
    assert k * mean_norm > 1.3 * bound
    moved, lr = step(agreed, fixed_sum)
    assert moved == pytest.approx(bound, rel=1e-4)
    assert lr == pytest.approx(bound / mean_norm, rel=1e-4)


def test_federated_runs_default_to_a_narrower_vae_and_config_can_override_it(tmp_path):
    from fedsynth.common.protocol.federation import FEDERATED_VAE_HIDDEN, federated_model_config
    from fedsynth.common.model.tabular import ModelConfig
    from fedsynth.server.deployment_config import load_deployment_config

    assert FederationPlan().model.hidden == FEDERATED_VAE_HIDDEN < ModelConfig().hidden
    assert FederationPlan.from_json(FederationPlan().to_json()).model.hidden == FEDERATED_VAE_HIDDEN
    assert federated_model_config("gan").hidden == ModelConfig().hidden  # measured for the VAE only
    default = tmp_path / "default.toml"
    default.write_text('[plan]\nrounds = 2\n[plan.model]\nmodel = "vae"\n')
    assert load_deployment_config(default).plan.model.hidden == FEDERATED_VAE_HIDDEN
    wide = tmp_path / "wide.toml"
    wide.write_text('[plan]\nrounds = 2\n[plan.model]\nhidden = 64\n')
    assert load_deployment_config(wide).plan.model.hidden == 64


def test_a_coordinator_config_fits_marginals_by_default_with_shared_noise_only(tmp_path):
    """Without [plan.marginal_fit] a local-noise plan runs no fit (institutions keep no budget for
    it) and a shared-noise plan fits SHARED_PAIRS, as simulate does; the table turns it on with
    MarginalFitConfig's defaults for what it leaves out (SHARED_PAIRS under shared noise), or off with
    pairs = 0; a misspelt key is named."""
    from fedsynth.common.errors import FedsynthError
    from fedsynth.common.model.marginal_fit import MarginalFitConfig
    from fedsynth.server.deployment_config import load_deployment_config
    from fedsynth.server.shared_plan import SHARED_PAIRS

    plain = tmp_path / "plain.toml"
    plain.write_text("[plan]\nrounds = 2\n")
    assert load_deployment_config(plain).plan.marginal_fit.pairs == 0
    shared = tmp_path / "shared.toml"
    shared.write_text("[plan]\nrounds = 2\n[plan.shared_noise]\nsample_rate = 0.2\nnoise_multiplier = 1.0\n")
    assert load_deployment_config(shared).plan.marginal_fit.pairs == SHARED_PAIRS
    shared.write_text("[plan]\nrounds = 2\n[plan.marginal_fit]\npairs = 0\n[plan.shared_noise]\nsample_rate = 0.2\n"
                      "noise_multiplier = 1.0\n")
    assert load_deployment_config(shared).plan.marginal_fit.pairs == 0
    asked = tmp_path / "asked.toml"
    asked.write_text("[plan]\nrounds = 2\n[plan.marginal_fit]\nsteps = 200\n")
    fit = load_deployment_config(asked).plan.marginal_fit
    assert (fit.pairs, fit.steps) == (MarginalFitConfig().pairs, 200)
    # with shared noise a table that leaves the pairs out gets the federation's count, as simulate does
    asked.write_text("[plan]\nrounds = 2\n[plan.marginal_fit]\nsteps = 200\n[plan.shared_noise]\nsample_rate = 0.2\n"
                     "noise_multiplier = 1.0\n")
    fit = load_deployment_config(asked).plan.marginal_fit
    assert (fit.pairs, fit.steps) == (SHARED_PAIRS, 200)
    assert SHARED_PAIRS != MarginalFitConfig().pairs  # else the line above could not tell the two apart
    typo = tmp_path / "typo.toml"
    typo.write_text("[plan]\nrounds = 2\n[plan.marginal_fit]\nstepz = 200\n")
    with pytest.raises(FedsynthError, match=r"typo.toml.*stepz.*\[plan.marginal_fit\]"):
        load_deployment_config(typo)
