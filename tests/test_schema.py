import json

import numpy as np
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
    ({"name": "b", "type": "boolean", "true_token": "yes"}, "both 'true_token' and 'false_token'"),
    ({"name": "b", "type": "boolean", "true_token": "Y", "false_token": "Y"}, "both 'Y'"),
    ({"name": "b", "type": "boolean", "true_token": "yes", "false_token": "NA"}, "does not read as missing"),
    ({"name": "b", "type": "boolean", "true_token": " yes", "false_token": "no"}, "surrounding spaces"),
    ({"name": "b", "type": "boolean", "true_token": True, "false_token": "no"}, "'true_token' must be a str"),
    ({"name": "c", "type": "categorical", "categories": ["a"], "true_token": "a", "false_token": "b"},
     "applies to boolean columns only"),
    ({"name": "x", "type": "numerical", "subtype": "int", "min": 0, "max": 9, "decimals": 2},
     "float numerical columns only"),
    ({"name": "x", "type": "numerical", "min": 0, "max": 9, "decimals": -1}, "integer from 0 to 15"),
    ({"name": "x", "type": "numerical", "min": 0, "max": 9, "decimals": 1.5}, "'decimals' must be a int"),
    ({"name": "d", "type": "datetime", "min": "2020-01-01", "max": "2021-01-01", "datetime_format": "dd/mm/yyyy"},
     "strftime format"),
    ({"name": "x", "type": "numerical", "min": 0, "max": 9, "datetime_format": "%Y"}, "datetime columns only"),
    ({"name": "x", "type": "numerical", "min": 0, "max": 9, "step": 0}, "'step' must be positive"),
    ({"name": "x", "type": "numerical", "min": 0, "max": 9, "step": "1"}, "'step' must be a finite number"),
    ({"name": "x", "type": "numerical", "min": 0, "max": 9, "step_origin": 1}, "'step_origin' needs a 'step'"),
    ({"name": "x", "type": "numerical", "min": 0, "max": 9, "step": 20}, "fewer than two values"),
    ({"name": "x", "type": "numerical", "min": 0, "max": 90, "step": 0.01}, "9001 values .* more than 2048"),
    ({"name": "x", "type": "numerical", "min": 0, "max": 9, "step": 2, "point_masses": [3]},
     "point mass 3.0 is not on the grid"),
    ({"name": "x", "type": "numerical", "subtype": "int", "min": 0, "max": 9, "step": 1.5}, "whole numbers"),
    ({"name": "c", "type": "categorical", "categories": ["a"], "step": 1}, "numerical columns only"),
    ({"name": "x", "type": "numerical", "min": 0, "max": 9, "values": [1, 3, 2]}, "ascending and distinct"),
    ({"name": "x", "type": "numerical", "min": 0, "max": 9, "values": [1, 10]}, r"value 10 lies outside \[0, 9\]"),
    ({"name": "x", "type": "numerical", "min": 0, "max": 9, "values": [1]}, "from 2 to 2048 values, got 1"),
    ({"name": "x", "type": "numerical", "min": 0, "max": 9, "values": [1, "2"]}, "list of finite numbers"),
    ({"name": "x", "type": "numerical", "min": 0, "max": 9, "values": [1, 2], "step": 1}, "either 'step' or 'values'"),
    ({"name": "x", "type": "numerical", "subtype": "int", "min": 0, "max": 9, "values": [1, 2.5]}, "whole numbers"),
    ({"name": "x", "type": "numerical", "min": 0, "max": 9, "values": [1, 2], "point_masses": [0]},
     "point mass 0 is not one of its 'values'"),
    ({"name": "c", "type": "categorical", "categories": ["a"], "values": [1, 2]}, "numerical columns only"),
    ({"name": "t", "type": "numerical", "subtype": "int", "min": 0, "max": 2359, "clock": "HH:MM"}, r"one of \['HHMM'\]"),
    ({"name": "t", "type": "numerical", "min": 0, "max": 2359, "clock": "HHMM"}, "int numerical columns only"),
    ({"name": "t", "type": "numerical", "subtype": "int", "min": 0, "max": 2400, "clock": "HHMM"},
     "max 2400 is not a time of day written HHMM"),
    ({"name": "t", "type": "numerical", "subtype": "int", "min": 0, "max": 2359, "clock": "HHMM", "point_masses": [570]},
     "point mass 570.0 is not a time of day"),
    ({"name": "t", "type": "numerical", "subtype": "int", "min": 0, "max": 2359, "clock": "HHMM", "scale": "log"},
     "no 'step', 'values' or log scale"),
    ({"name": "t", "type": "numerical", "subtype": "int", "min": 0, "max": 2359, "clock": 1}, "'clock' must be a str"),
    ({"name": "d", "type": "datetime", "min": "2020-01-01", "max": "2021-01-01", "clock": "HHMM"},
     "numerical columns only"),
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
    assert s.drop == () and [(c.name, c.position, c.regex_format) for c in s.ids] == [("id", 0, None)]
    assert s.column("age").subtype == "int"
    assert s.column("plan").categories == ("basic", "premium")
    assert [c.type for c in s.columns] == ["numerical", "categorical", "boolean", "datetime"]


def test_sdv_metadata_without_bounds_says_what_to_add():
    with pytest.raises(SchemaError, match="'age'.*public 'min'"):
        Schema.from_json({"columns": {"age": {"sdtype": "numerical"}}})


def test_a_bare_sdv_file_gets_every_missing_key_in_one_error(tmp_path):
    p = tmp_path / "metadata.json"
    p.write_text(json.dumps({"columns": {
        "age": {"sdtype": "numerical", "computer_representation": "Int64"}, "sex": {"sdtype": "categorical"},
        "joined": {"sdtype": "datetime", "datetime_format": "%d/%m/%Y"}, "active": {"sdtype": "boolean"}}}))
    with pytest.raises(SchemaError) as caught:
        Schema.load(p)
    message = str(caught.value)
    assert "3 columns need fixing" in message
    assert "'age': needs finite public 'min' and 'max'" in message
    assert "'sex': needs a non-empty public 'categories'" in message and "'joined': needs public 'min' and 'max'" in message
    assert f"--from-sdv {p}" in message  # the way to a fedsynth schema that leaves the SDV file valid


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(SchemaError, match="not found"):
        Schema.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(SchemaError, match="not valid JSON"):
        Schema.load(bad)


FORMATTED = [
    {"name": "smoker", "type": "boolean", "true_token": "yes", "false_token": "no"},
    {"name": "price", "type": "numerical", "min": 0, "max": 100, "decimals": 2},
    {"name": "seen", "type": "datetime", "min": "2015-01-01", "max": "2024-12-31", "datetime_format": "%d/%m/%Y"},
]


def test_format_fields_survive_save_and_load(tmp_path):
    schema = Schema.from_json({"columns": FORMATTED})
    schema.save(tmp_path / "s.json")
    again = Schema.load(tmp_path / "s.json")
    assert again == schema and again.hash() == schema.hash()
    assert (again.column("smoker").true_token, again.column("price").decimals) == ("yes", 2)
    assert again.column("seen").datetime_format == "%d/%m/%Y"


def test_format_fields_change_the_hash_only_when_set():
    plain = [{k: v for k, v in c.items() if k not in ("true_token", "false_token", "decimals", "datetime_format")}
             for c in FORMATTED]
    explicit_null = [dict(c, true_token=None, false_token=None) if c["type"] == "boolean" else
                     dict(c, decimals=None) if c["type"] == "numerical" else dict(c, datetime_format=None)
                     for c in plain]
    assert Schema.from_json({"columns": explicit_null}).hash() == Schema.from_json({"columns": plain}).hash()
    assert Schema.from_json({"columns": FORMATTED}).hash() != Schema.from_json({"columns": plain}).hash()


def test_a_grid_is_the_values_between_the_bounds_and_survives_save_and_load(tmp_path):
    schema = Schema.from_json({"columns": [
        {"name": "temp", "type": "numerical", "min": -20, "max": 110, "step": 0.18, "step_origin": 32},
        {"name": "wind", "type": "numerical", "min": 0, "max": 5, "step": 1.150779448},
    ]})
    temp = schema.column("temp").grid
    assert temp.values()[0] == pytest.approx(-19.84) and temp.values()[-1] == pytest.approx(109.94)
    assert 39.02 in temp.values()  # 3.9 degrees Celsius, written to 2 places as the table has it
    assert schema.column("wind").grid.values().tolist() == [0.0, 1.150779448, 2.301558896, 3.452338344, 4.603117792]
    schema.save(tmp_path / "s.json")
    again = Schema.load(tmp_path / "s.json")
    assert again == schema and again.hash() == schema.hash()
    plain = Schema.from_json({"columns": [{k: v for k, v in c.items() if not k.startswith("step")}
                                          for c in schema.to_json()["columns"]]})
    assert plain.hash() != schema.hash() and plain.column("temp").grid is None


def test_declared_values_are_the_only_ones_and_survive_save_and_load(tmp_path):
    schema = Schema.from_json({"columns": [
        {"name": "rate", "type": "numerical", "min": 0, "max": 5, "values": [0, 3.258096, 3.931826, 4.61512]}]})
    levels = schema.column("rate").grid
    assert levels.values().tolist() == [0.0, 3.258096, 3.931826, 4.61512]
    assert levels.snap(np.array([0.4, 3.5, 3.7, 5.0, np.nan]))[:4].tolist() == [0.0, 3.258096, 3.931826, 4.61512]
    assert levels.off(np.array([3.258096, 3.2581, 3.3])).tolist() == [False, False, True]
    schema.save(tmp_path / "s.json")
    again = Schema.load(tmp_path / "s.json")
    assert again == schema and again.hash() == schema.hash()
    assert again.to_json()["columns"][0]["values"] == [0.0, 3.258096, 3.931826, 4.61512]


def test_a_clock_column_survives_save_and_load(tmp_path):
    schema = Schema.from_json({"columns": [
        {"name": "dep", "type": "numerical", "subtype": "int", "min": 0, "max": 2359, "clock": "HHMM"}]})
    schema.save(tmp_path / "s.json")
    again = Schema.load(tmp_path / "s.json")
    assert again == schema and again.hash() == schema.hash() and again.column("dep").clock == "HHMM"
    assert not again.column("dep").is_discrete_int


def test_bundled_schema_hash_is_unchanged_by_the_format_fields(adult_schema):
    # parties compare this hash before federating; the format fields (unset in Adult) must not move it
    raw = {k: v for k, v in adult_schema.to_json().items() if k != "constraints"}
    assert Schema.from_json(raw).hash() == "3cd2e47c64595e03"
    assert not {"true_token", "false_token", "decimals", "datetime_format"} & {
        k for c in adult_schema.to_json()["columns"] for k in c}


def test_sdv_datetime_format_is_read():
    s = Schema.from_json({"columns": {"seen": {"sdtype": "datetime", "datetime_format": "%d/%m/%Y",
                                               "min": "2015-01-01", "max": "2024-12-31"}}})
    assert s.column("seen").datetime_format == "%d/%m/%Y"
