import gzip

import numpy as np
import pandas as pd
import pytest

from fedsynth.common.errors import DataError
from fedsynth.common.data.schema import Schema
from fedsynth.common.data.tables import load_table, validate_file, write_table

SCHEMA = Schema.from_json({"columns": [
    {"name": "age", "type": "numerical", "subtype": "int", "min": 0, "max": 120},
    {"name": "score", "type": "numerical", "min": 0, "max": 1, "nullable": True},
    {"name": "plan", "type": "categorical", "categories": ["basic", "premium"]},
    {"name": "active", "type": "boolean"},
    {"name": "joined", "type": "datetime", "min": "2000-01-01", "max": "2030-12-31"},
]}, source="schema.json")

GOOD = "age,score,plan,active,joined\n30,0.5,basic,true,2010-05-01\n41,,premium,no,2020-01-31\n"


def write(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_good_table_is_typed(tmp_path):
    df = load_table(write(tmp_path, GOOD), SCHEMA)
    assert list(df.columns) == SCHEMA.names
    assert df["age"].tolist() == [30, 41]
    assert np.isnan(df["score"][1])
    assert df["active"].tolist() == [True, False]
    assert str(df["joined"].dtype).startswith("datetime64")


@pytest.mark.parametrize("row, column, value, problem", [
    ("thirty,0.5,basic,true,2010-05-01", "age", "thirty", "not a number"),
    ("30,inf,basic,true,2010-05-01", "score", "inf", "infinite"),
    ("130,0.5,basic,true,2010-05-01", "age", "130", "outside the public bounds"),
    ("30.5,0.5,basic,true,2010-05-01", "age", "30.5", "not an integer"),
    ("30,0.5,gold,true,2010-05-01", "plan", "gold", "unknown category"),
    ("30,0.5,,true,2010-05-01", "plan", "", "missing value"),
    ("30,0.5,basic,maybe,2010-05-01", "active", "maybe", "not a boolean"),
    ("30,0.5,basic,true,1999-12-31", "joined", "1999-12-31", "outside the public range"),
    ("30,0.5,basic,true,yesterday", "joined", "yesterday", "not a date"),
])
def test_each_violation_names_file_column_row_value(tmp_path, row, column, value, problem):
    p = write(tmp_path, GOOD + row + "\n")
    with pytest.raises(DataError) as exc:
        load_table(p, SCHEMA)
    msg = str(exc.value)
    assert str(p) in msg and f"column '{column}'" in msg and "row 3" in msg
    assert repr(value) in msg and problem in msg


def test_nan_is_missing_and_refused_when_not_nullable(tmp_path):
    p = write(tmp_path, GOOD + "NaN,0.5,basic,true,2010-05-01\n")
    with pytest.raises(DataError, match="column 'age', row 3: missing value"):
        load_table(p, SCHEMA)


def test_all_violations_are_listed(tmp_path):
    p = write(tmp_path, GOOD + "x,2,gold,maybe,2010-01-01\n")
    report = validate_file(p, SCHEMA)
    assert {v.column for v in report.violations} == {"age", "score", "plan", "active"}


@pytest.mark.parametrize("text, message", [
    ("", "file is empty"),
    ("age,score,plan,active,joined\n", "no data rows"),
    ("age;score;plan;active;joined\n30;0.5;basic;true;2010-05-01\n", "semicolons"),
    ("age\tscore\tplan\tactive\tjoined\n30\t0.5\tbasic\ttrue\t2010-05-01\n", "tabs"),
    (GOOD + "30,0.5,basic,true,2010-05-01,extra\n", "wrong number of fields"),
])
def test_broken_files(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        load_table(write(tmp_path, text), SCHEMA)


def test_truncated_last_row_is_caught(tmp_path):
    with pytest.raises(DataError, match="column 'active', row 3: missing value"):
        load_table(write(tmp_path, GOOD + "30,0.5,basic\n"), SCHEMA)


def test_missing_and_unknown_columns(tmp_path):
    p = write(tmp_path, "age,plan,active,joined,ssn\n30,basic,true,2010-05-01,123\n")
    with pytest.raises(DataError) as exc:
        load_table(p, SCHEMA)
    assert "column 'score': column missing" in str(exc.value)
    assert "column 'ssn': column is not in the schema" in str(exc.value)


def test_not_utf8(tmp_path):
    p = tmp_path / "latin1.csv"
    p.write_bytes(GOOD.replace("basic", "b\xe9sic").encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_table(p, SCHEMA)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_table(tmp_path / "none.csv", SCHEMA)


def test_parquet_and_gzip_roundtrip(tmp_path):
    df = load_table(write(tmp_path, GOOD), SCHEMA)
    write_table(df, tmp_path / "t.parquet", schema=SCHEMA)
    again = load_table(tmp_path / "t.parquet", SCHEMA)
    assert again["age"].tolist() == [30, 41]
    gz = tmp_path / "t.csv.gz"
    gz.write_bytes(gzip.compress(GOOD.encode()))
    assert len(load_table(gz, SCHEMA)) == 2


def test_parquet_with_mismatched_types(tmp_path):
    pd.DataFrame({"age": ["old", "young"], "score": [0.1, 0.2], "plan": ["basic", "basic"],
                  "active": [True, False], "joined": ["2010-01-01", "2011-01-01"]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match="column 'age', row 1: not a number"):
        load_table(tmp_path / "t.parquet", SCHEMA)


def test_write_is_atomic_on_failure(tmp_path, monkeypatch):
    df = load_table(write(tmp_path, GOOD), SCHEMA)
    target = tmp_path / "out.csv"
    target.write_text("previous contents")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("pandas.DataFrame.to_csv", boom)
    with pytest.raises(OSError, match="disk full"):
        write_table(df, target)
    assert target.read_text() == "previous contents"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.csv")] == []


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_chunks_are_streamed_into_one_table_typed_by_the_schema(tmp_path, suffix):
    schema = Schema.from_json({"columns": [*SCHEMA.to_json()["columns"],
                                           {"name": "colour", "type": "categorical", "categories": ["red", "blue"],
                                            "nullable": True}]})
    first = pd.DataFrame({"age": [30, 41], "score": [0.5, None], "plan": ["basic", "premium"], "active": [True, False],
                          "joined": pd.to_datetime(["2010-05-01", "2020-01-31"]), "colour": [None, None]})
    second = pd.DataFrame({"age": [7], "score": [0.25], "plan": ["basic"], "active": [True],
                           "joined": pd.to_datetime(["2001-01-01"]), "colour": ["red"]})
    path = tmp_path / f"t.{suffix}"
    # the first chunk's colour is all missing: its type must still be the schema's, not "null"
    assert write_table(iter([first, second]), path, schema=schema) == 3
    back = load_table(path, schema)
    assert back["age"].tolist() == [30, 41, 7] and back["colour"].isna().tolist() == [True, True, False]
    assert back["colour"].iloc[2] == "red" and back["score"].iloc[2] == 0.25
    assert back["active"].tolist() == [True, False, True] and back["joined"].iloc[2] == pd.Timestamp("2001-01-01")


def test_a_table_with_an_unknown_extension_is_refused_not_read_as_csv(tmp_path, adult_schema):
    path = tmp_path / "rows.tsv"
    path.write_text("age\tworkclass\n39\tState-gov\n")
    with pytest.raises(DataError, match=r"rows\.tsv: unsupported file type; a table is a \.csv, \.csv\.gz"):
        load_table(path, adult_schema)
