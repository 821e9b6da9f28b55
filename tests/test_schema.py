import json

import pytest

from fedsynth.common.errors import SchemaError
from fedsynth.common.data.schema import Schema


def _one(col: dict) -> dict:
    return {"columns": [col]}


def test_bundled_schema_has_public_bounds(adult_schema):
    age = adult_schema.column("age")
    assert (age.min, age.max, age.subtype) == (17, 90, "int")
    assert adult_schema.column("capital-gain").point_masses == (0.0,)
    assert adult_schema.column("education-num").is_discrete_int
    assert len(adult_schema.hash()) == 16


def test_roundtrip_json_keeps_hash(adult_schema, tmp_path):
    p = tmp_path / "s.json"
    adult_schema.save(p)
    again = Schema.load(p)
    assert again.hash() == adult_schema.hash()
    assert again.names == adult_schema.names


@pytest.mark.parametrize("col, message", [
    ({"name": "x", "type": "numerical", "min": 0}, "finite public 'max'"),
    ({"name": "x", "type": "numerical", "min": 5, "max": 1}, "must be below max"),
    ({"name": "x", "type": "categorical"}, "non-empty public 'categories'"),
    ({"name": "x", "type": "categorical", "categories": ["a", "a"]}, "duplicate categories"),
    ({"name": "x", "type": "text"}, "type 'text'"),
    ({"name": "x", "type": "numerical", "min": 0, "max": 1, "point_masses": [2]}, "outside"),
    ({"name": "x", "type": "numerical", "min": 0, "max": 1, "colour": 2}, "unknown keys"),
    ({"name": "d", "type": "datetime", "min": "2020-01-01", "max": "not a date"}, "ISO date"),
])
def test_bad_schema_is_refused_with_the_column_named(col, message):
    with pytest.raises(SchemaError, match=message) as exc:
        Schema.from_json(_one(col), source="s.json")
    assert "s.json" in str(exc.value)


def test_duplicate_columns_refused():
    col = {"name": "x", "type": "boolean"}
    with pytest.raises(SchemaError, match="duplicate column names"):
        Schema.from_json({"columns": [col, col]})


def test_sdv_metadata_is_accepted(tmp_path):
    sdv = {"METADATA_SPEC_VERSION": "SINGLE_TABLE_V1", "primary_key": "id", "columns": {
        "id": {"sdtype": "id"},
        "age": {"sdtype": "numerical", "computer_representation": "Int64", "min": 0, "max": 120},
        "plan": {"sdtype": "categorical", "categories": ["basic", "premium"]},
        "active": {"sdtype": "boolean"},
        "joined": {"sdtype": "datetime", "min": "2000-01-01", "max": "2030-12-31"},
    }}
    p = tmp_path / "metadata.json"
    p.write_text(json.dumps(sdv))
    s = Schema.load(p)
    assert s.drop == ("id",)
    assert s.column("age").subtype == "int"
    assert s.column("plan").categories == ("basic", "premium")
    assert [c.type for c in s.columns] == ["numerical", "categorical", "boolean", "datetime"]


def test_sdv_metadata_without_bounds_says_what_to_add():
    with pytest.raises(SchemaError, match="'age'.*public 'min'"):
        Schema.from_json({"columns": {"age": {"sdtype": "numerical"}}})


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(SchemaError, match="not found"):
        Schema.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(SchemaError, match="not valid JSON"):
        Schema.load(bad)
