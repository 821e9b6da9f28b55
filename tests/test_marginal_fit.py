"""The marginal fit: 2-way errors and counts, the model's exact 2-way marginals, the fine-tune,
and the two releases it adds to a fit's privacy history."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.data.schema import Schema
from fedsynth.common.dp.accounting import epsilon_spent, gaussian_counts_release
from fedsynth.common.dp.plan import TrainingConfig
from fedsynth.common.model.marginal_fit import (
    FIT_SCHEDULES,
    MarginalFitConfig,
    _ColumnDraw,
    _Gram,
    all_pairs,
    block,
    column_segments,
    fit_marginals,
    model_joint,
    pair_errors,
    real_joint_counts,
    worth_measuring,
)
from fedsynth.common.model.tabular import ModelConfig, build_model
from fedsynth.common.synthesizer import Synthesizer

COLORS = ["red", "green", "blue", "black"]
SHAPES = ["circle", "square", "star", "moon"]


def paired_table(n: int, seed: int) -> tuple[pd.DataFrame, Schema]:
    """``shape`` is a function of ``color`` (a 1:1 pair), ``size`` is independent noise."""
    rng = np.random.default_rng(seed)
    color = rng.integers(0, 4, n)
    df = pd.DataFrame({"color": np.array(COLORS)[color], "shape": np.array(SHAPES)[color],
                       "size": rng.integers(0, 3, n).astype(str), "weight": rng.normal(50, 10, n).clip(0, 100)})
    schema = Schema.from_json({"columns": [
        {"name": "color", "type": "categorical", "categories": COLORS},
        {"name": "shape", "type": "categorical", "categories": SHAPES},
        {"name": "size", "type": "categorical", "categories": ["0", "1", "2"]},
        {"name": "weight", "type": "numerical", "min": 0, "max": 100}]})
    return df, schema


def test_counts_are_the_crosstabs_and_one_row_moves_each_error_by_at_most_one():
    df, schema = paired_table(500, 0)
    enc = TableEncoder(schema)
    segs = column_segments(enc)
    assert [s.column for s in segs] == ["color", "shape", "size", "weight"]
    x = enc.encode(df)
    counts = real_joint_counts(x, segs)
    cross = pd.crosstab(df["color"], df["size"]).reindex(index=COLORS, columns=["0", "1", "2"], fill_value=0)
    assert np.array_equal(block(counts, segs, (0, 2)), cross.to_numpy())
    # the error vector's sensitivity: every pair's error moves by at most 1 when a row is removed
    rng = np.random.default_rng(1)
    joint = rng.dirichlet(np.ones(counts.shape[0] ** 2)).reshape(counts.shape)
    pairs = all_pairs(segs)
    full = pair_errors(counts, joint, 480.0, segs, pairs)
    for i in rng.choice(len(df), 20, replace=False):
        fewer = pair_errors(real_joint_counts(np.delete(x, i, axis=0), segs), joint, 480.0, segs, pairs)
        assert np.max(np.abs(full - fewer)) <= 1.0 + 1e-9
        assert np.max(np.abs(full - fewer)) > 0.0  # and they do move


def test_model_joint_is_the_joint_of_the_rows_the_model_generates():
    df, schema = paired_table(300, 1)
    enc = TableEncoder(schema)
    model = build_model(enc, ModelConfig(hidden=16), cond_probs=[np.array([0.7, 0.1, 0.1, 0.1]),
                                                                   np.full(4, 0.25), np.full(3, 1 / 3)])
    segs = column_segments(enc)
    exact = model_joint(model, segs, 40_000, torch.Generator().manual_seed(0)).numpy()
    rows = model.generate(40_000, seed=1)
    empirical = real_joint_counts(rows, segs) / len(rows)
    for pair in all_pairs(segs):
        assert np.abs(block(exact, segs, pair) - block(empirical, segs, pair)).sum() < 0.03, pair
    # the conditioned column is imposed: the rows conditioned on color (the first conditionable
    # column) follow its condition probabilities, whatever the untrained weights prefer
    on_color = model_joint(model, segs, 40_000, torch.Generator().manual_seed(2), by_condition=True)[0].numpy()
    assert np.abs(block(on_color, segs, (0, 1)).sum(axis=1) - [0.7, 0.1, 0.1, 0.1]).max() < 0.02


def test_the_gram_products_gradient_is_autograds():
    """The fine-tune's one-product backward of a.T @ a agrees with finite differences."""
    a = torch.rand(9, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert torch.autograd.gradcheck(_Gram.apply, (a,))
    assert torch.allclose(_Gram.apply(a), a.T @ a)


@pytest.mark.parametrize("loss, schedule", [("kl", "constant"), ("l1", "constant"), ("kl", "cosine")])
def test_the_fine_tune_moves_measured_pairs_to_their_target_and_keeps_the_rest(loss, schedule):
    df, schema = paired_table(300, 2)
    enc = TableEncoder(schema)
    torch.manual_seed(0)
    model = build_model(enc, ModelConfig(hidden=32), cond_probs=[np.full(4, 0.25), np.full(4, 0.25), np.full(3, 1 / 3)])
    segs = column_segments(enc)
    g = torch.Generator().manual_seed(3)
    start = model_joint(model, segs, 20_000, g).numpy()
    target = np.eye(4) / 4  # color and shape in a 1:1 relation
    before, after = fit_marginals(model, segs, {(0, 1): target}, MarginalFitConfig(steps=300, lr=1e-2, loss=loss, schedule=schedule),
                                  seed=4)
    end = model_joint(model, segs, 20_000, g).numpy()
    assert before > 0.5 and after < 0.1
    assert 0.5 * np.abs(block(end, segs, (0, 1)) - target).sum() < 0.1
    moved = [0.5 * np.abs(block(end, segs, p) - block(start, segs, p)).sum() for p in all_pairs(segs) if p != (0, 1)]
    # every condition's rows are pulled to the whole table's joint: an untrained model's groups differ, so some move
    assert max(moved) < 0.15, moved


def test_only_pairs_with_more_error_than_their_measurement_would_add_are_measured():
    df, schema = paired_table(100, 3)
    segs = column_segments(TableEncoder(schema))
    pairs = all_pairs(segs)
    cells = np.array([segs[a].size * segs[b].size for a, b in pairs])
    errors = np.zeros(len(pairs))
    errors[0] = 10 * cells[0] * 10.0 * np.sqrt(5)  # far above what noise 10 on 5 tables adds
    errors[1] = 0.5 * cells[1] * 10.0 * np.sqrt(5)  # below it
    assert worth_measuring(errors, segs, pairs, 5, 10.0) == [pairs[0]]
    assert worth_measuring(errors * 0, segs, pairs, 5, 10.0) == []


def test_pairs_are_judged_against_the_noise_of_the_tables_actually_measured():
    """Measuring n tables puts noise std sigma * sqrt(n) in each cell. Two pairs that each beat the
    noise of measuring two tables are both chosen, though neither beats the noise of the five the
    plan allows; and no pair is chosen that fails against the noise of the count chosen."""
    df, schema = paired_table(100, 3)
    segs = column_segments(TableEncoder(schema))
    pairs = all_pairs(segs)
    unit = np.array([segs[a].size * segs[b].size * np.sqrt(2 / np.pi) for a, b in pairs])
    errors = np.zeros(len(pairs))
    errors[:2] = 1.1 * unit[:2] * 10.0 * np.sqrt(2)  # above 2 tables' noise, below 5 tables'
    errors[2] = 0.9 * unit[2] * 10.0 * np.sqrt(2)  # just below 2 tables' noise, above 1 table's
    assert worth_measuring(errors, segs, pairs, 5, 10.0) == pairs[:2]
    assert worth_measuring(errors[:1], segs, pairs[:1], 5, 10.0) == pairs[:1]  # alone: 1 table's noise
    for n in range(1, 6):  # whatever comes back, each chosen pair beats the noise of that many tables
        rng = np.random.default_rng(n)
        noisy = rng.uniform(0, 4, len(pairs)) * unit * 10.0
        chosen = worth_measuring(noisy, segs, pairs, n, 10.0)
        assert len(chosen) <= n
        assert all(noisy[pairs.index(p)] > unit[pairs.index(p)] * 10.0 * np.sqrt(len(chosen)) for p in chosen)


def test_a_fit_spends_its_marginal_releases_within_the_budget_and_keeps_a_one_to_one_pair():
    df, schema = paired_table(4000, 5)
    training = TrainingConfig(epochs=5)
    with_fit = Synthesizer(schema, epsilon=1.0, training=training, model_config=ModelConfig(hidden=32))
    plan = with_fit.plan(len(df))
    freq = plan["frequency_noise"]
    with_fit.fit(df)
    hist = with_fit.privacy.history
    assert hist[0] == gaussian_counts_release(freq)
    assert hist[2:] == [gaussian_counts_release(2 * freq), gaussian_counts_release(freq)]
    assert epsilon_spent(hist, 1e-5) <= 1.0 + 1e-9 and with_fit.epsilon_spent > 0.95
    assert ["color", "shape"] in with_fit.info["marginal_fit"]["pairs"]
    rows = with_fit.sample(4000, seed=0)
    kept = (rows["shape"].map(dict(zip(SHAPES, COLORS))) == rows["color"]).mean()
    assert kept > 0.85, kept

    # without the marginal fit: no such releases, and DP-SGD gets the budget they took
    without = Synthesizer(schema, epsilon=1.0, training=training, model_config=ModelConfig(hidden=32),
                          marginal_fit=MarginalFitConfig(pairs=0))
    assert without.plan(len(df))["noise_multiplier"] < plan["noise_multiplier"]
    without.fit(df)
    assert len(without.privacy.history) == 2 and "marginal_fit" not in without.info


def test_marginal_fit_settings_are_checked():
    with pytest.raises(ValueError):
        MarginalFitConfig(pairs=-1)
    with pytest.raises(ValueError):
        MarginalFitConfig(score_noise=0)
    with pytest.raises(ValueError):
        MarginalFitConfig(loss="l2")
    with pytest.raises(ValueError):
        MarginalFitConfig(schedule="linear")
    with pytest.raises(ValueError):
        MarginalFitConfig(step_width=-1)


def test_a_cosine_schedule_takes_its_first_step_at_lr_and_its_last_near_zero(monkeypatch):
    df, schema = paired_table(300, 2)
    enc = TableEncoder(schema)
    segs = column_segments(enc)
    rates: list[float] = []
    step = torch.optim.Adam.step

    def recorded(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recorded)
    seen = {}
    for schedule in FIT_SCHEDULES:
        rates.clear()
        model = build_model(enc, ModelConfig(hidden=16), cond_probs=[np.full(4, 0.25), np.full(4, 0.25), np.full(3, 1 / 3)])
        fit_marginals(model, segs, {(0, 1): np.eye(4) / 4}, MarginalFitConfig(steps=40, lr=1e-2, schedule=schedule), seed=4)
        seen[schedule] = list(rates)
    assert seen["constant"] == [1e-2] * 40
    cosine = seen["cosine"]
    assert len(cosine) == 40 and cosine[0] == 1e-2 and cosine[-1] < 1e-4
    assert all(a > b for a, b in zip(cosine, cosine[1:]))


def wide_table(n: int, seed: int, extra: int = 6) -> tuple[pd.DataFrame, Schema]:
    """:func:`paired_table` with ``extra`` more independent columns of five categories each."""
    df, schema = paired_table(n, seed)
    rng = np.random.default_rng(seed + 100)
    columns = list(schema.to_json()["columns"])
    for i in range(extra):
        df[f"c{i}"] = rng.integers(0, 5, n).astype(str)
        columns.append({"name": f"c{i}", "type": "categorical", "categories": [str(k) for k in range(5)]})
    return df, Schema.from_json({"columns": columns})


def wide_model(schema: Schema, seed: int = 0):
    enc = TableEncoder(schema)
    torch.manual_seed(seed)
    return build_model(enc, ModelConfig(hidden=32)), column_segments(enc)


def test_model_joint_over_some_columns_is_the_same_block_of_the_joint_over_all():
    """A wide table's fit step forms the tables of a subset of columns only: with the same latent
    draws they are exactly the full joint's blocks, in every condition's group of rows, also when
    the subset leaves a conditionable column out."""
    _, schema = wide_table(50, 0)
    model, segs = wide_model(schema)
    assert model.conditioner.segments  # some columns are conditionable
    sub = [0, 2, 3, 5]  # leaves out shape (conditionable) and most of the extra columns
    full = model_joint(model, segs, 3000, torch.Generator().manual_seed(7), by_condition=True)
    part = model_joint(model, [segs[i] for i in sub], 3000, torch.Generator().manual_seed(7), by_condition=True)
    off = np.cumsum([0] + [s.size for s in segs])
    cells = torch.as_tensor(np.concatenate([np.arange(off[i], off[i + 1]) for i in sub]))
    assert part.shape[1] == len(cells) < full.shape[1]
    assert torch.allclose(part, full[:, cells][:, :, cells], atol=1e-6)


def test_a_step_draws_each_pair_as_often_as_its_weight_assumes():
    _, schema = wide_table(50, 0)
    _, segs = wide_model(schema)
    measured = {(0, 1): None}
    assert _ColumnDraw.plan(segs, measured, 0) is None  # 0: every column, every step
    assert _ColumnDraw.plan(segs, measured, sum(s.size for s in segs)) is None  # the table fits
    draw = _ColumnDraw.plan(segs, measured, 20)
    assert draw is not None and draw.fixed == {0, 1} and 2 <= draw.extra < len(draw.rest)
    g = torch.Generator().manual_seed(0)
    n = 4000
    seen = [set(draw.draw(g)) for _ in range(n)]
    assert all({0, 1} <= cols and len(cols) == 2 + draw.extra for cols in seen)
    for a, b in [(0, 1), (0, 4), (1, 7), (3, 4), (5, 9)]:
        p = draw.chance(a, b)
        share = sum({a, b} <= cols for cols in seen) / n
        assert abs(share - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-12, (a, b, p, share)


def test_a_wide_tables_fit_on_drawn_columns_moves_the_measured_pair_and_keeps_the_rest():
    _, schema = wide_table(50, 0)
    model, segs = wide_model(schema)
    g = torch.Generator().manual_seed(3)
    start = model_joint(model, segs, 20_000, g).numpy()
    target = np.eye(4) / 4
    config = MarginalFitConfig(steps=300, lr=1e-2, step_width=20)
    assert _ColumnDraw.plan(segs, {(0, 1): target}, config.step_width) is not None
    before, after = fit_marginals(model, segs, {(0, 1): target}, config, seed=4)
    end = model_joint(model, segs, 20_000, g).numpy()
    assert before > 0.5 and after < 0.1
    moved = [0.5 * np.abs(block(end, segs, p) - block(start, segs, p)).sum() for p in all_pairs(segs) if p != (0, 1)]
    assert max(moved) < 0.15, moved


def test_a_table_within_the_step_width_is_fitted_exactly_as_without_one():
    _, schema = wide_table(50, 0)
    fitted = []
    for width in (0, 10_000):
        model, segs = wide_model(schema)
        fit_marginals(model, segs, {(0, 1): np.eye(4) / 4}, MarginalFitConfig(steps=20, step_width=width), seed=4)
        fitted.append(torch.cat([p.detach().ravel() for p in model.generator_parameters()]))
    assert torch.equal(fitted[0], fitted[1])
    model, segs = wide_model(schema)  # and a step width below the table's does change the fit
    fit_marginals(model, segs, {(0, 1): np.eye(4) / 4}, MarginalFitConfig(steps=20, step_width=20), seed=4)
    assert not torch.equal(fitted[0], torch.cat([p.detach().ravel() for p in model.generator_parameters()]))
