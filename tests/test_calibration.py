"""Calibrated sampling: the numerical histograms released with the category counts
(common/data/histogram.py), the projection that turns noisy counts into frequencies, and the
raking and quantile mapping that make samples agree with the release (common/calibration.py)."""

import numpy as np
import pandas as pd
import pytest

from fedsynth.common.artifact import META_FILE
from fedsynth.common.calibration import raking_weights, rebalanced, weighted_draw
from fedsynth.common.data.encoding import CountsLayout, TableEncoder
from fedsynth.common.data.histogram import FINE_BINS, NumericHistogram
from fedsynth.common.data.schema import Column
from fedsynth.common.dp.accounting import frequencies_from_counts, halving_split, noisy_counts
from fedsynth.common.synthesizer import Synthesizer
from fedsynth.common.data.cells import coerce
from fedsynth.evaluation.marginals import marginal_tvds
from fedsynth.evaluation.prepared import prepare


def numeric(name="x", **kw) -> Column:
    return Column(name=name, type="numerical", **kw)


def test_the_layout_is_public_and_counts_every_row_once(adult_schema, adult_small):
    age = NumericHistogram.for_column(numeric(subtype="int", min=17, max=90))
    assert age.atoms == tuple(float(v) for v in range(17, 91)) and age.bins == 0  # exact, value by value
    gain = NumericHistogram.for_column(numeric(subtype="int", min=0, max=99999, point_masses=(0.0,), scale="log",
                                               nullable=True))
    assert gain.atoms == (0.0,) and gain.bins == FINE_BINS and gain.size == 1 + FINE_BINS + 1
    delay = NumericHistogram.for_column(numeric(subtype="int", min=-120, max=1440))  # minutes: value by value
    assert delay.bins == 0 and len(delay.atoms) == 1561 and delay.ordered == slice(0, 1561)
    assert gain.ordered == slice(1, 1 + FINE_BINS)  # the bins in value order; not the atom, not missing
    counts = gain.counts(pd.Series([0, 0, 5, 99999, None, 17], dtype="Int64"))
    assert counts[0] == 2 and counts[-1] == 1 and counts.sum() == 6
    enc = TableEncoder(adult_schema)
    blocks = enc.count_blocks(adult_small, enc.encode(adult_small))
    assert [len(b.sum(axis=0)) if b.ndim == 2 else len(b) for b in blocks] == enc.count_sizes
    assert all(float(np.sum(b)) == len(adult_small) for b in blocks)  # each block counts each row once
    assert len(enc.histograms) == sum(c.type == "numerical" for c in adult_schema.columns)
    layout = enc.counts_layout  # what every unpacker of the counts gets: sizes and value order together
    assert list(layout.sizes) == enc.count_sizes and layout.total == sum(enc.count_sizes)
    assert layout.ordered == (None,) * len(enc.conditionable) + tuple(h.ordered for h in enc.histograms)
    flat = np.concatenate([b.sum(axis=0) if b.ndim == 2 else b for b in blocks])
    assert all(np.array_equal(a, b.sum(axis=0) if b.ndim == 2 else b) for a, b in zip(layout.split(flat), blocks))
    with pytest.raises(ValueError, match="orderings"):
        CountsLayout((2, 3), (None,))


def test_quantile_mapping_takes_the_histograms_shape_and_keeps_the_order():
    rng = np.random.default_rng(0)
    col = numeric(subtype="float", min=0.0, max=100.0, point_masses=(40.0,))
    h = NumericHistogram.for_column(col)
    target = pd.Series(np.where(rng.random(20000) < 0.45, 40.0, rng.gamma(2.0, 8.0, 20000).clip(0, 100)))
    freqs = h.counts(target) / len(target)
    model = 100 * rng.beta(5, 5, 5000)  # the wrong shape, and no point mass at all
    mapped = h.quantile_map(model, freqs, rng)
    got = h.counts(pd.Series(mapped)) / len(mapped)
    assert 0.5 * np.abs(got - freqs).sum() < 0.02
    assert (mapped == 40.0).mean() == pytest.approx(0.45, abs=0.01)
    assert np.all(np.diff(mapped[np.argsort(model)]) >= 0)  # monotone: a larger value never maps lower
    assert mapped.min() >= 0 and mapped.max() <= 100
    ages = NumericHistogram.for_column(numeric(subtype="int", min=17, max=90))
    out = ages.quantile_map(np.array([17.2, np.nan, 60.7, 33.3]), ages.counts(pd.Series([30, 31, 32])), rng)
    assert np.isnan(out[1]) and set(out[[0, 2, 3]]) <= {30.0, 31.0, 32.0}  # missing left alone, values exact


def test_a_declared_grid_has_a_cell_per_value_and_the_map_lands_on_the_used_ones():
    """Temperatures read in whole degrees Celsius, written in Fahrenheit, declared on the tenths'
    grid: the released histogram has a cell per grid value, so mapped values fall on the used ones
    (spreading each of 256 bins evenly and snapping would put two thirds between them)."""
    col = numeric(min=-20, max=110, step=0.18, step_origin=32)
    h = NumericHistogram.for_column(col)
    assert h.bins == 0 and h.atoms == tuple(col.grid.values()) and len(h.atoms) == 722
    left, right = h.atom_extent()
    assert np.allclose(right - left, 0.18) and np.allclose((left + right) / 2, h.atoms)
    rng = np.random.default_rng(0)
    real = pd.Series(np.round(32 + 1.8 * rng.integers(-15, 35, 20_000), 2))
    counts = h.counts(real)
    assert counts.sum() == len(real) and np.count_nonzero(counts) == 50
    freqs = frequencies_from_counts(noisy_counts([counts], 1.0), ordered=[h.ordered])[0]
    mapped = h.quantile_map(rng.uniform(-20, 110, 5000), freqs, rng)
    assert np.isin(mapped, h.atoms).all()
    assert np.isin(col.grid.index(mapped), col.grid.index(real.to_numpy())).mean() > 0.9
    edges = h.bin_edges(freqs, col.bins)
    assert np.all(np.diff(edges) > 0) and edges[0] == -20 and edges[-1] == 110


def test_declared_values_have_a_cell_each_and_the_map_and_bins_keep_to_them():
    """Five codes on no grid: a cell per code, mapped values are codes in the released shares, and
    each code stands for the stretch halfway to its neighbours when the encoder's bins are placed."""
    col = numeric(min=0, max=5, values=(0.0, 3.258096, 3.931826, 4.564348, 4.61512))
    h = NumericHistogram.for_column(col)
    assert h.bins == 0 and h.atoms == col.values
    left, right = h.atom_extent()
    assert np.allclose(left[1:], right[:-1]) and left[2] == pytest.approx((3.258096 + 3.931826) / 2)
    rng = np.random.default_rng(0)
    real = pd.Series(rng.choice(col.values, 20_000, p=[0.55, 0.2, 0.07, 0.13, 0.05]))
    counts = h.counts(real)
    assert counts.tolist() == real.value_counts().reindex(col.values).tolist()
    freqs = frequencies_from_counts(noisy_counts([counts], 1.0), ordered=[h.ordered])[0]
    mapped = h.quantile_map(rng.uniform(0, 5, 5000), freqs, rng)
    assert np.isin(mapped, col.values).all()
    assert (mapped == 0).mean() == pytest.approx(0.55, abs=0.02) and (mapped == 3.931826).mean() == pytest.approx(0.07, abs=0.02)
    edges = h.bin_edges(freqs, 4)
    assert np.all(np.diff(edges) > 0) and edges[0] == 0 and edges[-1] == 5


def test_noisy_counts_keep_a_sparse_tail_empty():
    """Clipping alone would give each empty cell its positive noise: 60 empty cells of a 64-cell
    histogram would hold about 15% of a 2,000-row column; projected, a fifth of that."""
    exact = np.zeros(64)
    exact[:4] = [1200, 500, 200, 100]
    stream_counts = [noisy_counts([exact, exact[:8]], sigma=10.0) for _ in range(20)]
    tail = [frequencies_from_counts(c)[0][4:].sum() for c in stream_counts]
    clipped = [np.clip(c[0], 0, None)[4:].sum() / np.clip(c[0], 0, None).sum() for c in stream_counts]
    assert np.mean(clipped) > 0.1 and np.mean(tail) < 0.3 * np.mean(clipped)


def test_halving_split_keeps_exact_counts_and_the_mass_it_is_given():
    rng = np.random.default_rng(0)
    exact = rng.integers(0, 50, 37).astype(float)
    assert halving_split(exact, exact.sum()) == pytest.approx(exact)  # no noise: the counts themselves
    noisy = exact + 30 * rng.standard_normal(37)
    spread = halving_split(noisy, 900.0)
    assert spread.sum() == pytest.approx(900.0) and spread.min() >= 0


def test_ordered_cells_keep_a_long_empty_tail_emptier_than_projection_alone():
    """A column spread thinly over 180 of 256 bins (60 rows a cell, about the noise), then an empty
    stretch, with a point mass and a missing cell beside them: projected cell by cell, the empty
    stretch keeps the positive noise of its cells, about 6 % of the mass; spread from the halves'
    noisy sums, a fifth of that, while the atom and missing cells keep their projection."""
    exact = np.zeros(1 + 256 + 1)
    exact[0], exact[-1] = 900, 300  # an atom, then the bins, then missing values
    exact[1:181] = 60
    other = np.array([exact.sum() / 2] * 2)  # a second block counting every row once, as a release has
    plain, spread, kept, atoms = [], [], [], []
    for _ in range(10):
        noisy = noisy_counts([exact, other], sigma=20.0)
        a, b = frequencies_from_counts(noisy)[0], frequencies_from_counts(noisy, ordered=[slice(1, 257), None])[0]
        plain.append(a[181:257].sum())
        spread.append(b[181:257].sum())
        kept.append(b[1:181].sum())
        atoms.append(abs(b[0] - a[0]) + abs(b[-1] - a[-1]))
    assert np.mean(plain) > 0.03  # the failure this guards against: noise kept in the empty stretch
    assert np.mean(spread) < 0.4 * np.mean(plain)
    assert np.mean(kept) == pytest.approx(0.9, abs=0.03)  # the populated stretch keeps its mass
    assert max(atoms) < 1e-6  # the atom and the missing cell are the projection's


def test_raking_matches_the_released_category_shares():
    rng = np.random.default_rng(1)
    a = rng.choice(3, 40000, p=[0.6, 0.3, 0.1])
    b = (a + rng.choice(2, 40000, p=[0.7, 0.3])) % 2  # b depends on a
    targets = [np.array([0.3, 0.3, 0.4]), np.array([0.5, 0.5])]
    w = raking_weights([a, b], targets)
    for code, target in zip([a, b], targets):
        assert np.bincount(code, weights=w) / w.sum() == pytest.approx(target, abs=0.005)
    picked = weighted_draw(w, 10000, rng)
    assert len(set(picked)) == 10000  # distinct rows: no duplicated synthetic row
    assert np.bincount(a[picked], minlength=3) / 10000 == pytest.approx(targets[0], abs=0.03)


def test_calibrated_samples_are_closer_to_the_table_and_survive_save_and_load(tiny_model_dir, adult, adult_schema):
    syn = Synthesizer.load(tiny_model_dir)
    assert [m.size for m in syn.marginals] == [h.size for h in syn.encoder.histograms]
    real = adult.sample(4000, random_state=1)
    calibrated = syn.sample(4000, seed=3)
    syn.calibrate = False
    plain = syn.sample(4000, seed=3)
    numerical = [c.name for c in adult_schema.columns if c.type == "numerical"]

    def tvd(df):
        one, _ = marginal_tvds(prepare(real, adult_schema, "real"), prepare(df, adult_schema, "synthetic"), adult_schema)
        return np.mean([one[c] for c in numerical])

    assert tvd(calibrated) < 0.7 * tvd(plain)
    assert calibrated["age"].dtype == plain["age"].dtype == np.int64  # the declared form stands
    coerce(calibrated.astype(str).replace({"<NA>": "", "nan": ""}), adult_schema, "calibrated")[1].raise_if_bad()


def test_a_model_saved_without_marginals_still_loads_and_keeps_its_id(tiny_model_dir, tmp_path):
    import json
    import shutil
    old = tmp_path / "old"
    shutil.copytree(tiny_model_dir, old)
    meta = json.loads((old / META_FILE).read_text())
    del meta["marginals"]
    meta["model_config"].pop("binning", None)  # such a model predates measured bins too
    from fedsynth.common.artifact import model_id
    meta["model_id"] = model_id(meta, (old / "weights.pt").read_bytes())
    (old / META_FILE).write_text(json.dumps(meta))
    syn = Synthesizer.load(old)
    assert syn.marginals == [] and syn.info["model_id"] == meta["model_id"]
    assert len(syn.sample(50, seed=0)) == 50
    saved = syn.save(tmp_path / "again")
    assert json.loads((saved / META_FILE).read_text())["model_id"] == meta["model_id"]


def test_datetime_columns_are_counted_and_mapped_in_days():
    col = Column(name="d", type="datetime", min="2013-01-01", max="2013-12-31", nullable=True)
    h = NumericHistogram.for_column(col)
    real = pd.Series(pd.to_datetime(["2013-03-01"] * 30 + ["2013-11-15"] * 10 + [None] * 5))
    counts = h.counts(real)
    assert counts.sum() == 45 and counts[-1] == 5 and h.datetime
    model = h.values(pd.Series(pd.date_range("2013-01-01", "2013-12-31", periods=400)))
    mapped = h.quantile_map(model, counts, np.random.default_rng(0))
    days = pd.to_datetime(pd.Series(mapped) * 86400.0, unit="s")
    assert (days < "2013-04-01").mean() == pytest.approx(0.75, abs=0.03)  # March, as released
    assert days.min() >= pd.Timestamp("2013-01-01") and days.max() <= pd.Timestamp("2013-12-31")


def test_calibrated_samples_keep_every_declared_form_with_dates_gaps_and_bounds():
    """Nullable integers stay Int64 with their gaps, dates stay dates inside their bounds, floats keep
    their decimals, and the released shares (a 70% category, a mode at 40) come back."""
    from fedsynth.common.data.schema import Schema
    from fedsynth.common.dp.plan import TrainingConfig
    from fedsynth.common.model.tabular import ModelConfig
    rng = np.random.default_rng(0)
    n = 3000
    schema = Schema.from_json({"columns": [
        {"name": "when", "type": "datetime", "min": "2020-01-01", "max": "2021-12-31", "nullable": True},
        {"name": "kind", "type": "categorical", "categories": ["a", "b", "c"]},
        {"name": "hours", "type": "numerical", "subtype": "int", "min": 0, "max": 99, "nullable": True},
        {"name": "price", "type": "numerical", "subtype": "float", "min": 0, "max": 1000, "decimals": 2},
    ]})
    df = pd.DataFrame({
        "when": pd.to_datetime("2020-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D"),
        "kind": rng.choice(["a", "b", "c"], n, p=[0.7, 0.2, 0.1]),
        "hours": pd.array(np.where(rng.random(n) < 0.5, 40, rng.integers(0, 100, n)), dtype="Int64"),
        "price": np.round(rng.gamma(2.0, 50.0, n).clip(0, 1000), 2),
    })
    df.loc[rng.random(n) < 0.1, "hours"] = pd.NA
    syn = Synthesizer(schema, epsilon=3.0, training=TrainingConfig(epochs=0.5), model_config=ModelConfig(hidden=16))
    out = syn.fit(df).sample(2000, seed=1)
    assert str(out["hours"].dtype) == "Int64" and out["hours"].isna().any()
    assert (out["hours"].dropna() == 40).mean() == pytest.approx(0.505, abs=0.05)  # 50% + 1% of the rest
    assert (out["kind"] == "a").mean() == pytest.approx(0.7, abs=0.05)
    assert out["when"].dropna().between(pd.Timestamp("2020-01-01"), pd.Timestamp("2021-12-31")).all()
    assert (out["price"] == out["price"].round(2)).all() and out["price"].between(0, 1000).all()


def test_calibrated_dates_in_a_date_only_format_are_whole_days():
    """The quantile map places a date anywhere inside a released day's cell; a column written
    without a time of day still comes back as whole days, as from the decoder alone."""
    from fedsynth.common.calibration import calibrated_rows
    from fedsynth.common.data.schema import Schema
    schema = Schema.from_json({"columns": [{"name": "d", "type": "datetime", "min": "2013-01-01",
                                            "max": "2013-12-31", "datetime_format": "%Y-%m-%d"},
                                           {"name": "k", "type": "categorical", "categories": ["a", "b"]}]})
    enc = TableEncoder(schema)
    rng = np.random.default_rng(0)
    real = pd.DataFrame({"d": pd.to_datetime("2013-01-01") + pd.to_timedelta(rng.integers(0, 365, 500), unit="D"),
                         "k": rng.choice(["a", "b"], 500)})
    x = enc.encode(real)

    def generate(n: int) -> np.ndarray:
        rows = x[rng.integers(0, len(x), n)].copy()
        rows[:, -1] = rng.uniform(-1, 1, n)  # offsets anywhere inside the bins
        return rows

    hist = [h.counts(real[h.column]) for h in enc.histograms]
    out = calibrated_rows(generate, enc, [np.array([0.5, 0.5])], hist, 300, rng)["d"]
    assert len(out) == 300 and out.between(pd.Timestamp("2013-01-01"), pd.Timestamp("2013-12-31")).all()
    assert (out == out.dt.floor("D")).all()


def test_kept_rows_are_raked_back_to_the_draws_marginals_for_every_kind_of_column():
    rng = np.random.default_rng(0)
    n = 20_000
    x = rng.uniform(0, 100, n)
    reference = pd.DataFrame({
        "x": x,
        "when": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
        "kind": pd.Series(rng.choice(["a", "b", None], n, p=[0.5, 0.3, 0.2]), dtype=object),
        "row": [f"id-{i}" for i in range(n)],  # distinct texts: not raked on
    })
    # a selection like a constraint's: it keeps large x, late dates and kind "a" far more often
    keep = rng.random(n) < (0.1 + 0.8 * (x / 100)) * np.where(reference["kind"] == "a", 1.0, 0.4)
    keep &= rng.random(n) < np.where(reference["when"].dt.month > 6, 1.0, 0.5)
    rows = reference[keep].reset_index(drop=True)
    out = rebalanced(rows, reference, 2000, np.random.default_rng(1), ["x", "when", "kind", "row"])
    assert len(out) == 2000 and out["row"].is_unique and set(out["row"]) <= set(rows["row"])

    def gap(df: pd.DataFrame) -> list[float]:
        return [abs(df["x"].mean() - reference["x"].mean()),
                abs((df["when"].dt.month > 6).mean() - (reference["when"].dt.month > 6).mean()),
                abs((df["kind"] == "a").mean() - (reference["kind"] == "a").mean()),
                abs(df["kind"].isna().mean() - reference["kind"].isna().mean())]

    before, after = gap(rows), gap(out)
    assert all(a < 0.3 * b for a, b in zip(after, before)), (before, after)
