"""Exact formats: a synthetic file reads like the real one (issue 16).

The tokens, decimals and date format are declared in the public schema; reading accepts
only them and writing uses them, so the synthetic CSV has the input's vocabulary.
"""

import string
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.data.schema import Schema
from fedsynth.common.data.tables import load_table, read_raw, write_table
from fedsynth.common.data.units import bounds_in_units
from fedsynth.common.errors import DataError
from fedsynth.common.model.marginal_fit import MarginalFitConfig
from fedsynth.common.model.tabular import ModelConfig
from fedsynth.common.synthesizer import Synthesizer, TrainingConfig

DATE_FORMAT = "%d/%m/%Y"
SCHEMA = Schema.from_json({"name": "clinic", "columns": [
    {"name": "smoker", "type": "boolean", "true_token": "yes", "false_token": "no"},
    {"name": "member", "type": "boolean", "true_token": "Y", "false_token": "N", "nullable": True},
    {"name": "children", "type": "numerical", "subtype": "int", "min": 0, "max": 10},
    {"name": "visits", "type": "numerical", "subtype": "int", "min": 0, "max": 500, "nullable": True},
    {"name": "price", "type": "numerical", "min": 0, "max": 1000, "decimals": 2},
    {"name": "seen", "type": "datetime", "min": "2015-01-01", "max": "2024-12-31",
     "datetime_format": DATE_FORMAT},
]}, source="clinic.schema.json")


def _real_csv(path, rows: int = 600, seed: int = 0):
    """A table written the way its owner writes it: yes/no, Y/N, blanks, 2 decimals, day-first dates."""
    rng = np.random.default_rng(seed)
    days = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 3600, rows), unit="D")
    member = rng.choice(["Y", "N", ""], rows, p=[0.5, 0.4, 0.1])
    visits = [str(v) if rng.random() > 0.15 else "" for v in rng.integers(0, 400, rows)]
    pd.DataFrame({
        "smoker": rng.choice(["yes", "no"], rows, p=[0.3, 0.7]),
        "member": member,
        "children": rng.integers(0, 5, rows).astype(str),
        "visits": visits,
        "price": [f"{v:.2f}" for v in rng.gamma(2.0, 60.0, rows).clip(0, 1000)],
        "seen": days.strftime(DATE_FORMAT),
    }).to_csv(path, index=False)
    return path


def test_real_table_reads_and_writes_back_to_the_same_text(tmp_path):
    src = _real_csv(tmp_path / "real.csv")
    df = load_table(src, SCHEMA)
    assert df["smoker"].isin([True, False]).all() and df["member"].isna().any()
    write_table(df, tmp_path / "again.csv", schema=SCHEMA)
    assert (tmp_path / "again.csv").read_text() == src.read_text()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats")
    real = load_table(_real_csv(folder / "real.csv"), SCHEMA)
    synth = Synthesizer(SCHEMA, epsilon=1.0, delta=1e-5, training=TrainingConfig(epochs=1),
                        model_config=ModelConfig(hidden=16)).fit(real)
    return synth.sample(400, seed=1), folder


def test_sample_gives_integer_dtypes_and_declared_decimals(synthetic):
    df, _ = synthetic
    assert df["children"].dtype == np.int64
    assert df["visits"].dtype == pd.Int64Dtype()  # nullable, whether or not this sample has a gap
    price = df["price"].to_numpy(dtype=float)
    assert np.allclose(price, np.round(price, 2), rtol=0, atol=1e-9)
    assert set(df["smoker"]) <= {True, False}


def test_synthetic_csv_is_in_the_input_vocabulary_and_format(synthetic):
    df, folder = synthetic
    out = folder / "synthetic.csv"
    assert write_table(df, out, schema=SCHEMA) == len(df)
    text = read_raw(out)  # every cell as the text in the file
    assert set(text["smoker"]) <= {"yes", "no"} and set(text["smoker"]) == {"yes", "no"}
    assert set(text["member"]) <= {"Y", "N", ""}
    assert text["children"].str.fullmatch(r"\d+").all()
    assert text["visits"].str.fullmatch(r"\d*").all()
    assert text["price"].str.fullmatch(r"\d+\.\d{2}").all()
    for value in text["seen"]:
        datetime.strptime(value, DATE_FORMAT)  # raises on anything else
    back = load_table(out, SCHEMA)  # and the schema's own validation accepts the file
    assert back["smoker"].tolist() == df["smoker"].tolist()
    assert back["visits"].isna().tolist() == df["visits"].isna().tolist()


def test_parquet_keeps_native_types_in_the_declared_precision(synthetic, tmp_path):
    df, _ = synthetic
    write_table(df, tmp_path / "s.parquet", schema=SCHEMA)
    raw = pd.read_parquet(tmp_path / "s.parquet")
    assert raw["smoker"].dtype == bool and pd.api.types.is_integer_dtype(raw["children"])
    assert np.allclose(raw["price"], np.round(raw["price"], 2), rtol=0, atol=1e-9)
    assert load_table(tmp_path / "s.parquet", SCHEMA)["member"].isna().tolist() == df["member"].isna().tolist()


GOOD = "smoker,member,children,visits,price,seen\nyes,Y,1,3,10.50,31/12/2020\nno,,0,,7.00,01/01/2016\n"


@pytest.mark.parametrize("row, column, value, problem", [
    ("true,Y,1,3,1.00,31/12/2020", "smoker", "true", "not one of the declared tokens 'yes' / 'no'"),
    ("Yes,Y,1,3,1.00,31/12/2020", "smoker", "Yes", "not one of the declared tokens"),
    ("yes,yes,1,3,1.00,31/12/2020", "member", "yes", "not one of the declared tokens 'Y' / 'N'"),
    ("yes,Y,1,3,1.005,31/12/2020", "price", "1.005", "more than 2 decimal places"),
    ("yes,Y,1,3,1.00,2020-12-31", "seen", "2020-12-31", "not a date/time in the declared format '%d/%m/%Y'"),
    ("yes,Y,1,3,1.00,12/31/2020", "seen", "12/31/2020", "declared format"),
])
def test_a_value_outside_the_declared_form_names_file_column_row_value(tmp_path, row, column, value, problem):
    path = tmp_path / "t.csv"
    path.write_text(GOOD + row + "\n")
    with pytest.raises(DataError) as exc:
        load_table(path, SCHEMA)
    msg = str(exc.value)
    assert str(path) in msg and f"column '{column}', row 3" in msg
    assert repr(value) in msg and problem in msg
    assert len(exc.value.violations) == 1  # only that cell: the rest of the row is in the declared form


def test_without_declared_forms_reading_and_writing_are_unchanged(tmp_path):
    schema = Schema.from_json({"columns": [
        {"name": "flag", "type": "boolean"},
        {"name": "x", "type": "numerical", "min": 0, "max": 10},
        {"name": "d", "type": "datetime", "min": "2000-01-01", "max": "2030-01-01"},
    ]})
    path = tmp_path / "t.csv"
    path.write_text("flag,x,d\nyes,1.2345,2020-12-31\nFALSE,2,31 Dec 2021\n")
    df = load_table(path, schema)
    assert df["flag"].tolist() == [True, False] and df["x"].tolist() == [1.2345, 2.0]
    write_table(df, tmp_path / "out.csv", schema=schema)
    assert (tmp_path / "out.csv").read_text().splitlines()[1:] == ["True,1.2345,2020-12-31", "False,2.0,2021-12-31"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cell=st.text(alphabet=string.ascii_letters + string.digits + " ?/", max_size=6))
def test_a_declared_boolean_accepts_exactly_its_tokens(tmp_path, cell):
    path = tmp_path / "t.csv"
    path.write_text(GOOD + f"{cell},Y,1,3,1.00,31/12/2020\n")
    if cell.strip() in ("yes", "no"):
        assert load_table(path, SCHEMA)["smoker"].iloc[2] == (cell.strip() == "yes")
    else:  # anything else, a missing-looking text included (the column is not nullable), is refused
        with pytest.raises(DataError, match="column 'smoker', row 3"):
            load_table(path, SCHEMA)


GRID = Schema.from_json({"columns": [
    {"name": "wind", "type": "numerical", "min": 0, "max": 60, "step": 1.150779448, "point_masses": [0],
     "nullable": True},
    {"name": "temp", "type": "numerical", "min": -20, "max": 110, "step": 0.18, "step_origin": 32},
    {"name": "calm", "type": "boolean"},
]}, source="weather.schema.json")


def _weather(rows: int = 800, seed: int = 0) -> pd.DataFrame:
    """Wind in whole knots written in mph to 3 places, temperature in tenths of a degree Celsius in Fahrenheit."""
    rng = np.random.default_rng(seed)
    knots = np.where(rng.random(rows) < 0.2, 0, rng.integers(3, 30, rows))
    tenths = rng.integers(-150, 350, rows)
    return pd.DataFrame({"wind": np.round(knots * 1.150779448, 3), "temp": np.round(32 + 0.18 * tenths, 2),
                         "calm": knots == 0})


def _refused_row(path, rows: pd.DataFrame, schema: Schema, column: str, line: str) -> str:
    """``rows`` written to ``path`` read with ``column`` complete; then, with ``line`` appended, one
    violation: its message returned."""
    rows.to_csv(path, index=False)
    assert load_table(path, schema)[column].notna().all()
    path.write_text(path.read_text() + line)
    with pytest.raises(DataError) as exc:
        load_table(path, schema)
    assert len(exc.value.violations) == 1
    return str(exc.value)


def _brief_sample(schema: Schema, real: pd.DataFrame, calibrate: bool) -> pd.DataFrame:
    """500 rows of a one-epoch model; uncalibrated: the decoder's values, snapped."""
    synth = Synthesizer(schema, epsilon=1.0, delta=1e-5, training=TrainingConfig(epochs=1),
                        model_config=ModelConfig(hidden=16)).fit(real)
    synth.calibrate = calibrate
    return synth.sample(500, seed=2)


def test_a_value_off_the_declared_grid_names_file_column_row_value(tmp_path):
    path = tmp_path / "w.csv"  # the 5 rows' 3-place texts of the grid are on it
    msg = _refused_row(path, _weather(5), GRID, "wind", "14.2,39.02,False\n")
    assert str(path) in msg and "column 'wind', row 6" in msg and "'14.2'" in msg and "not on the grid" in msg


@pytest.mark.parametrize("calibrate", [True, False])
def test_synthetic_values_lie_on_the_declared_grid(calibrate):
    df = _brief_sample(GRID, _weather(), calibrate)
    for name in ("wind", "temp"):
        grid = GRID.column(name).grid
        x = df[name].dropna().to_numpy()
        assert np.isin(x, grid.values()).all()  # exactly the grid's values, not merely close to them


LEVELS = Schema.from_json({"columns": [
    {"name": "coins", "type": "numerical", "min": 0, "max": 5, "values": [0, 3.258096, 3.931826, 4.564348, 4.61512],
     "decimals": 6},
    {"name": "visits", "type": "numerical", "subtype": "int", "min": 0, "max": 1000, "values": [0, 3, 17, 250]},
    {"name": "cost", "type": "numerical", "min": 0, "max": 100},
]}, source="plan.schema.json")


def _plans(rows: int = 800, seed: int = 0) -> pd.DataFrame:
    """Log coinsurance rates (five codes on no grid), sparse integer codes and a continuous cost."""
    rng = np.random.default_rng(seed)
    coins = rng.choice(LEVELS.column("coins").values, rows, p=[0.55, 0.2, 0.07, 0.13, 0.05])
    return pd.DataFrame({"coins": coins, "visits": rng.choice([0, 3, 17, 250], rows),
                         "cost": np.round(coins * 10 + rng.uniform(0, 50, rows), 3)})


def test_a_value_not_among_the_declared_values_names_file_column_row_value(tmp_path):
    path = tmp_path / "p.csv"
    msg = _refused_row(path, _plans(5), LEVELS, "coins", "3.5,17,20.0\n")
    assert str(path) in msg and "column 'coins', row 6" in msg and "'3.5'" in msg and "not on the 5 values" in msg


@pytest.mark.parametrize("calibrate", [True, False])
def test_synthetic_values_are_among_the_declared_values(calibrate, tmp_path):
    df = _brief_sample(LEVELS, _plans(), calibrate)
    assert set(df["coins"]) <= set(LEVELS.column("coins").values) and len(set(df["coins"])) >= 3
    assert set(df["visits"]) <= {0, 3, 17, 250} and df["visits"].dtype == np.int64
    assert df["cost"].nunique() > 100  # the undeclared column stays continuous
    write_table(df, tmp_path / "s.csv", schema=LEVELS)
    assert read_raw(tmp_path / "s.csv")["coins"].isin(["0.000000", "3.258096", "3.931826", "4.564348", "4.615120"]).all()


CLOCK = Schema.from_json({"columns": [
    {"name": "dep", "type": "numerical", "subtype": "int", "min": 500, "max": 2359, "clock": "HHMM"},
    {"name": "arr", "type": "numerical", "subtype": "int", "min": 0, "max": 2359, "clock": "HHMM", "nullable": True},
    {"name": "late", "type": "boolean"},
]})


def _schedule(rows: int = 800, seed: int = 0) -> pd.DataFrame:
    """Departures on the quarter hour from 05:00, arrivals 40 minutes to 6 hours later (past midnight: the next day's)."""
    rng = np.random.default_rng(seed)
    dep = 300 + 15 * rng.integers(0, 76, rows)  # minutes since midnight: 05:00 .. 23:45
    arr = (dep + rng.integers(40, 360, rows)) % 1440
    hhmm = lambda m: (m // 60) * 100 + m % 60  # noqa: E731
    return pd.DataFrame({"dep": hhmm(dep), "arr": pd.array(np.where(rng.random(rows) < 0.05, np.nan, hhmm(arr)),
                                                            dtype="Int64"), "late": rng.random(rows) < 0.3})


def test_a_time_that_is_not_hhmm_names_file_column_row_value(tmp_path):
    path = tmp_path / "s.csv"
    msg = _refused_row(path, _schedule(5), CLOCK, "dep", "1275,1300,False\n")
    assert str(path) in msg and "column 'dep', row 6" in msg and "'1275'" in msg and "HHMM" in msg


def test_the_encoder_counts_a_clock_column_in_minutes():
    encoder = TableEncoder(CLOCK)
    times = pd.DataFrame({"dep": [500, 1259, 1300, 2359], "arr": pd.array([0, 1259, None, 1300], dtype="Int64"),
                          "late": [True, False, True, False]})
    assert encoder.decode(encoder.encode(times))["dep"].tolist() == [500, 1259, 1300, 2359]
    [dep] = [h for h in encoder.histograms if h.column == "dep"]
    assert (dep.lo, dep.hi) == (300, 1439)  # 05:00 to 23:59, in minutes
    counts = dep.counts(times["dep"])
    bins = np.minimum(np.searchsorted(dep.edges, [300, 12 * 60 + 59, 13 * 60, 1439], side="right") - 1, dep.bins - 1)
    assert counts[bins].tolist() == [1, 2, 2, 1] and counts.sum() == 4  # 12:59 and 13:00 share a bin


def test_the_encoder_bins_on_the_line_its_histograms_count_on():
    """The encoder's bins are placed at its histograms' released quantiles: both must count a
    clock in minutes, a datetime in days and point masses in those units, or the bins land off."""
    schema = Schema.from_json({"columns": [
        *CLOCK.to_json()["columns"][:2],
        {"name": "seen", "type": "datetime", "min": "2013-01-01", "max": "2013-12-31"},
        {"name": "wait", "type": "numerical", "subtype": "int", "min": 0, "max": 2359, "clock": "HHMM",
         "point_masses": [1200]},
    ]})
    encoder = TableEncoder(schema)
    codecs = {(b.column.name, b.part): b for c in encoder.codecs for b in getattr(c, "parts", (c,))}
    for h in encoder.histograms:
        codec = codecs[h.column, h.part]
        assert (codec.lo, codec.hi) == (h.lo, h.hi), h.column
        assert codec.point_masses == list(h.atoms), h.column
    [wait] = [h for h in encoder.histograms if h.column == "wait"]
    assert wait.atoms == (720.0,) and wait.hi == 1439  # noon and 23:59, in minutes
    [seen, seen_time] = [h for h in encoder.histograms if h.column == "seen"]  # no format: times too
    assert seen.hi - seen.lo == 364 and seen_time.hi - seen_time.lo == 1440  # days; minutes
    values = pd.Series(pd.array([1200, None], dtype="Int64"))
    assert np.array_equal(wait.values(values), [720.0, np.nan], equal_nan=True)


def test_datetime_bounds_written_in_two_forms_are_each_read():
    """A draft bounds a column with times as '2017-01-01' .. '2018-12-31T23:59:59': pandas parses a
    list of texts in the first one's format, which refused the second and so every fit."""
    schema = Schema.from_json({"columns": [
        {"name": "seen", "type": "datetime", "min": "2017-01-01", "max": "2018-12-31T23:59:59"},
        {"name": "kind", "type": "categorical", "categories": ["a", "b"]}]})
    assert bounds_in_units(schema.column("seen")) == pytest.approx((17167, 17167 + 730 - 1 / 86400))
    encoder = TableEncoder(schema)
    [seen, _] = encoder.histograms  # its days, then its times of day
    assert seen.lo == (pd.Timestamp("2017-01-01") - pd.Timestamp("1970-01-01")).days == 17167
    assert seen.hi - seen.lo == 729  # 2018-12-31, a whole day
    assert (encoder.codecs[0].parts[0].lo, encoder.codecs[0].parts[0].hi) == (seen.lo, seen.hi)


@pytest.mark.parametrize("calibrate", [True, False])
def test_synthetic_clock_values_are_times_of_day(calibrate, tmp_path):
    df = _brief_sample(CLOCK, _schedule(), calibrate)
    for name in ("dep", "arr"):
        present = df[name].dropna().to_numpy(dtype=float)
        assert len(present) > 400 and np.all(present % 100 < 60), name  # 1275 is no time
        assert df[name].dtype == ("Int64" if name == "arr" else np.int64)
    assert df["dep"].min() >= 500 and df["dep"].nunique() > 20
    write_table(df, tmp_path / "s.csv", schema=CLOCK)
    assert load_table(tmp_path / "s.csv", CLOCK)["dep"].tolist() == df["dep"].tolist()


def test_decoded_decimals_stay_inside_bounds_held_at_that_precision():
    schema = Schema.from_json({"columns": [
        {"name": "dose", "type": "numerical", "min": 1.1, "max": 2.29, "decimals": 2},
        {"name": "rate", "type": "numerical", "min": 0, "max": 2.345, "decimals": 2},
    ]})
    encoder = TableEncoder(schema)
    values = pd.DataFrame({"dose": [1.1, 1.25, 2.29], "rate": [0.0, 1.0, 2.345]})
    decoded = encoder.decode(encoder.encode(values))
    # bounds held at 2 places come back as they are (1.1 * 100 is 110.00000000000001 in floats)
    assert decoded["dose"].tolist() == [1.1, 1.25, 2.29]
    assert decoded["rate"].tolist() == [0.0, 1.0, 2.34]  # one with more places rounds inward


STOPS = Schema.from_json({"columns": [
    {"name": "stopped", "type": "datetime", "min": "2017-01-01", "max": "2018-12-31T23:59:59",
     "datetime_format": "%Y-%m-%dT%H:%M:%SZ", "bins": 12, "nullable": True},
    {"name": "kind", "type": "categorical", "categories": ["night", "day"]},
]})


def _stops(rows: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Night stops between 22:00 and 02:00, day stops between 10:00 and 14:00, on any day of two years."""
    rng = np.random.default_rng(seed)
    night = rng.random(rows) < 0.4
    minutes = np.where(night, (22 * 60 + rng.integers(0, 240, rows)) % 1440, 10 * 60 + rng.integers(0, 240, rows))
    when = (pd.Timestamp("2017-01-01") + pd.to_timedelta(rng.integers(0, 729, rows), unit="D")
            + pd.to_timedelta(minutes * 60 + rng.integers(0, 60, rows), unit="s"))
    stopped = pd.Series(when).where(rng.random(rows) > 0.05)  # 5 % unknown
    return pd.DataFrame({"stopped": stopped, "kind": np.where(night, "night", "day")})


def _in_window(when: pd.Series, kind: pd.Series) -> pd.Series:
    hour = when.dt.hour
    return pd.Series(np.where(kind == "night", (hour >= 22) | (hour < 2), hour.between(10, 13)))[when.notna().to_numpy()]


def test_a_timestamp_is_laid_out_as_its_day_and_its_time_of_day():
    """On one line of days a bin spans days and the hours inside it come out flat: a timestamp's
    day and time of day are binned apart, and decode back to the second."""
    encoder = TableEncoder(STOPS)
    parts = [(s.kind, s.part, s.label) for s in encoder.segments if s.column == "stopped"]
    assert parts == [("softmax", "day", "stopped"), ("offset", "day", "stopped"),
                     ("softmax", "time", "stopped (time of day)"), ("offset", "time", "stopped (time of day)")]
    real = _stops(400)
    back = encoder.decode(encoder.encode(real), seed=0)
    assert back["stopped"].isna().equals(real["stopped"].isna())
    assert (back["stopped"] == real["stopped"]).sum() == real["stopped"].notna().sum()  # to the second
    day, time = [h for h in encoder.histograms if h.column == "stopped"]
    assert (day.part, time.part, time.lo, time.hi) == ("day", "time", 0.0, 1440.0)
    assert day.hi - day.lo == 729  # whole days from 2017-01-01 to 2018-12-31
    counts = time.counts(real["stopped"])
    assert counts.sum() == len(real) and counts[-1] == real["stopped"].isna().sum()  # each row once
    edges = np.asarray(time.edges)
    office = (edges[:-1] >= 600) & (edges[1:] <= 840)  # cells wholly inside 10:00-14:00
    assert counts[:-1][office].sum() == pytest.approx(((real["kind"] == "day") & real["stopped"].notna()).sum(), abs=5)


def test_a_timestamps_measured_edges_travel_as_one_entry_and_are_checked():
    encoder = TableEncoder.measured(STOPS, [h.counts(_stops()[h.column]) for h in TableEncoder(STOPS).histograms])
    edges = encoder.bin_edges["stopped"]
    assert edges.shape == (26,) and list(encoder.bin_edges) == ["stopped"]
    day, time = edges[:13], edges[13:]
    assert (time[0], time[-1]) == (0.0, 1440.0) and np.all(np.diff(time) > 0) and np.all(np.diff(day) > 0)
    assert np.sum((time[1:-1] > 600) & (time[1:-1] < 840)) >= 4  # the busy hours get most of the bins
    again = TableEncoder(STOPS, encoder.bin_edges)
    assert np.array_equal(again.bin_edges["stopped"], edges)
    with pytest.raises(ValueError, match="'stopped'.*13 for its days then 13 for its times of day"):
        TableEncoder(STOPS, {"stopped": day})


def test_calibrated_timestamps_take_the_released_hours_and_keep_their_days():
    """A model that knows nothing of the hours (its time of day anywhere in the day) is mapped onto
    the released time-of-day histogram, without moving its days off theirs."""
    from fedsynth.common.calibration import calibrated_rows
    real = _stops()
    encoder = TableEncoder(STOPS)
    x = encoder.encode(real)
    rng = np.random.default_rng(1)
    [time_softmax] = [s for s in encoder.segments if s.part == "time" and s.kind == "softmax"]

    def generate(n: int) -> np.ndarray:
        rows = x[rng.integers(0, len(x), n)].copy()
        rows[:, time_softmax.start : time_softmax.end] = 0.0
        rows[np.arange(n), time_softmax.start + rng.integers(0, time_softmax.size, n)] = 1.0
        rows[:, time_softmax.end] = rng.uniform(-1, 1, n)
        return rows

    flat = encoder.decode(generate(2000), seed=0)
    assert _in_window(flat["stopped"], flat["kind"]).mean() < 0.3  # 4 hours of 24, either way
    hist = [h.counts(real[h.column]) for h in encoder.histograms]
    shares = np.array([(real["kind"] == k).mean() for k in ("night", "day")])
    out = calibrated_rows(generate, encoder, [shares], hist, 2000, rng)
    hour = out["stopped"].dropna().dt.hour
    assert ((hour >= 22) | (hour < 2) | hour.between(10, 13)).mean() > 0.97
    assert out["stopped"].dropna().between(pd.Timestamp("2017-01-01"), pd.Timestamp("2018-12-31T23:59:59")).all()
    assert out["stopped"].dt.year.value_counts(normalize=True)[2017] == pytest.approx(0.5, abs=0.05)


def test_a_fitted_model_keeps_the_hours_of_its_timestamps_and_their_relation(tmp_path):
    """The hours come from the released time-of-day histogram; which stops happen at night from the
    marginal fit, which measures kind x time of day as a pair (without it: about 0.52, independent)."""
    real = _stops(2000)
    synth = Synthesizer(STOPS, epsilon=3.0, delta=1e-5, training=TrainingConfig(epochs=1),
                        model_config=ModelConfig(hidden=32), marginal_fit=MarginalFitConfig(steps=200)).fit(real)
    assert ["stopped (time of day)", "kind"] in synth.info["marginal_fit"]["pairs"]
    out = synth.sample(2000, seed=0)
    hour = out["stopped"].dropna().dt.hour
    assert ((hour >= 22) | (hour < 2) | hour.between(10, 13)).mean() > 0.8  # flat: 0.33
    assert _in_window(out["stopped"], out["kind"]).mean() > 0.7  # night stops at night, day stops by day
    write_table(out, tmp_path / "s.csv", schema=STOPS)
    written = read_raw(tmp_path / "s.csv")["stopped"]
    present = written[written != ""]
    assert len(present) == out["stopped"].notna().sum() and len(present) < len(written)  # gaps stay gaps
    assert present.str.fullmatch(r"201[78]-\d\d-\d\dT\d\d:\d\d:\d\dZ").all(), present.head().tolist()
    # saved, it loads and samples the same; saved by a fedsynth that counted the timestamp in days alone
    # (one histogram for it), it is refused with what to do, not called damaged
    import json

    from fedsynth.common.artifact import META_FILE, model_id
    from fedsynth.common.errors import FedsynthError
    folder = synth.save(tmp_path / "model")
    assert Synthesizer.load(folder).sample(300, seed=4).equals(synth.sample(300, seed=4))
    meta = json.loads((folder / META_FILE).read_text())
    assert len(meta["marginals"]) == 2
    meta["marginals"] = meta["marginals"][:1]
    meta["model_id"] = model_id(meta, (folder / "weights.pt").read_bytes())
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(FedsynthError, match="earlier fedsynth.*'stopped'.*fit it again"):
        Synthesizer.load(folder)
