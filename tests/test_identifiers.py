"""Identifier columns: declared in the schema, never learned from, regenerated unique on sampling."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from _cli import fedsynth
from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.data.identifiers import IdColumn, IdFormat, id_values, infer_format
from fedsynth.common.data.schema import Schema
from fedsynth.common.data.tables import load_table, validate_file, write_table
from fedsynth.common.errors import SchemaError
from fedsynth.common.model.tabular import ModelConfig
from fedsynth.common.synthesizer import Synthesizer, TrainingConfig

QUICK = {"training": TrainingConfig(epochs=0.5), "model_config": ModelConfig(hidden=16)}

# SDV metadata with a regex id in the middle of the table and a numeric one (SDV's default) at the end.
SDV_METADATA = {"METADATA_SPEC_VERSION": "SINGLE_TABLE_V1", "primary_key": "cid", "columns": {
    "age": {"sdtype": "numerical", "computer_representation": "Int64", "min": 0, "max": 120},
    "cid": {"sdtype": "id", "regex_format": "C-[A-Z]{2}[0-9]{3}"},
    "email": {"sdtype": "email", "pii": True},
    "plan": {"sdtype": "categorical", "categories": ["basic", "premium"]},
    "row": {"sdtype": "id"},
}}


def _frame(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"age": rng.integers(18, 90, n), "cid": [f"C-QX{i:03d}" for i in range(n)],
                         "email": [f"p{i}@example.org" for i in range(n)],
                         "plan": rng.choice(["basic", "premium"], n), "row": np.arange(1000, 1000 + n)})


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    return Synthesizer(SDV_METADATA, **QUICK).fit(_frame())


# ------------------------------------------------------------------ formats
@pytest.mark.parametrize("pattern, capacity", [
    ("ID_[0-9]{5}", 10**5), (r"\d{3}", 1000), ("[A-Z]{2}-[a-z0-9]", 26**2 * 36), ("x[ab]{1,3}", 2**3),
    (r"v\.[0-9]", 10),
])
def test_a_format_enumerates_distinct_ids_that_match_it(pattern, capacity):
    fmt = IdFormat(pattern)
    assert fmt.capacity == capacity
    values = id_values(fmt, 0, min(capacity, 500))
    assert len(set(values)) == len(values)
    assert all(re.fullmatch(pattern, v) for v in values)
    assert fmt.value(capacity - 1) != fmt.value(0)


@pytest.mark.parametrize("pattern", ["ID_.+", "(a|b)", "[^0-9]", "a*", r"\w{3}", "a{2,}", "[z-a]", ""])
def test_a_format_outside_the_subset_is_refused(pattern):
    with pytest.raises(ValueError):
        IdFormat(pattern)


def test_a_format_is_read_off_values_of_one_shape():
    assert infer_format(["ID_00017", "ID_20931"]) == "ID_[0-9]{5}"
    assert infer_format(["ab-1", "xy-2"]) == "[a-z]{2}-[0-9]"
    assert infer_format(["a", "bb"]) is None


# ------------------------------------------------------------------ the schema
def test_sdv_id_columns_are_kept_in_place_and_pii_is_dropped():
    schema = Schema.from_json(SDV_METADATA)
    assert schema.names == ["age", "plan"]  # modelled
    assert schema.table_names == ["age", "cid", "plan", "row"]  # written; pii 'email' is not
    assert schema.drop == ("email",)
    assert schema.ids == (IdColumn("cid", 1, "C-[A-Z]{2}[0-9]{3}"), IdColumn("row", 3))


def test_id_columns_survive_fedsynths_json_and_a_schema_without_them_keeps_its_hash(tmp_path):
    schema = Schema.from_json(SDV_METADATA)
    schema.save(tmp_path / "s.json")
    again = Schema.load(tmp_path / "s.json")
    assert again == schema and again.hash() == schema.hash()
    listed = json.loads((tmp_path / "s.json").read_text())["columns"]
    assert listed[1] == {"name": "cid", "type": "id", "regex_format": "C-[A-Z]{2}[0-9]{3}"}
    plain = Schema.from_json({"columns": [c for c in listed if c["type"] != "id"]})
    assert plain.hash() != schema.hash() and not plain.ids


@pytest.mark.parametrize("column, message", [
    ({"name": "cid", "type": "id", "regex_format": "C-.+"},
     r"column 'cid': regex_format 'C-\.\+' is not supported \('\.' at position 2"),
    ({"name": "cid", "type": "id", "regex_format": 7}, "column 'cid': 'regex_format' must be a string, got 7"),
    ({"name": "cid", "type": "id", "min": 0}, r"column 'cid': \['min'\] do not apply to an id column"),
])
def test_a_bad_id_column_is_refused_at_load_naming_it(column, message):
    with pytest.raises(SchemaError, match=message):
        Schema.from_json({"columns": [{"name": "x", "type": "boolean"}, column]})


def test_an_unsupported_sdv_regex_is_refused_naming_column_and_pattern():
    with pytest.raises(SchemaError, match=r"column 'code': regex_format '\[A-Z\]\+' is not supported"):
        Schema.from_json({"columns": {"code": {"sdtype": "id", "regex_format": "[A-Z]+"},
                                      "x": {"sdtype": "boolean"}}})


def test_an_id_column_takes_no_part_in_constraints():
    with pytest.raises(SchemaError, match="column 'cid' is not in the schema \\(id columns take no part"):
        Schema.from_json({"columns": [{"name": "a", "type": "numerical", "min": 0, "max": 9},
                                      {"name": "cid", "type": "id"}],
                          "constraints": [{"constraint_class": "Inequality", "constraint_parameters": {
                              "low_column_name": "a", "high_column_name": "cid"}}]})


# ------------------------------------------------------------------ never learned from
def test_an_id_column_is_not_encoded_and_real_ids_never_reach_the_model(synth):
    assert {s.column for s in TableEncoder(synth.schema).segments} == {"age", "plan"}
    saved = json.dumps(synth.to_state()[0], default=str)  # schema, counts release, conditions, privacy
    assert "C-QX" not in saved


# ------------------------------------------------------------------ sampling
def test_samples_put_unique_ids_in_the_declared_format_back_in_place(synth):
    out = synth.sample(300, seed=0)
    assert list(out.columns) == ["age", "cid", "plan", "row"]
    assert out["cid"].is_unique and out["cid"].map(lambda v: re.fullmatch("C-[A-Z]{2}[0-9]{3}", v) is not None).all()
    assert out["row"].is_unique and out["row"].dtype == np.int64 and set(out["row"]) == set(range(300))
    assert not out["cid"].str.startswith("C-QX").any()  # fresh values, not the real ones


def test_ids_stay_unique_across_chunks_and_conditions(synth):
    chunks = list(synth.iter_sample(25, chunk_rows=10, seed=1))
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert pd.concat(chunks)["cid"].is_unique
    out = synth.sample_from_conditions([{"column_values": {"plan": "basic"}, "num_rows": 6},
                                        {"column_values": {"plan": "premium"}, "num_rows": 5}], seed=0)
    assert out["cid"].is_unique and out["row"].tolist() == list(range(11))
    assert synth.sample(0).columns.tolist() == ["age", "cid", "plan", "row"]


def test_more_rows_than_the_format_holds_are_refused_before_sampling():
    meta = json.loads(json.dumps(SDV_METADATA))
    meta["columns"]["cid"]["regex_format"] = "C[0-9]{2}"
    small = Synthesizer(meta, **QUICK).fit(_frame().assign(cid=[f"C{i % 100:02d}" for i in range(400)]))
    assert small.sample(100)["cid"].is_unique
    with pytest.raises(SchemaError, match=r"column 'cid': the id format 'C\[0-9\]\{2\}' gives 100 distinct values, "
                                          "fewer than the 101 rows"):
        small.iter_sample(101)


@pytest.mark.parametrize("name", ["synthetic.csv", "synthetic.parquet"])
def test_a_written_sample_validates_against_its_schema(synth, tmp_path, name):
    path = tmp_path / name
    write_table(synth.iter_sample(40, chunk_rows=15, seed=2), path, schema=synth.schema)
    assert validate_file(path, synth.schema).ok
    assert load_table(path, synth.schema).columns.tolist() == ["age", "plan"]  # typed rows: modelled columns only


def test_cli_sample_writes_the_id_columns(synth, tmp_path):
    synth.save(tmp_path / "model")
    res = fedsynth("sample", str(tmp_path / "model"), "--rows", "30", "--out", str(tmp_path / "s.csv"), "--seed", "0")
    assert res.returncode == 0, res.stderr
    written = pd.read_csv(tmp_path / "s.csv", dtype=str)
    assert written.columns.tolist() == ["age", "cid", "plan", "row"]
    assert written["cid"].is_unique and written["row"].tolist() == [str(i) for i in range(30)]


# ------------------------------------------------------------------ validating real rows
def test_validate_checks_an_id_for_presence_and_format_only(tmp_path):
    schema = Schema.from_json(SDV_METADATA)
    good = _frame(20).drop(columns="email").assign(row=["not a number"] * 20)  # a numeric id is not typed
    good.to_csv(tmp_path / "good.csv", index=False)
    assert validate_file(tmp_path / "good.csv", schema).ok

    bad = good.astype(object)
    bad.loc[3, "cid"] = "C-qx003"
    bad.loc[5, "cid"] = ""
    bad.drop(columns="row").to_csv(tmp_path / "bad.csv", index=False)
    problems = [str(v) for v in validate_file(tmp_path / "bad.csv", schema).violations]
    assert problems == [
        f"{tmp_path / 'bad.csv'}: column 'cid', row 6: missing id (value: '')",
        f"{tmp_path / 'bad.csv'}: column 'cid', row 4: does not match the id format 'C-[A-Z]{{2}}[0-9]{{3}}' "
        "(value: 'C-qx003')",
        f"{tmp_path / 'bad.csv'}: column 'row': id column missing from the table (value: )",
    ]


def test_cli_validate_reports_a_malformed_id(tmp_path):
    schema_path = tmp_path / "metadata.json"
    schema_path.write_text(json.dumps(SDV_METADATA))
    _frame(10).drop(columns="email").assign(cid=["C-QX001"] * 9 + ["QX-001"]).to_csv(tmp_path / "t.csv", index=False)
    res = fedsynth("schema", "validate", str(tmp_path / "t.csv"), "--schema", str(schema_path))
    assert res.returncode == 1
    assert "column 'cid', row 10: does not match the id format" in res.stderr
