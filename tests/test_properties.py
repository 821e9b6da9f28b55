"""Property-based tests: hostile or messy tables and schemas end in a clear FedsynthError, never a crash.

Every failure must be a DataError / SchemaError that names the file (and column, where there
is one), and a failed load returns nothing partial.
"""

import math
import string

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedsynth.common.errors import DataError, SchemaError
from fedsynth.common.data.schema import Schema
from fedsynth.common.data.cells import MAX_FIELD_CHARS
from fedsynth.common.data.tables import load_table

SCHEMA = Schema.from_json({"columns": [
    {"name": "age", "type": "numerical", "subtype": "int", "min": 0, "max": 120},
    {"name": "score", "type": "numerical", "min": 0, "max": 1, "nullable": True},
    {"name": "plan", "type": "categorical", "categories": ["basic", "premium"]},
    {"name": "active", "type": "boolean"},
]}, source="schema.json")
HEADER = "age,score,plan,active"
PROFILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

cell_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**20, 10**20).map(str),
    st.sampled_from(["basic", "premium", "Basic", "", "NaN", "inf", "-inf", "1e400", "true", "no", "?", "0x10",
                     "١٢", "30 ", " 30", "3,0", "30.0000000001"]),
    st.text(alphabet=string.printable.replace(",", "").replace("\n", "").replace("\r", "").replace('"', ""),
            max_size=20),
)


def check_outcome(path, fn):
    """Either a fully valid typed frame, or a DataError naming the file; nothing else."""
    try:
        df = fn()
    except DataError as exc:
        assert str(path) in str(exc)
        return None
    assert list(df.columns) == SCHEMA.names and len(df) > 0
    age = df["age"].to_numpy(dtype=float)
    assert np.all(np.isfinite(age)) and np.all((age >= 0) & (age <= 120)) and np.all(age == np.round(age))
    score = df["score"].to_numpy(dtype=float)
    ok = np.isnan(score) | ((score >= 0) & (score <= 1))
    assert np.all(ok)
    assert set(df["plan"]) <= {"basic", "premium"}
    assert set(df["active"]) <= {True, False}
    return df


@PROFILE
@given(rows=st.lists(st.tuples(cell_text, cell_text, cell_text, cell_text), min_size=1, max_size=5))
def test_any_csv_cells_are_typed_or_refused_with_file_column_value(tmp_path, rows):
    path = tmp_path / "t.csv"
    path.write_text(HEADER + "\n" + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    df = check_outcome(path, lambda: load_table(path, SCHEMA))
    if df is None:
        with pytest.raises(DataError) as exc:
            load_table(path, SCHEMA)
        assert any(f"column '{c}'" in str(exc.value) for c in SCHEMA.names + ["(file)"]) or "malformed" in str(exc.value)


@PROFILE
@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_numeric_values_out_of_bounds_or_non_finite_are_named(tmp_path, value):
    path = tmp_path / "t.csv"
    path.write_text(f"{HEADER}\n{value!r},0.5,basic,true\n")
    if math.isfinite(value) and 0 <= value <= 120 and abs(value - round(value)) <= 1e-9:
        assert load_table(path, SCHEMA)["age"].iloc[0] == round(value)  # an exact integer comes back
    else:
        with pytest.raises(DataError) as exc:
            load_table(path, SCHEMA)
        assert "column 'age', row 1" in str(exc.value)


@PROFILE
@given(header=st.lists(st.sampled_from(["age", "score", "plan", "active", "extra", "Age"]), min_size=1, max_size=6))
def test_duplicate_missing_or_unknown_columns_are_named(tmp_path, header):
    path = tmp_path / "t.csv"
    values = {"age": "30", "score": "0.5", "plan": "basic", "active": "true", "extra": "x", "Age": "31"}
    path.write_text(",".join(header) + "\n" + ",".join(values[h] for h in header) + "\n")
    if sorted(header) == sorted(SCHEMA.names):
        assert len(load_table(path, SCHEMA)) == 1
        return
    with pytest.raises(DataError) as exc:
        load_table(path, SCHEMA)
    msg = str(exc.value)
    assert str(path) in msg
    for name in set(SCHEMA.names) - set(header):
        assert f"column '{name}': column missing" in msg


@PROFILE
@given(data=st.binary(min_size=0, max_size=300))
def test_arbitrary_bytes_never_escape_as_a_raw_exception(tmp_path, data):
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    try:
        load_table(path, SCHEMA)
    except DataError as exc:
        assert str(path) in str(exc)


@PROFILE
@given(delim=st.sampled_from([";", "\t", "|"]), encoding=st.sampled_from(["utf-16", "latin-1", "cp1252"]))
def test_wrong_delimiters_and_encodings_are_explained(tmp_path, delim, encoding):
    text = f"age{delim}score{delim}plan{delim}active\n30{delim}0.5{delim}prémium{delim}true\n"
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode(encoding))
    with pytest.raises(DataError) as exc:
        load_table(path, SCHEMA)
    assert str(path) in str(exc.value)
    assert any(w in str(exc.value) for w in ("not UTF-8", "semicolons", "tabs", "pipes", "column"))


def test_huge_field_is_refused_and_truncated_in_the_message(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(f"{HEADER}\n30,0.5,{'b' * (MAX_FIELD_CHARS * 3)},true\n")
    with pytest.raises(DataError) as exc:
        load_table(path, SCHEMA)
    assert "column 'plan', row 1" in str(exc.value) and "longer than" in str(exc.value)
    assert len(str(exc.value)) < 2000


@PROFILE
@given(kinds=st.lists(st.sampled_from(["int", "float", "str", "bool", "nan", "date", "bytes"]), min_size=4, max_size=4))
def test_parquet_with_mismatched_types(tmp_path, kinds):
    samples = {"int": [30, 41], "float": [0.5, float("inf")], "str": ["basic", "x"], "bool": [True, False],
               "nan": [float("nan"), float("nan")], "date": pd.to_datetime(["2010-01-01", "2011-01-01"]),
               "bytes": [b"\xff", b"ok"]}
    frame = pd.DataFrame({name: samples[k] for name, k in zip(SCHEMA.names, kinds)})
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    check_outcome(path, lambda: load_table(path, SCHEMA))


json_values = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                           max_leaves=12)
column_like = st.fixed_dictionaries({"name": st.text(max_size=5) | st.integers(), "type": st.sampled_from(
    ["numerical", "categorical", "boolean", "datetime", "text", 3])},
    optional={"min": json_values, "max": json_values, "categories": json_values, "subtype": json_values,
              "nullable": json_values, "bins": json_values, "scale": json_values, "point_masses": json_values})


@PROFILE
@given(raw=st.one_of(json_values, st.fixed_dictionaries({"columns": st.lists(column_like, max_size=4)})))
def test_any_schema_json_is_accepted_or_refused_with_schema_error(raw):
    try:
        schema = Schema.from_json(raw, source="s.json")
    except SchemaError as exc:
        assert "s.json" in str(exc)
        return
    assert schema.columns  # a schema that loads is complete enough to build an encoder
    assert all(isinstance(c.name, str) for c in schema.columns)
