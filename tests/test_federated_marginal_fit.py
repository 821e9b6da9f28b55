"""The federated marginal fit: its wire format, an institution's two releases, the coordinator's fit."""

import json

import numpy as np
import pytest
import torch
from test_marginal_fit import COLORS, paired_table

from fedsynth.client.app import ClientSettings, Institution
from fedsynth.client.marginal_release import exact_values
from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.data.tables import write_table
from fedsynth.common.digest import arrays_digest
from fedsynth.common.dp.accounting import epsilon_spent, frequencies_from_counts, frequency_noise, rows_from_counts
from fedsynth.common.errors import BudgetExhausted
from fedsynth.common.model.marginal_fit import (MarginalFitConfig, all_pairs, block, column_segments, model_joint,
                                                pair_errors, project_residuals, real_joint_counts, sketched_errors)
from fedsynth.common.model.tabular import ModelConfig, build_model
from fedsynth.common.protocol.federation import FIELD_CLIPPING_RANGE, FederationPlan
from fedsynth.common.protocol.marginal_stage import StageSum, pack_stage, read_stage_sum, refusal_stage, stage_length
from fedsynth.common.protocol.messages import FitConfig, MessageError, Stage
from fedsynth.server.checkpoint import Checkpoint
from fedsynth.server import marginal_rounds
from fedsynth.server.marginal_rounds import choose_pairs, fit_global_model


def plan_for(schema, pairs=20, rounds=2):
    return FederationPlan(rounds=rounds, local_epochs=0.5, model=ModelConfig(hidden=16), schema_hash=schema.hash(),
                          marginal_fit=MarginalFitConfig(pairs=pairs, steps=300, lr=1e-2))


def ask(plan, stage, pairs=()):
    return FitConfig(plan=plan, round=plan.rounds + 1, total_clients=1, clipping_range=FIELD_CLIPPING_RANGE,
                     freq_size=0, stage=stage, pairs=tuple(pairs))


@pytest.fixture()
def institution(tmp_path, adult, adult_paths, adult_schema):
    path = tmp_path / "silo.csv"
    write_table(adult.sample(3000, random_state=5), path, schema=adult_schema)
    return Institution(ClientSettings(data=str(path), schema=str(adult_paths[1]), state_dir=str(tmp_path / "state"),
                                      epsilon=1.0, delta=1e-5, init_ledger=True))


def test_a_stage_travels_in_the_fit_config_and_malformed_pairs_are_refused(adult_schema):
    plan = plan_for(adult_schema)
    cfg = ask(plan, Stage.PAIR_COUNTS, [(0, 3), (2, 5)])
    assert FitConfig.from_config(cfg.to_config()) == cfg
    train = FitConfig(plan=plan, round=1, total_clients=3, clipping_range=8.0, freq_size=4)
    assert "stage" not in train.to_config() and FitConfig.from_config(train.to_config()).stage == Stage.TRAIN
    for bad in ("[[3, 1]]", "[[0, 1], [0, 1]]", "[[0, true]]", "{}", "nope"):
        with pytest.raises(MessageError, match="pairs"):
            FitConfig.from_config({**cfg.to_config(), "pairs": bad})
    with pytest.raises(MessageError, match="stage"):
        FitConfig.from_config({**cfg.to_config(), "stage": "run_this"})
    # a plan without a marginal fit reads and hashes as before the field existed
    assert "marginal_fit" not in plan_for(adult_schema, pairs=0).to_json()
    assert FederationPlan.from_json(plan.to_json()) == plan


def test_summed_packed_releases_give_the_sum_its_noise_and_the_contributors():
    rng = np.random.default_rng(0)
    vectors = [rng.normal(0, 50, 30) for _ in range(4)]
    sigmas = [10.0, 20.0, 10.0, 30.0]
    packed = [pack_stage(v, s)[0] for v, s in zip(vectors, sigmas)] + [refusal_stage(30)[0]]
    mean = [np.sum(packed, axis=0) / 4]  # what SecAgg+ unmasks: the sum over the 4 weighted contributors
    total = read_stage_sum(mean, 4, 30)
    np.testing.assert_array_equal(total.values, np.sum([np.rint(v) for v in vectors], axis=0))
    assert total.noise_multiplier == pytest.approx(np.sqrt(sum(s * s for s in sigmas)))
    assert total.contributors == 4
    lying = packed[:3] + [pack_stage(vectors[3], 30.0)[0] * 2]  # one institution's slots claim two contributors
    with pytest.raises(ValueError, match="contributors"):
        read_stage_sum([np.sum(lying, axis=0) / 4], 4, 30)
    with pytest.raises(ValueError, match="values"):
        read_stage_sum(mean, 4, 29)


def test_each_release_is_charged_before_it_leaves_and_made_once(institution, adult_schema):
    plan = plan_for(adult_schema)
    arrays = build_model(TableEncoder(adult_schema), plan.model).get_arrays()
    segments = column_segments(TableEncoder(adult_schema))
    before = institution.ledger().epsilon_spent
    packed, metrics = institution.marginal_release(arrays, ask(plan, Stage.PAIR_ERRORS))
    ledger = institution.ledger()
    events = [e["event"] for e in ledger.events]
    assert events.count(Stage.PAIR_ERRORS) == 1 and events.count("category_frequencies") == 1
    sigma = 2.0 * frequency_noise(1.0, 1e-5, floor=plan.marginal_noise)  # score_noise x the frequency release's
    assert ledger.history[-1] == pytest.approx((sigma, 1.0, 1))
    assert metrics.epsilon_spent == round(ledger.epsilon_spent, 2) > before
    assert ledger.epsilon_spent == pytest.approx(epsilon_spent(ledger.history, 1e-5))
    # the same request again: the same vector, free
    again, replay = institution.marginal_release(arrays, ask(plan, Stage.PAIR_ERRORS))
    np.testing.assert_array_equal(again[0], packed[0])
    assert replay.replayed == 1.0 and institution.ledger().epsilon_spent == ledger.epsilon_spent
    # another model: a second release the plan never accounted for, refused without a charge
    other = [a + 0.01 for a in arrays]
    with pytest.raises(BudgetExhausted, match="another request"):
        institution.marginal_release(other, ask(plan, Stage.PAIR_ERRORS))
    assert len(institution.ledger().history) == len(ledger.history)
    # the noise has the accounted scale: sigma x sqrt(#pairs) around the exact errors
    length = stage_length(Stage.PAIR_ERRORS, segments, (), plan.marginal_fit.projections)
    released = read_stage_sum(packed, 1, length).values
    assert read_stage_sum(packed, 1, length).noise_multiplier == pytest.approx(sigma, rel=0.01)
    enc = TableEncoder(adult_schema)
    x = enc.encode(institution.table())
    model = build_model(enc, plan.model)
    model.set_arrays(arrays)
    counts = [np.asarray(c) for c in json.loads(next(institution.state_dir.glob("*category_counts.json")).read_text())
              ["noisy_counts"]]
    model.conditioner.probs = enc.split_counts(frequencies_from_counts(counts))[0]
    exact = np.concatenate(exact_values(Stage.PAIR_ERRORS, model, x, segments, rows_from_counts(counts), (),
                                        seed=int(arrays_digest(arrays)[:15], 16),
                                        projections=plan.marginal_fit.projections))
    noise = released - exact
    assert abs(noise.mean()) < 4 * sigma  # the mean of n draws of std sigma x sqrt(n) has std sigma
    assert np.std(noise) == pytest.approx(sigma * np.sqrt(len(noise)), rel=0.25)


def test_a_plan_with_the_fit_keeps_budget_for_it_and_lands_on_the_cap(institution, adult_schema):
    plan = plan_for(adult_schema, rounds=2)
    arrays = build_model(TableEncoder(adult_schema), plan.model).get_arrays()
    without = plan_for(adult_schema, pairs=0, rounds=2)
    # more noise for DP-SGD when the two releases are planned
    assert institution.round_plan(plan, institution.ledger(), 3000, 1)["noise_multiplier"] > \
        institution.round_plan(without, institution.ledger(), 3000, 1)["noise_multiplier"]
    for r in (1, 2):
        assert institution.check(plan, 1).can_train
        institution.train_round(arrays, plan, r, 1, 8.0)
    assert not institution.check(plan, 1).can_train  # the rest is kept for the fit
    segments = column_segments(TableEncoder(adult_schema))
    institution.marginal_release(arrays, ask(plan, Stage.PAIR_ERRORS))
    chosen = [(0, 1), (2, 3)]
    packed, _ = institution.marginal_release(arrays, ask(plan, Stage.PAIR_COUNTS, chosen))
    assert packed[0].size == stage_length(Stage.PAIR_COUNTS, segments, tuple(chosen), 16) + 2
    ledger = institution.ledger()
    assert 0.99 < ledger.epsilon_spent <= 1.0
    assert [e["event"] for e in ledger.events if e["event"] in (Stage.PAIR_ERRORS, Stage.PAIR_COUNTS)] == \
        [Stage.PAIR_ERRORS, Stage.PAIR_COUNTS]


def test_the_coordinator_chooses_pairs_with_the_noise_of_the_summed_counts(adult_schema):
    """A pair is worth measuring when its estimated pooled residual is longer than the noise its
    pooled counts would add: that noise is pair_noise / score_noise times the summed projections'
    (both sums of K draws), and each summed projection carries sqrt(#pairs x projections) of it.
    One pair chosen of the 4 allowed: its counts carry the noise of one table, not of four."""
    plan = plan_for(adult_schema, pairs=4)
    j = plan.marginal_fit.projections
    segments = column_segments(TableEncoder(adult_schema))
    pairs = all_pairs(segments)
    a, b = pairs[7]
    sum_noise = 30.0  # sqrt of the contributors' summed sigma^2 for the projection release
    std = sum_noise * np.sqrt(len(pairs) * j)
    threshold = (sum_noise * 1.0 / 2.0) * np.sqrt(1) * np.sqrt(segments[a].size * segments[b].size)
    for norm, expected in ((1.05 * threshold, [pairs[7]]), (0.95 * threshold, [])):
        values = np.zeros((len(pairs), j))
        values[7] = np.sqrt(norm**2 + std**2)  # E[(s + z)^2] = s^2 + std^2
        assert choose_pairs(adult_schema, plan, StageSum(values.ravel(), sum_noise, 3)) == expected


def test_summed_projections_see_the_pooled_error_not_how_the_institutions_differ():
    """Two institutions, one with colours 0-1 and one with 2-3, and a model equal to their pooled
    rows: each one's own error is large (its colours are not the model's), their pooled error is
    nil, and so is what their summed projections estimate. A model wrong on colour x shape is seen."""
    df, schema = paired_table(2000, 7)
    enc = TableEncoder(schema)
    segments = column_segments(enc)
    pairs = all_pairs(segments)
    halves = [df[df["color"].isin(COLORS[:2])], df[df["color"].isin(COLORS[2:])]]
    counts = [real_joint_counts(enc.encode(h), segments) for h in halves]
    joint = sum(counts) / len(df)  # the model: exactly the pooled rows

    def sketched(model_joint_):
        sums = sum(np.concatenate(project_residuals(c, model_joint_, len(h), segments, pairs, 16, seed=3))
                   for c, h in zip(counts, halves))
        return sketched_errors(sums, len(pairs), 16, 0.0)

    own = sum(pair_errors(c, joint, len(h), segments, pairs) for c, h in zip(counts, halves))
    assert own[pairs.index((0, 2))] > 0.4 * len(df)  # colour x size: each half's colours are half the model's
    np.testing.assert_allclose(sketched(joint), 0.0, atol=1e-6)
    wrong = joint.copy()
    off = np.cumsum([0] + [seg.size for seg in segments])
    wrong[off[0] : off[1], off[1] : off[2]] = 1 / 16  # the model has colour and shape independent
    true_norm = np.linalg.norm(block(sum(counts), segments, (0, 1)) - len(df) * block(wrong, segments, (0, 1)))
    assert sketched(wrong)[pairs.index((0, 1))] == pytest.approx(true_norm, rel=0.5)
    assert sketched(wrong)[pairs.index((0, 2))] == pytest.approx(0.0, abs=1e-6)


def test_the_coordinator_fits_the_global_model_to_the_pooled_counts():
    """Three institutions' 2-way counts of colour x shape (a 1:1 pair) summed as SecAgg+ would:
    the fine-tuned global model puts each colour's mass on its one shape; untrained, it spread it."""
    schema = paired_table(10, 0)[1]
    plan = FederationPlan(rounds=1, model=ModelConfig(hidden=32), schema_hash=schema.hash(),
                          marginal_fit=MarginalFitConfig(pairs=2, steps=300, lr=1e-2))
    enc = TableEncoder(schema)
    segments = column_segments(enc)
    torch.manual_seed(0)
    model = build_model(enc, plan.model)
    arrays = model.get_arrays()

    def concentration() -> float:
        table = block(model_joint(model, segments, 20_000, torch.Generator().manual_seed(1)).numpy(), segments, (0, 1))
        return float(table.max(axis=1).sum() / table.sum())

    assert concentration() < 0.5
    tables = [pack_stage(block(real_joint_counts(enc.encode(paired_table(400, s)[0]), segments), segments,
                               (0, 1)).ravel(), 5.0)[0] for s in (1, 2, 3)]
    counts = read_stage_sum([np.sum(tables, axis=0) / 3], 3, stage_length(Stage.PAIR_COUNTS, segments, ((0, 1),), 16))
    fitted, info = fit_global_model(schema, plan, arrays, None, [(0, 1)], counts, seed=0)
    assert info["pairs"] == [["color", "shape"]] and info["tvd_after"] < 0.1 < 0.5 < info["tvd_before"]
    assert info["contributors"] == 3
    model.set_arrays(fitted)
    assert concentration() > 0.9


def test_the_checkpoint_keeps_the_fit_so_a_restart_does_not_ask_again(tmp_path):
    ckpt = Checkpoint(round=3, arrays=[np.ones(2, dtype=np.float32)], freqs=None, history=[], plan_json="{}",
                      started="t", marginal_fit={"pairs": [["a", "b"]], "tvd_before": 0.3, "tvd_after": 0.1})
    ckpt.save(tmp_path)
    assert Checkpoint.load(tmp_path).marginal_fit == ckpt.marginal_fit


def test_the_coordinators_fine_tune_runs_on_the_threads_it_is_given_and_gives_them_back(monkeypatch):
    """A simulation's coordinator uses its idle institutions' cores for the fine-tune alone."""
    schema = paired_table(10, 0)[1]
    plan = FederationPlan(rounds=1, model=ModelConfig(hidden=8), schema_hash=schema.hash(),
                          marginal_fit=MarginalFitConfig(pairs=1, steps=1))
    segments = column_segments(TableEncoder(schema))
    counts = read_stage_sum([pack_stage(np.ones(16), 5.0)[0]], 3, stage_length(Stage.PAIR_COUNTS, segments, ((0, 1),), 16))
    seen = []

    def fit(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return 0.0, 0.0

    monkeypatch.setattr(marginal_rounds, "fit_marginals", fit)
    arrays = build_model(TableEncoder(schema), plan.model).get_arrays()
    was = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        fit_global_model(schema, plan, arrays, None, [(0, 1)], counts, threads=2)
        fit_global_model(schema, plan, arrays, None, [(0, 1)], counts)
        assert seen == [2, 1] and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(was)
