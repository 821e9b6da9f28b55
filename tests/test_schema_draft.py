"""`schema draft` on tables a new user brings: plausible drafts, a warning per odd column, no traceback.

Every draft must pass the validator on the table it was drafted from, and every column of the
table is either drafted or listed under ``drop`` with a warning naming it.
"""

import json
import random
import string

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _cli import fedsynth
from fedsynth.common.data.schema_draft import MONTHS, WEEKDAYS, Draft, draft_file
from fedsynth.common.data.tables import load_table, read_raw, validate_file, write_table
from fedsynth.common.data.schema import Schema
from fedsynth.common.errors import FedsynthError, SchemaError
from fedsynth.common.model.tabular import ModelConfig
from fedsynth.common.synthesizer import Synthesizer, TrainingConfig

PROFILE = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def draft_of(tmp_path, columns: dict, name: str = "t.csv") -> tuple[Draft, object]:
    path = tmp_path / name
    pd.DataFrame(columns).to_csv(path, index=False)
    return draft_file(path), path


def assert_sound(draft: Draft, path) -> None:
    """The draft validates its own table; each column is drafted or dropped with a warning naming it."""
    report = validate_file(path, draft.schema)
    assert report.ok, [str(v) for v in report.violations[:5]]
    table_columns = list(read_raw(path).columns)
    assert sorted(draft.schema.table_names + list(draft.schema.drop)) == sorted(table_columns)
    for dropped in draft.schema.drop:
        assert any(w.startswith(f"column {dropped!r}:") for w in draft.warnings)


# ------------------------------------------------------------------ calendar names
@pytest.mark.parametrize("names, expected", [
    ([m[:3] for m in MONTHS], [m[:3] for m in MONTHS]),
    ([m.title() for m in MONTHS], [m.title() for m in MONTHS]),
    (["MAR", "JAN", "DEC"], [m[:3].upper() for m in MONTHS]),  # one style: the full public list
    ([d[:3] for d in WEEKDAYS], [d[:3] for d in WEEKDAYS]),
    (["Sunday", "Monday", "Friday"], [d.title() for d in WEEKDAYS]),
    (["Feb", "january", "Sept"], ["january", "Feb", "Sept"]),  # mixed styles: the tokens seen, in calendar order
])
def test_month_and_weekday_names_are_categories_in_calendar_order(tmp_path, names, expected):
    rng = random.Random(0)
    values = [rng.choice(names) for _ in range(200)] + names
    draft, path = draft_of(tmp_path, {"when": values})
    col = draft.schema.column("when")
    assert col.type == "categorical"
    assert list(col.categories) == expected
    assert_sound(draft, path)


def test_cli_drafts_month_names_without_a_traceback(tmp_path):
    path = tmp_path / "bank.csv"
    pd.DataFrame({"month": [m[:3] for m in MONTHS] * 5, "balance": range(60)}).to_csv(path, index=False)
    r = fedsynth("schema", "draft", str(path))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert '"jan"' in r.stdout and "calendar order" in r.stderr


def test_times_of_day_and_text_are_not_dates(tmp_path):
    draft, path = draft_of(tmp_path, {"time": ["10:30", "11:45", "09:00"] * 20,
                                      "code": ["A-12", "B-7", "C-3"] * 20})
    assert draft.schema.column("time").type == "categorical"
    assert draft.schema.column("code").type == "categorical"
    assert_sound(draft, path)


@pytest.mark.parametrize("fmt", ["%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%d %b %Y", "%Y-%m-%d %H:%M:%S"])
def test_dates_are_drafted_with_whole_year_bounds(tmp_path, fmt):
    stamps = pd.date_range("2020-01-01 07:00", "2020-12-31 18:00", periods=120)
    draft, path = draft_of(tmp_path, {"d": stamps.strftime(fmt)})
    col = draft.schema.column("d")
    assert col.type == "datetime"
    assert pd.Timestamp(col.min) == pd.Timestamp("2020-01-01")
    assert pd.Timestamp("2020-12-31") <= pd.Timestamp(col.max) < pd.Timestamp("2021-01-01")
    assert_sound(draft, path)


# ------------------------------------------------------------------ numeric bounds
@pytest.mark.parametrize("lo, hi, expected", [
    (1, 31, (1, 31)),      # day of month, not [0, 40]
    (1, 12, (1, 12)),      # month number
    (0, 23, (0, 23)),      # hour of day
    (0, 100, (0, 100)),    # a percentage, not [0, 200]
    (1990, 2020, (1990, 2020)),
    (1, 16, (1, 16)),      # a 1-based code (education-num), not [0, 16]
])
def test_integer_columns_get_plausible_public_bounds(tmp_path, lo, hi, expected):
    values = np.random.default_rng(0).integers(lo, hi + 1, 500)
    values[:2] = lo, hi
    draft, path = draft_of(tmp_path, {"x": values})
    col = draft.schema.column("x")
    assert (col.subtype, col.min, col.max) == ("int", *expected)
    assert any("bounds" in w and "confirm them from public knowledge" in w for w in draft.warnings)
    assert_sound(draft, path)


@pytest.mark.parametrize("lo, hi", [(17, 90), (0, 1000), (-2000.5, -3.25), (0.001, 0.37), (3, 250_000)])
def test_bounds_are_rounded_outward_without_absurd_widening(tmp_path, lo, hi):
    values = np.linspace(lo, hi, 300)
    draft, path = draft_of(tmp_path, {"x": values})
    col = draft.schema.column("x")
    assert col.min <= lo and col.max >= hi
    assert (col.max - col.min) <= 1.25 * (hi - lo)
    assert_sound(draft, path)


def test_sentinel_value_is_a_point_mass_and_an_exact_bound(tmp_path):
    rng = np.random.default_rng(1)
    values = np.where(rng.random(1000) < 0.8, -1, rng.integers(1, 200, 1000))
    draft, path = draft_of(tmp_path, {"days_since": values})
    col = draft.schema.column("days_since")
    assert -1.0 in col.point_masses
    assert col.min == -1 and 199 <= col.max <= 250
    assert any("point masses -1" in w for w in draft.warnings)
    assert_sound(draft, path)


# ------------------------------------------------------------------ odd columns
def test_odd_columns_are_dropped_with_a_warning_each(tmp_path):
    n = 60
    draft, path = draft_of(tmp_path, {
        "code": [str(10**30 + i) for i in range(n)],        # integers beyond float precision
        "notes": ["x" * 12_000] * n,                          # longer than the validator accepts
        "empty": [""] * n,
        "money": [f"${v:,}" for v in range(1000, 1000 + 37 * n, 37)],
        "ok": ["yes", "no"] * (n // 2),
    })
    assert draft.schema.names == ["ok"]
    assert set(draft.schema.drop) == {"code", "notes", "empty", "money"}
    assert any("'money'" in w and "units or separators" in w for w in draft.warnings)
    assert_sound(draft, path)


def test_a_table_with_nothing_to_draft_is_a_schema_error_naming_the_file(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("a,b\n,\n?,NA\n")
    with pytest.raises(SchemaError, match="blank.csv: no column could be drafted"):
        draft_file(path)


@pytest.mark.parametrize("text, message", [
    ("t,v\n2021-01-01T00:00:00+02:00,1\n2021-01-02T00:00:00+05:00,2\n2021-01-03T00:00:00Z,3\n", "time zones"),
    ("t,v\n2021-01-01T00:00:00+02:00,1\n2021-01-02T00:00:00+02:00,2\n2021-01-03T00:00:00+02:00,3\n", "time zones"),
])
def test_dates_with_time_zones_are_dropped_with_a_reason(tmp_path, text, message):
    path = tmp_path / "tz.csv"
    path.write_text(text)
    draft = draft_file(path)
    assert draft.schema.drop == ("t",)
    assert any(w.startswith("column 't':") and message in w for w in draft.warnings)
    assert_sound(draft, path)


def test_a_file_split_by_semicolons_is_named_as_such(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("a;b\n" + "".join(f"{i % 3};{i}\n" for i in range(30)))
    with pytest.raises(SchemaError, match="semi.csv: no column could be drafted.*split by another delimiter"):
        draft_file(path)


def test_mostly_numeric_column_says_which_value_is_not_a_number(tmp_path):
    values = [str(v) for v in range(5)] * 19 + ["unknown"] * 5
    draft, path = draft_of(tmp_path, {"n": values})
    assert any("'unknown'" in w and "mostly numbers" in w for w in draft.warnings)
    assert_sound(draft, path)


# ------------------------------------------------------------------ property: never a traceback
_cells = st.one_of(
    st.integers(-10**25, 10**25).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "?", "NA", "null", "yes", "no", "Y", "true", "0", "1", "-1", "inf", "1e400",
                     "12%", "$1,200", "10:30", "2020-02-30", "2021-03-04", "03/04/2021", "4 Mar 2021",
                     "jan", "Feb", "MAR", "monday", "Sun", "é", "日本", "🙂", "x" * 10_050]),
    st.text(max_size=12),
)
_month_style = st.sampled_from([str.lower, str.upper, str.title, lambda m: m[:3], lambda m: m[:3].upper()])


@st.composite
def _column(draw, n: int) -> list[str]:
    kind = draw(st.sampled_from(["cells", "months", "ints", "floats", "dates", "sentinel"]))
    if kind == "cells":
        return draw(st.lists(_cells, min_size=n, max_size=n))
    if kind == "months":
        style = draw(_month_style)
        return [style(m) for m in draw(st.lists(st.sampled_from(MONTHS + WEEKDAYS[:2]), min_size=n, max_size=n))]
    if kind == "ints":
        lo = draw(st.integers(-10**18, 10**18))
        return [str(v) for v in draw(st.lists(st.integers(lo, lo + draw(st.integers(0, 10**6))), min_size=n, max_size=n))]
    if kind == "floats":
        return [repr(v) for v in draw(st.lists(st.floats(-1e300, 1e300), min_size=n, max_size=n))]
    if kind == "dates":
        days = draw(st.lists(st.integers(-40_000, 40_000), min_size=n, max_size=n))
        fmt = draw(st.sampled_from(["%Y-%m-%d", "%d/%m/%Y", "%b %d, %Y", "%Y-%m-%d %H:%M"]))
        return [(pd.Timestamp("2000-01-01") + pd.Timedelta(days=d)).strftime(fmt) for d in days]
    return draw(st.lists(st.sampled_from(["-1", "-1", "-1", "3", "17", ""]), min_size=n, max_size=n))


@st.composite
def _tables(draw) -> pd.DataFrame:
    n = draw(st.integers(1, 40))
    names = draw(st.lists(st.text(alphabet=string.ascii_letters + "é _-.日", min_size=1, max_size=8),
                          min_size=1, max_size=5, unique=True))
    return pd.DataFrame({name: draw(_column(n)) for name in names})


@PROFILE
@given(table=_tables())
def test_draft_never_crashes_and_always_validates_its_own_table(tmp_path, table):
    path = tmp_path / "odd.csv"
    table.to_csv(path, index=False)
    try:
        draft = draft_file(path)
    except FedsynthError as exc:  # an unreadable or undraftable table: a clear error naming the file
        assert str(path) in str(exc)
        return
    assert_sound(draft, path)


# ------------------------------------------------------------------ the file's own forms
@pytest.mark.parametrize(("true", "false"), [("yes", "no"), ("Y", "N"), ("TRUE", "FALSE")])
def test_booleans_are_drafted_with_the_files_own_tokens(tmp_path, true, false):
    draft, path = draft_of(tmp_path, {"smoker": [true, false, false, true] * 10})
    col = draft.schema.column("smoker")
    assert (col.type, col.true_token, col.false_token) == ("boolean", true, false)
    assert_sound(draft, path)


def test_zero_one_flags_are_drafted_as_booleans_written_back_as_1_and_0(tmp_path):
    """A 0/1 flag (a diagnosis, a plan taken) is a condition the model can sample from and a class
    TSTR can score; as an int column it was neither. A column of 0 alone stays a number."""
    draft, path = draft_of(tmp_path, {"insured": [1, 0, 0, 1, 0] * 8, "count": [0, 1, 2, 1, 0] * 8,
                                      "none": [0] * 40, "gaps": ["1", "", "0", "0", "1"] * 8})
    col = draft.schema.column("insured")
    assert (col.type, col.true_token, col.false_token) == ("boolean", "1", "0")
    assert draft.schema.column("gaps").type == "boolean" and draft.schema.column("gaps").nullable
    assert draft.schema.column("count").type == draft.schema.column("none").type == "numerical"
    assert any("'insured': 0 and 1 only" in w for w in draft.warnings)
    assert_sound(draft, path)
    df = load_table(path, draft.schema)
    assert df["insured"].tolist() == [True, False, False, True, False] * 8
    write_table(df, tmp_path / "back.csv", schema=draft.schema)
    assert (tmp_path / "back.csv").read_text() == path.read_text()


def test_hhmm_times_of_day_are_drafted_as_a_clock_and_other_integers_are_not(tmp_path):
    """Departures written HHMM get clock 'HHMM' over the whole day; years 2000-2023 (every value
    below x60 too, but 24 values in one 'hour') and counts up to 1,200 stay plain integers."""
    rng = np.random.default_rng(0)
    minutes = rng.integers(5 * 60, 24 * 60, 400)
    draft, path = draft_of(tmp_path, {"dep": (minutes // 60) * 100 + minutes % 60,
                                      "year": rng.integers(2000, 2024, 400), "count": rng.integers(0, 1200, 400)})
    dep = draft.schema.column("dep")
    assert (dep.clock, dep.subtype, dep.min, dep.max, dep.step, dep.values) == ("HHMM", "int", 0, 2359, None, None)
    assert draft.schema.column("year").clock is None and draft.schema.column("count").clock is None
    assert any("'dep': every value reads as a time of day written HHMM" in w for w in draft.warnings)
    assert_sound(draft, path)


def test_a_few_values_on_no_grid_are_drafted_as_the_columns_values(tmp_path):
    """Log coinsurance rates (5 codes) and sparse integer codes come back as exactly those values;
    a run of whole numbers, a continuous reading and a small table's few floats do not get a list."""
    rng = np.random.default_rng(0)
    coins = [0.0, 3.258096, 3.931826, 4.564348, 4.61512]
    draft, path = draft_of(tmp_path, {"coins": rng.choice(coins, 400), "code": rng.choice([0, 3, 17, 250], 400),
                                      "age": rng.integers(20, 90, 400), "cost": rng.uniform(0, 100, 400).round(6)})
    assert draft.schema.column("coins").values == tuple(coins)
    assert draft.schema.column("code").values == (0.0, 3.0, 17.0, 250.0)
    assert draft.schema.column("age").values is None and draft.schema.column("cost").values is None
    assert any("'coins': only 5 distinct values, on no regular grid" in w for w in draft.warnings)
    assert_sound(draft, path)
    small, small_path = draft_of(tmp_path, {"coins": coins * 3}, name="small.csv")  # 3 rows a value: too few
    assert small.schema.column("coins").values is None
    assert_sound(small, small_path)


def test_a_readings_repeated_values_are_drafted_as_point_masses(tmp_path):
    """A deductible of 6.160541 in about 15 % of rows, 0 in 40 %: both point masses, so synthetic rows hold
    those exact values (inside a fine histogram cell they were smeared). Integers and readings whose
    values all repeat by design (on a grid) keep the 20 % rule."""
    rng = np.random.default_rng(0)
    n = 1000
    fmde = np.where(rng.random(n) < 0.4, 0.0, np.where(rng.random(n) < 0.25, 6.160541, rng.uniform(5, 9, n).round(6)))
    hours = np.where(rng.random(n) < 0.1, 40, rng.integers(1, 99, n))
    draft, path = draft_of(tmp_path, {"fmde": fmde, "hours": hours})
    assert draft.schema.column("fmde").point_masses == (0.0, 6.160541)
    assert draft.schema.column("hours").point_masses == ()
    assert any("'fmde': declared point masses 6.160541 (" in w and "a continuous reading would not" in w
               for w in draft.warnings)
    assert_sound(draft, path)


def test_floats_keep_the_decimal_places_they_are_written_with(tmp_path):
    draft, path = draft_of(tmp_path, {"price": ["12.50", "3.75", "100.00", "0.05"] * 10,
                                      "ratio": ["1e-3", "2.5", "3.1", "0.2"] * 10})
    assert draft.schema.column("price").decimals == 2
    assert draft.schema.column("ratio").decimals is None  # exponent notation: no fixed precision to keep
    assert_sound(draft, path)


def test_readings_on_a_coarser_grid_than_their_texts_are_drafted_with_it(tmp_path):
    rng = np.random.default_rng(0)
    knots, tenths = rng.integers(0, 40, 300), rng.integers(-100, 350, 300)
    draft, path = draft_of(tmp_path, {
        "wind": [f"{k * 1.150779448:.3f}" for k in knots],  # whole knots in mph: gaps of 1.150 and 1.151
        "temp": [f"{32 + 0.18 * t:.2f}" for t in tenths],  # tenths of a degree Celsius in Fahrenheit
        "direction": [str(10 * d) for d in rng.integers(0, 37, 300)],
        "humid": [f"{v:.2f}" for v in rng.uniform(10, 100, 300)],  # a computed value: no grid
        "count": [str(v) for v in rng.integers(0, 500, 300)],
    })
    s = draft.schema
    assert s.column("wind").step == pytest.approx(1.150779448, abs=2e-6) and s.column("wind").step_origin is None
    assert (s.column("temp").step, s.column("temp").step_origin) == (0.18, 0.14)  # 32 = 0.14 + 177 x 0.18
    assert (s.column("direction").step, s.column("direction").step_origin) == (10, None)
    assert s.column("humid").step is None and s.column("count").step is None
    assert sum("lies on a grid" in w for w in draft.warnings) == 3  # each one flagged as read off the rows
    typed = load_table(path, s)
    wind = s.column("wind").grid  # a grid value written at the column's decimals is the text itself
    assert (np.round(wind.snap(typed["wind"].to_numpy()), 3) == typed["wind"].to_numpy()).all()
    assert_sound(draft, path)


def test_dates_get_their_one_format_and_an_ambiguous_one_is_left_to_the_owner(tmp_path):
    days = [f"{d:02d}/{m:02d}/2020" for d in (3, 17, 28) for m in (1, 6, 11)]
    draft, path = draft_of(tmp_path, {"seen": days * 4, "ambiguous": ["01/02/2020", "03/04/2021"] * 18})
    assert draft.schema.column("seen").datetime_format == "%d/%m/%Y"
    assert draft.schema.column("ambiguous").datetime_format is None
    assert any("ambiguous" in w and "several formats" in w for w in draft.warnings)
    assert_sound(draft, path)


# ------------------------------------------------------------------ SDV metadata
def test_from_sdv_follows_sdvs_types_and_leaves_its_file_valid_for_sdv(tmp_path):
    """Alone, the draft would read 1..5 codes as numbers and could not tell 01/02/2020 from
    02/01/2020; with the SDV metadata each column takes SDV's type."""
    n = 60
    rng = np.random.default_rng(0)
    path = tmp_path / "t.csv"
    pd.DataFrame({
        "id": [f"p{i:04d}" for i in range(n)],
        "grade": rng.integers(1, 6, n),
        "smoker": rng.integers(0, 2, n),
        "seen": [f"{d:02d}/{m:02d}/2021" for d, m in zip(rng.integers(1, 13, n), rng.integers(1, 13, n))],
        "weight": rng.integers(50, 100, n),
        "age": rng.integers(20, 80, n),
    }).to_csv(path, index=False)
    sdv = {"METADATA_SPEC_VERSION": "SINGLE_TABLE_V1", "primary_key": "id", "columns": {
        "id": {"sdtype": "id"}, "grade": {"sdtype": "categorical"}, "smoker": {"sdtype": "boolean"},
        "seen": {"sdtype": "datetime", "datetime_format": "%d/%m/%Y"},
        "weight": {"sdtype": "numerical", "computer_representation": "Float"},
        "gone": {"sdtype": "categorical"}}}
    meta = tmp_path / "metadata.json"
    meta.write_text(json.dumps(sdv))
    before = meta.read_bytes()

    res = fedsynth("schema", "draft", str(path), "--from-sdv", str(meta))

    assert res.returncode == 0, res.stderr
    assert meta.read_bytes() == before  # SDV's file is read, never written
    schema = Schema.from_json(json.loads(res.stdout))
    alone = draft_file(path).schema
    assert alone.column("grade").type == "numerical"
    assert schema.column("grade").categories == ("1", "2", "3", "4", "5")
    assert schema.column("smoker").type == "boolean"
    assert schema.column("seen").datetime_format == "%d/%m/%Y"
    assert schema.column("weight").subtype == "float" and schema.column("age").subtype == "int"
    assert schema.drop == () and [(c.name, c.position, c.regex_format) for c in schema.ids] == [("id", 0, "p[0-9]{4}")]
    assert "column 'id': id format 'p[0-9]{4}' read off the values; confirm it" in res.stderr
    assert "column 'gone': in the SDV metadata but not in the table" in res.stderr
    assert "column 'age': not in the SDV metadata" in res.stderr
    assert validate_file(path, schema).ok


def test_from_sdv_names_a_value_that_breaks_sdvs_type(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"x": ["1", "2", "n/a?", "4"] * 5, "y": list("abab") * 5}).to_csv(path, index=False)
    meta = tmp_path / "m.json"
    meta.write_text(json.dumps({"columns": {"x": {"sdtype": "numerical"}, "y": {"sdtype": "categorical"}}}))
    draft = draft_file(path, sdv=meta)
    assert draft.schema.drop == ("x",)
    assert any("'x'" in w and "'n/a?' is not a number" in w for w in draft.warnings)


# ------------------------------------------------------------------ identifiers
def test_from_sdv_keeps_an_id_column_in_its_regex_format(tmp_path):
    n = 40
    path = tmp_path / "t.csv"
    pd.DataFrame({"x": list("ab") * (n // 2), "ref": [f"ID_{i:05d}" for i in range(n)],
                  "serial": range(500, 500 + n)}).to_csv(path, index=False)
    meta = tmp_path / "m.json"
    meta.write_text(json.dumps({"columns": {"x": {"sdtype": "categorical"},
                                            "ref": {"sdtype": "id", "regex_format": "ID_[0-9]{5}"},
                                            "serial": {"sdtype": "id"}}}))
    draft = draft_file(path, sdv=meta)
    assert draft.schema.names == ["x"] and draft.schema.drop == ()
    assert [(c.name, c.position, c.regex_format) for c in draft.schema.ids] == [("ref", 1, "ID_[0-9]{5}"),
                                                                              ("serial", 2, None)]
    assert_sound(draft, path)


def test_from_sdv_drops_an_id_whose_rows_break_its_regex_with_the_reason(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"x": list("ab") * 10, "ref": [f"ID_{i}" for i in range(20)]}).to_csv(path, index=False)
    meta = tmp_path / "m.json"
    meta.write_text(json.dumps({"columns": {"ref": {"sdtype": "id", "regex_format": "ID_[0-9]{5}"}}}))
    draft = draft_file(path, sdv=meta)
    assert draft.schema.drop == ("ref",) and not draft.schema.ids
    assert any("'ref'" in w and "does not match the id format" in w for w in draft.warnings)
    assert_sound(draft, path)


def test_a_plain_draft_suggests_an_id_for_a_unique_column_named_like_one(tmp_path):
    n = 30
    draft, path = draft_of(tmp_path, {"customer_id": [f"C{i:03d}" for i in range(n)], "id": range(7, 7 + n),
                                      "grade": [1, 2, 3] * (n // 3), "team_id": ["a", "b", "c"] * (n // 3),
                                      "paid": [f"{i * 1.5:.1f}" for i in range(n)]})
    assert [(c.name, c.regex_format) for c in draft.schema.ids] == [("customer_id", "C[0-9]{3}"), ("id", None)]
    assert "team_id" in draft.schema.names  # repeated values: a real attribute, not an identifier
    assert draft.schema.column("paid").type == "numerical"  # unique, but 'paid' is not named like an id
    assert any(w.startswith("column 'customer_id': named like an identifier") and "or it is lost" in w
               for w in draft.warnings)
    assert_sound(draft, path)


def test_ids_named_with_id_first_are_suggested_too(tmp_path):
    n = 30
    rng = np.random.default_rng(0)
    draft, path = draft_of(tmp_path, {"idNum": [f"17-{i * 7:06d}" for i in range(n)], "id_no": rng.permutation(n) + 500,
                                      "idle": rng.permutation(n) * 3, "Idaho": rng.permutation(n)})
    assert [(c.name, c.regex_format) for c in draft.schema.ids] == [("idNum", "[0-9]{2}-[0-9]{6}"), ("id_no", None)]
    assert draft.schema.column("idle").type == "numerical" and draft.schema.column("Idaho").type == "numerical"
    assert_sound(draft, path)


def test_an_exported_row_index_is_drafted_as_an_id_and_rising_attributes_are_not(tmp_path):
    n = 40
    skipped = [i for i in range(6823, 6823 + n + 2) if i not in (6830, 6841)]  # a filtered table's rownames
    draft, path = draft_of(tmp_path, {"Unnamed: 0": range(n), "rownames": skipped[:n],
                                      "year": range(1980, 1980 + 2 * n, 2),  # rising, by two: an attribute
                                      "visits": sorted(np.random.default_rng(1).integers(0, 9, n))})  # repeats
    assert [c.name for c in draft.schema.ids] == ["Unnamed: 0", "rownames"]
    assert draft.schema.column("year").type == "numerical" and draft.schema.column("visits").type == "numerical"
    assert any(w.startswith("column 'rownames': integers rising by one") for w in draft.warnings)
    assert_sound(draft, path)
    few, few_path = draft_of(tmp_path, {"n": range(10), "v": [1.5] * 10}, name="few.csv")
    assert few.schema.column("n").type == "numerical"  # 10 rows rising by one say too little
    assert_sound(few, few_path)


def test_utc_times_written_with_z_are_drafted_fitted_and_written_back_with_z(tmp_path):
    """ISO 8601 UTC texts (a trailing Z) were dropped as "time zones"; and a drafted datetime with a
    time of day (bounds '2017-01-01' and '2018-12-31T23:59:59') could not be fitted at all."""
    rng = np.random.default_rng(2)
    seconds = np.sort(rng.integers(0, 2 * 365 * 86400, 60))
    texts = (pd.Timestamp("2017-01-01") + pd.to_timedelta(seconds, unit="s")).strftime("%Y-%m-%dT%H:%M:%SZ")
    draft, path = draft_of(tmp_path, {"stopped": list(texts), "kind": ["a", "b", "c"] * 20})
    col = draft.schema.column("stopped")
    assert (col.type, col.datetime_format, col.min, col.max) == (
        "datetime", "%Y-%m-%dT%H:%M:%SZ", "2017-01-01", "2018-12-31T23:59:59")
    assert any(w.startswith("column 'stopped': times written in UTC") for w in draft.warnings)
    assert_sound(draft, path)
    real = load_table(path, draft.schema)
    synth = Synthesizer(draft.schema, epsilon=1.0, delta=1e-5, training=TrainingConfig(epochs=1),
                        model_config=ModelConfig(hidden=16)).fit(real)
    write_table(synth.sample(50, seed=0), tmp_path / "s.csv", schema=draft.schema)
    written = read_raw(tmp_path / "s.csv")["stopped"]
    assert written.str.fullmatch(r"201[78]-\d\d-\d\dT\d\d:\d\d:\d\dZ").all(), written.head().tolist()
