import numpy as np
import pandas as pd
import pytest

from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.data.schema import Schema


def same(a: pd.Series, b: pd.Series) -> bool:
    if a.dtype == object or b.dtype == object:
        return a.map(lambda v: None if pd.isna(v) else str(v)).tolist() == b.map(lambda v: None if pd.isna(v) else str(v)).tolist()
    return np.allclose(a.to_numpy(float), b.to_numpy(float), equal_nan=True, rtol=1e-6, atol=1e-6)


def test_roundtrip_is_exact_on_adult(adult_schema, adult_small):
    enc = TableEncoder(adult_schema)
    back = enc.decode(enc.encode(adult_small))
    for col in adult_schema.names:
        assert same(adult_small[col], back[col]), col


def test_layout_comes_from_schema_only(adult_schema, adult_small):
    a, b = TableEncoder(adult_schema), TableEncoder(adult_schema)
    assert a.dim == b.dim and a.segments == b.segments
    # encoding one silo does not change how another is encoded
    x1 = a.encode(adult_small.iloc[:10])
    a.encode(adult_small.iloc[10:])
    np.testing.assert_array_equal(x1, b.encode(adult_small.iloc[:10]))


def test_point_masses_and_log_tails_decode_to_real_looking_values(adult_schema):
    enc = TableEncoder(adult_schema)
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(2000, enc.dim)).astype(np.float32)
    out = enc.decode(raw)
    gain = out["capital-gain"]
    assert ((gain == 0) | (gain >= 1)).all() and gain.max() <= 99999
    # continuous within bins: many distinct values, not a handful of bin midpoints
    assert gain[gain > 0].nunique() > 200
    assert (out["hours-per-week"] == 40).any()
    for col in adult_schema.columns:
        if col.type == "numerical":
            v = out[col.name].dropna()
            assert v.between(col.min, col.max).all(), col.name
            if col.subtype == "int":
                assert (v == np.round(v)).all(), col.name
        elif col.type == "categorical":
            assert set(out[col.name].dropna()) <= set(col.categories), col.name


def test_missing_values_survive(adult_schema, adult):
    enc = TableEncoder(adult_schema)
    rows = adult[adult["workclass"].isna()].head(5)
    assert len(rows) == 5
    assert enc.decode(enc.encode(rows))["workclass"].isna().all()


def test_datetime_boolean_and_nullable_numbers():
    schema = Schema.from_json({"columns": [
        {"name": "when", "type": "datetime", "min": "2000-01-01", "max": "2030-01-01", "nullable": True},
        {"name": "flag", "type": "boolean"},
        {"name": "amount", "type": "numerical", "min": -50, "max": 1e6, "scale": "log", "nullable": True},
    ]})
    df = pd.DataFrame({"when": pd.to_datetime(["2001-02-03 04:05:06", None, "2029-12-31 00:00:00"]),
                       "flag": [True, False, True], "amount": [-50.0, np.nan, 123456.5]})
    enc = TableEncoder(schema)
    back = enc.decode(enc.encode(df))
    assert back["when"].iloc[0] == pd.Timestamp("2001-02-03 04:05:06") and pd.isna(back["when"].iloc[1])
    assert back["flag"].tolist() == [True, False, True]
    assert back["amount"].iloc[0] == pytest.approx(-50.0) and np.isnan(back["amount"].iloc[1])
    assert back["amount"].iloc[2] == pytest.approx(123456.5, rel=1e-5)


def test_condition_lookup_errors_are_clear(adult_schema):
    enc = TableEncoder(adult_schema)
    seg, idx = enc.condition_index("income", ">50K")
    assert seg.column == "income" and idx == 1
    with pytest.raises(ValueError, match="not a category"):
        enc.condition_index("income", "rich")
    with pytest.raises(ValueError, match="numerical"):
        enc.condition_index("age", "30")


@pytest.mark.parametrize("fmt, whole_days", [("%Y-%m-%d", True), ("%d/%m/%Y", True), ("%Y-%m-%d %H:%M", False),
                                             ("%Y-%m-%dT%H:%M:%S", False), ("%Y%%%m", True), (None, False)])
def test_a_date_only_format_decodes_to_whole_days(fmt, whole_days):
    """A column written without a time of day comes back as whole days in the Python API too, so a
    sample in memory matches the file it is written to; a format with a time keeps the time."""
    extra = {"datetime_format": fmt} if fmt else {}
    schema = Schema.from_json({"columns": [
        {"name": "when", "type": "datetime", "min": "2000-01-01", "max": "2030-01-01", **extra}]})
    enc = TableEncoder(schema)
    x = enc.encode(pd.DataFrame({"when": pd.to_datetime(["2001-02-03", "2029-12-31", "2015-06-07"])}))
    x[:, -1] = np.linspace(-0.9, 0.9, len(x))  # offsets anywhere inside the bins: times of day
    back = enc.decode(x)["when"]
    assert back.between(pd.Timestamp("2000-01-01"), pd.Timestamp("2030-01-01")).all()
    assert (back == back.dt.floor("D")).all() == whole_days


def _released(schema: Schema, df: pd.DataFrame) -> list[np.ndarray]:
    """Each histogram's exact frequencies: what a noiseless counts release would give."""
    counts = [h.counts(df[h.column]) for h in TableEncoder(schema).histograms]
    return [c / c.sum() for c in counts]


def test_measured_bins_hold_similar_shares_of_a_skewed_column():
    """Equal-width bins put a skewed column's rows in one or two tokens; measured bins split the
    released histogram into nearly equal masses, and the values still come back exactly."""
    schema = Schema.from_json({"columns": [
        {"name": "weight", "type": "numerical", "min": 0, "max": 1e6, "bins": 10, "decimals": 1},
        {"name": "days", "type": "numerical", "subtype": "int", "min": 0, "max": 500, "bins": 8,
         "point_masses": [0]}]})
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"weight": np.round(rng.lognormal(10, 1, 5000).clip(0, 1e6), 1),
                       "days": np.where(rng.random(5000) < 0.4, 0, rng.geometric(0.05, 5000).clip(0, 500))})

    def shares(enc: TableEncoder, col: str) -> np.ndarray:
        seg = next(s for s in enc.segments if s.column == col and s.kind == "softmax")
        tokens = enc.encode(df)[:, seg.start:seg.end].argmax(axis=1)
        return np.bincount(tokens, minlength=seg.size) / len(df)

    plain, measured = TableEncoder(schema), TableEncoder.measured(schema, _released(schema, df))
    assert shares(plain, "weight").max() > 0.8
    assert shares(measured, "weight").max() < 0.15 and (shares(measured, "weight") > 0.05).all()
    days = shares(measured, "days")
    assert days[0] == pytest.approx(0.4, abs=0.03)  # the point mass keeps its own token, left out of the bins
    assert days[1:].max() < 0.15
    assert plain.dim == measured.dim and plain.segments == measured.segments  # the layout is the schema's
    back = measured.decode(measured.encode(df))
    for col in ("weight", "days"):
        assert same(df[col], back[col]), col


def test_measured_edges_are_increasing_even_when_one_value_holds_all_rows(adult_schema, adult_small):
    one = adult_small.assign(**{"hours-per-week": 41, "fnlwgt": 150000})
    enc = TableEncoder.measured(adult_schema, _released(adult_schema, one))
    for col, edges in enc.bin_edges.items():
        assert np.all(np.diff(edges) > 0), col
    back = enc.decode(enc.encode(one))
    assert (back["hours-per-week"] == 41).all() and (back["fnlwgt"] == 150000).all()


def test_edges_that_no_party_could_rebuild_are_refused(adult_schema):
    edges = TableEncoder(adult_schema).bin_edges["age"]
    with pytest.raises(ValueError, match="'age'.*increasing"):
        TableEncoder(adult_schema, {"age": edges[::-1]})
    with pytest.raises(ValueError, match="'age'"):
        TableEncoder(adult_schema, {"age": edges[:-1]})
    with pytest.raises(ValueError, match="does not bin.*education-num"):
        TableEncoder(adult_schema, {"education-num": np.arange(3.0)})
