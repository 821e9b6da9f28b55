"""Shared noise's pooled counts: each institution adds a Skellam share to its exact counts, the
coordinator learns the pooled counts with the noise of one release, and every share is charged
on disk (both trust views) before it leaves."""

import math
from dataclasses import replace

import numpy as np
import pytest

from fedsynth.client.app import ClientSettings, Institution
from fedsynth.client.marginal_release import exact_values
from fedsynth.client.pooled_counts import noisy_share
from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.data.tables import write_table
from fedsynth.common.digest import arrays_digest
from fedsynth.common.dp.accounting import (block_totals, epsilon_spent, frequencies_from_counts,
                                           gaussian_counts_release)
from fedsynth.common.dp.rng import ChaChaStream
from fedsynth.common.dp.shared_noise import ALONE, SharedNoise, SharedNoiseRelease, shared_counts_release
from fedsynth.common.errors import BudgetExhausted, FedsynthError, PrivacyError
from fedsynth.common.model.marginal_fit import MarginalFitConfig, all_pairs, column_segments, shared_planned_releases
from fedsynth.common.model.tabular import ModelConfig, build_model
from fedsynth.common.protocol.federation import FIELD_CLIPPING_RANGE, FederationPlan, model_arrays
from fedsynth.common.protocol.marginal_stage import StageSum, read_stage_sum, stage_length
from fedsynth.common.protocol.messages import FitConfig, Stage
from fedsynth.server.marginal_rounds import pooled_errors
from fedsynth.server.round import RoundRejected
from fedsynth.server.shared_plan import SharedNoiseRequest
from fedsynth.server.shared_round import pooled_counts, run_bin_edges

COUNTS_NOISE = 4.0


def shared_plan(schema, k_min=3, t=1):
    return FederationPlan(rounds=3, model=ModelConfig(hidden=16), schema_hash=schema.hash(), min_clients=k_min,
                          shared_noise=SharedNoise(sample_rate=0.05, noise_multiplier=1.2, collusion_tolerance=t,
                                                   min_contributors=k_min, counts_noise=COUNTS_NOISE))


def ask(plan, clients=3):
    return FitConfig(plan, 0, clients, FIELD_CLIPPING_RANGE, 0, Stage.POOLED_COUNTS)


@pytest.fixture()
def silos(tmp_path, adult, adult_schema):
    return [adult.sample(600, random_state=i).reset_index(drop=True) for i in range(3)]


@pytest.fixture()
def institutions(tmp_path, silos, adult_paths, adult_schema):
    out = []
    for i, silo in enumerate(silos):
        path = tmp_path / f"silo-{i}.csv"
        write_table(silo, path, schema=adult_schema)
        out.append(Institution(ClientSettings(data=str(path), schema=str(adult_paths[1]),
                                              state_dir=str(tmp_path / f"state-{i}"), epsilon=3.0, delta=1e-5,
                                              init_ledger=True)))
    return out


def summed(institutions, plan, encoder):
    """The coordinator's view: SecAgg+'s mean of the packed shares, decoded."""
    packed = [inst.pooled_counts_release(ask(plan))[0][0] for inst in institutions]
    length = stage_length(Stage.POOLED_COUNTS, [], (), 0, encoder.count_sizes)
    return read_stage_sum([np.mean(packed, axis=0)], len(packed), length)


def exact_pooled(silos, encoder):
    return sum(np.concatenate(block_totals(encoder.count_blocks(s, encoder.encode(s)))) for s in silos)


def test_the_coordinator_learns_the_pooled_counts_charged_before_they_leave(institutions, silos, adult_schema):
    plan = shared_plan(adult_schema)
    encoder = TableEncoder(adult_schema)
    total = summed(institutions, plan, encoder)
    blocks = len(encoder.count_sizes)
    # the noise slot reads the pooled release's: K shares of sigma^2 / (K_min - T) each
    assert total.noise_multiplier == pytest.approx(COUNTS_NOISE * math.sqrt(3 / 2), rel=1e-3)
    residual = total.values - exact_pooled(silos, encoder)
    target = 3 * COUNTS_NOISE**2 * blocks / 2  # K shares, each (sigma * sqrt(B))^2 / (K_min - T)
    assert 0.5 * target < residual.var() < 1.6 * target  # a share 10x off in scale lands far outside
    pooled = pooled_counts(total, plan, encoder.counts_layout)
    assert pooled.rows == pytest.approx(1800, abs=60)
    assert pooled.contributors == 3 and len(pooled.freqs) == blocks
    for inst in institutions:
        ledger = inst.ledger()
        entries = [h for h in ledger.history if isinstance(h, SharedNoiseRelease)]
        assert entries == [shared_counts_release(COUNTS_NOISE, blocks, 2)]
        assert [e["event"] for e in ledger.events][-1] == Stage.POOLED_COUNTS
        assert ledger.epsilon_alone > ledger.epsilon_spent > 0  # its own share alone is half the noise
        assert not any(isinstance(h, tuple) for h in ledger.history)  # no full-noise counts release of its own


def test_a_share_is_fresh_and_charged_each_time_it_is_asked_for(institutions, adult_schema):
    plan = shared_plan(adult_schema)
    inst = institutions[0]
    first = inst.pooled_counts_release(ask(plan))[0][0]
    spent = inst.ledger().epsilon_spent
    second = inst.pooled_counts_release(ask(plan))[0][0]
    assert not np.array_equal(first, second)  # the same vector twice would let two sums be differenced
    assert inst.ledger().epsilon_spent > spent
    assert len([h for h in inst.ledger().history if isinstance(h, SharedNoiseRelease)]) == 2


def test_the_budget_kept_for_the_share_is_released_once_it_is_made(institutions, adult_schema):
    plan = shared_plan(adult_schema)
    inst = institutions[0]
    pending = inst._pending_releases(plan, inst.ledger())
    assert shared_counts_release(COUNTS_NOISE, len(TableEncoder(adult_schema).count_sizes), 2) in pending
    inst.pooled_counts_release(ask(plan))
    assert not any(isinstance(h, SharedNoiseRelease) for h in inst._pending_releases(plan, inst.ledger()))


def test_a_share_it_cannot_afford_is_refused_before_any_charge(tmp_path, silos, adult_paths, adult_schema):
    path = tmp_path / "silo.csv"
    write_table(silos[0], path, schema=adult_schema)
    inst = Institution(ClientSettings(data=str(path), schema=str(adult_paths[1]), state_dir=str(tmp_path / "s"),
                                      epsilon=0.05, delta=1e-5, init_ledger=True))
    with pytest.raises(BudgetExhausted):
        inst.pooled_counts_release(ask(shared_plan(adult_schema)))
    assert inst.ledger().history == []


def test_a_local_noise_plan_never_gets_a_share(institutions, adult_schema):
    plan = FederationPlan(rounds=3, model=ModelConfig(hidden=16), schema_hash=adult_schema.hash())
    with pytest.raises(FedsynthError, match="local-noise"):
        institutions[0].pooled_counts_release(ask(plan))
    assert institutions[0].ledger().history == []


def test_shares_of_k_min_minus_t_institutions_carry_the_release_noise():
    release = shared_counts_release(COUNTS_NOISE, 9, honest_shares=2)
    stream = ChaChaStream.from_os()
    zeros = [np.zeros(20_000)]
    total = sum(noisy_share(zeros, release, stream) for _ in range(2)).astype(np.float64)
    target = (COUNTS_NOISE * 3.0) ** 2  # sigma * sqrt(9 blocks)
    se = target * np.sqrt(2.0 / total.size)
    assert abs(total.var() - target) < 5 * se
    assert abs(0.81 * target - target) > 5 * se  # a share 10% too small in scale would fail


def test_the_coalition_view_costs_about_the_gaussian_release():
    """Skellam at this noise is close to the Gaussian limit; the share alone costs far more."""
    shared = shared_counts_release(10.0, 14, honest_shares=4)
    gaussian = epsilon_spent([gaussian_counts_release(10.0)], 1e-5)
    assert epsilon_spent([shared], 1e-5) == pytest.approx(gaussian, rel=0.05)
    assert epsilon_spent([shared], 1e-5, view=ALONE) > 1.5 * gaussian


def test_a_sum_below_k_min_or_of_the_wrong_length_is_rejected(adult_schema):
    plan = shared_plan(adult_schema)
    layout = TableEncoder(adult_schema).counts_layout
    with pytest.raises(RoundRejected, match="min_contributors"):
        pooled_counts(StageSum(np.ones(layout.total), 1.0, 2), plan, layout)
    with pytest.raises(RoundRejected, match="expected"):
        pooled_counts(StageSum(np.ones(layout.total - 1), 1.0, 3), plan, layout)


def test_resolve_plans_the_counts_share_and_stays_within_the_budget(adult_schema):
    plan = FederationPlan(rounds=20, model=ModelConfig(hidden=16), schema_hash=adult_schema.hash())
    resolved = SharedNoiseRequest(0.05, epsilon=1.0, min_contributors=3).resolve(plan, adult_schema)
    shared = resolved.shared_noise
    blocks = len(TableEncoder(adult_schema).count_sizes)
    grid = shared.grid(sum(a.size for a in model_arrays(adult_schema, resolved)), resolved.model.max_grad_norm)
    history = [shared.counts_release(blocks), shared.release(grid, resolved.rounds)]
    assert 0.98 <= epsilon_spent(history, 1e-5) <= 1.0


def test_pooled_pair_errors_match_the_local_formula_at_the_pooled_row_count(silos, adult_schema):
    """Institutions project their counts alone; the coordinator's part makes the sum the projection
    of the pooled residual against the model (pooled frequencies, pooled rows)."""
    plan = shared_plan(adult_schema)
    encoder = TableEncoder(adult_schema)
    segments = column_segments(encoder)
    model = build_model(encoder, plan.model)
    arrays = model.get_arrays()
    seed = int(arrays_digest(arrays)[:15], 16)
    j = plan.marginal_fit.projections
    parts = [np.concatenate(exact_values(Stage.PAIR_ERRORS, model, encoder.encode(s), segments, None, (), seed, j))
             for s in silos]
    pooled_blocks = np.split(exact_pooled(silos, encoder).astype(float), np.cumsum(encoder.count_sizes)[:-1])
    freqs = frequencies_from_counts(pooled_blocks)
    got = pooled_errors(adult_schema, plan, arrays, freqs, 1800.0, StageSum(np.sum(parts, axis=0), 1.0, 3))
    model.conditioner.probs = encoder.split_counts(freqs)[0]
    pooled_x = np.concatenate([encoder.encode(s) for s in silos])
    want = np.concatenate(exact_values(Stage.PAIR_ERRORS, model, pooled_x, segments, 1800.0, (), seed, j))
    np.testing.assert_allclose(got.values, want, rtol=1e-5, atol=1e-2)


def test_with_shared_noise_the_marginal_fit_releases_are_noise_shares_too(institutions, silos, adult_schema):
    """Each of the marginal fit's releases is the exact integer vector plus a share: the ledger
    entry is a share (both views), the sum carries the release's noise, and a repeated request is
    made afresh and charged again rather than re-sent."""
    config = MarginalFitConfig(pairs=3, steps=10, projections=4)
    plan = replace(shared_plan(adult_schema), marginal_fit=config)
    # the plan's bins are measured: the institutions encode with the edges that come with the request
    edges = measured_edges(adult_schema, silos)
    encoder = TableEncoder(adult_schema, edges)
    segments = column_segments(encoder)
    arrays = build_model(encoder, plan.model).get_arrays()
    seed = int(arrays_digest(arrays)[:15], 16)
    errors = FitConfig(plan, plan.rounds + 1, 3, FIELD_CLIPPING_RANGE, 0, Stage.PAIR_ERRORS, (), edges)
    packed = [inst.marginal_release(arrays, errors)[0][0] for inst in institutions]
    total = read_stage_sum([np.mean(packed, axis=0)], 3, stage_length(Stage.PAIR_ERRORS, segments, (), 4))
    exact = sum(np.concatenate(exact_values(Stage.PAIR_ERRORS, None, encoder.encode(s), segments, None, (), seed, 4))
                for s in silos)
    values = len(all_pairs(segments)) * 4
    score_noise = config.score_noise * COUNTS_NOISE
    assert total.noise_multiplier == pytest.approx(score_noise * math.sqrt(3 / 2), rel=1e-3)
    target = 3 * score_noise**2 * values / 2  # K shares of (sigma * sqrt(#values))^2 / (K_min - T)
    assert 0.6 * target < np.var(total.values - exact) < 1.5 * target
    pairs = ((0, 1), (2, 3))
    counts = FitConfig(plan, plan.rounds + 2, 3, FIELD_CLIPPING_RANGE, 0, Stage.PAIR_COUNTS, pairs, edges)
    inst = institutions[0]
    first = inst.marginal_release(arrays, counts)[0][0]
    again, metrics = inst.marginal_release(arrays, counts)
    assert metrics.replayed == 0.0 and not np.array_equal(first, again[0])
    entries = [h for h in inst.ledger().history if isinstance(h, SharedNoiseRelease)]
    assert entries == [shared_counts_release(score_noise, values, 2)] + \
        2 * [shared_counts_release(config.pair_noise * COUNTS_NOISE, len(pairs), 2)]
    assert inst.ledger().epsilon_alone > inst.ledger().epsilon_spent


def measured_edges(schema, silos) -> dict[str, tuple[float, ...]]:
    """What the coordinator sends after pooled counts (run_bin_edges), here from exact pooled ones."""
    encoder = TableEncoder(schema)
    blocks = np.split(exact_pooled(silos, encoder).astype(float), np.cumsum(encoder.count_sizes)[:-1])
    plan = shared_plan(schema)
    assert plan.binning == "measured"
    return run_bin_edges(schema, plan, frequencies_from_counts(blocks, ordered=encoder.counts_layout.ordered))


def test_measured_bins_are_encoded_only_with_edges_that_fit_the_schema(institutions, silos, adult_schema):
    """An institution encodes a measured-bins plan's rows only with the coordinator's edges, never
    with guessed ones, and refuses edges that do not fit its schema or a plan that has none."""
    plan = shared_plan(adult_schema)
    inst = institutions[0]
    edges = measured_edges(adult_schema, silos)
    assert inst.encoder(plan, edges).bin_edges["fnlwgt"].tolist() == list(edges["fnlwgt"])
    with pytest.raises(FedsynthError, match="sent no bin edges"):
        inst.encoder(plan, None)
    with pytest.raises(FedsynthError, match="do not fit this schema.*'age'"):
        inst.encoder(plan, {**edges, "age": edges["age"][::-1]})
    with pytest.raises(FedsynthError, match="do not fit this schema"):
        inst.encoder(plan, {**edges, "colour": (0.0, 1.0)})
    local = FederationPlan(rounds=3, model=ModelConfig(hidden=16), schema_hash=adult_schema.hash())
    assert local.binning == "schema" and inst.encoder(local, None).binning == "schema"
    with pytest.raises(FedsynthError, match="schema's bins"):
        inst.encoder(local, edges)
    # edges travel in the instruction as sent
    sent = FitConfig(plan, 2, 3, FIELD_CLIPPING_RANGE, 0, Stage.TRAIN, (), edges)
    assert FitConfig.from_config(sent.to_config()).bin_edges == edges


def test_resolve_keeps_budget_for_the_marginal_fit_shares(adult_schema):
    plan = FederationPlan(rounds=20, model=ModelConfig(hidden=16), schema_hash=adult_schema.hash(),
                          marginal_fit=MarginalFitConfig(pairs=5))
    resolved = SharedNoiseRequest(0.05, epsilon=1.0, min_contributors=3).resolve(plan, adult_schema)
    shared = resolved.shared_noise
    encoder = TableEncoder(adult_schema)
    grid = shared.grid(sum(a.size for a in model_arrays(adult_schema, resolved)), resolved.model.max_grad_norm)
    fit = shared_planned_releases(plan.marginal_fit, shared.counts_noise, column_segments(encoder), 2)
    history = [shared.counts_release(len(encoder.count_sizes)), shared.release(grid, resolved.rounds), *fit]
    assert 0.98 <= epsilon_spent(history, 1e-5) <= 1.0


@pytest.mark.parametrize("sigma", [None, 6.0])
def test_every_number_of_chosen_pairs_fits_the_plan(adult_schema, sigma):
    """The coordinator may ask for fewer pairs than planned (only those worth measuring), and a Skellam
    release over fewer blocks costs more at the same noise multiplier: planned for the plan's count, a
    10-silo taxi run asked for 3 and every institution refused the round (epsilon 1.0001 over its cap 1).
    Whatever the count, the whole run must stay within the budget its noise was calibrated for."""
    pairs = 5
    plan = FederationPlan(rounds=20, model=ModelConfig(hidden=16), schema_hash=adult_schema.hash(),
                          marginal_fit=MarginalFitConfig(pairs=pairs))
    request = SharedNoiseRequest(0.05, epsilon=None if sigma else 1.0, noise_multiplier=sigma, min_contributors=10)
    resolved = request.resolve(plan, adult_schema)
    shared = resolved.shared_noise
    encoder = TableEncoder(adult_schema)
    segments = column_segments(encoder)
    grid = shared.grid(sum(a.size for a in model_arrays(adult_schema, resolved)), resolved.model.max_grad_norm)
    before = [shared.counts_release(len(encoder.count_sizes)), shared.release(grid, resolved.rounds)]
    planned = epsilon_spent(before + shared_planned_releases(plan.marginal_fit, shared.counts_noise, segments,
                                                             shared.honest_shares), 1e-5)
    if sigma is None:
        assert 0.98 <= planned <= 1.0
    for chosen in range(1, pairs + 1):
        made = shared_planned_releases(plan.marginal_fit, shared.counts_noise, segments, shared.honest_shares, chosen)
        assert epsilon_spent(before + made, 1e-5) <= planned + 1e-12, chosen



def test_with_shared_noise_the_single_party_counts_rule_is_never_consulted(monkeypatch, institutions, adult_schema):
    """The plan's counts noise rules a shared-noise run: the institution's own rule (which can refuse
    a cap the shared plan fits, and costs a calibration per budget check) must not be asked."""
    def refuse(*_args, **_kwargs):
        raise PrivacyError("the single-party counts rule was consulted")

    monkeypatch.setattr("fedsynth.client.app.frequency_noise", refuse)
    plan = replace(shared_plan(adult_schema), marginal_fit=MarginalFitConfig(pairs=2))
    inst = institutions[0]
    assert inst.check(plan, 3).can_train
    inst.pooled_counts_release(ask(plan))
    assert inst.ledger().epsilon_spent > 0
