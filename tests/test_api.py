"""The Python API as an SDV or scikit-learn user meets it: the same checks as the CLI, SDV's
spellings (``num_rows``, a metadata dict or object), progress with ``verbose=True``."""

import json

import numpy as np
import pandas as pd
import pytest
from _cli import fedsynth
from fedsynth.common.data.cells import coerce
from fedsynth.common.data.schema import Schema
from fedsynth.common.data.tables import load_table
from fedsynth.common.errors import DataError, FedsynthError, SchemaError
from fedsynth.common.model.marginal_fit import MarginalFitConfig
from fedsynth.common.model.tabular import ModelConfig
from fedsynth.common.synthesizer import FRAME_LABEL, Synthesizer, TrainingConfig
from fedsynth.simulations.datasets import bundled_paths

# small settings: these tests are about the API, the fine-tune's quality is test_marginal_fit.py's
QUICK = {"training": TrainingConfig(epochs=0.5), "model_config": ModelConfig(hidden=16),
         "marginal_fit": MarginalFitConfig(steps=50)}

# An SDV single-table metadata dict, with the public bounds fedsynth needs on each column.
SDV_METADATA = {"METADATA_SPEC_VERSION": "SINGLE_TABLE_V1", "primary_key": "id", "columns": {
    "id": {"sdtype": "id"},
    "age": {"sdtype": "numerical", "computer_representation": "Int64", "min": 0, "max": 120},
    "plan": {"sdtype": "categorical", "categories": ["basic", "premium"]},
    "active": {"sdtype": "boolean"},
}}


def _sdv_frame(n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"id": np.arange(n), "age": rng.integers(18, 90, n),
                         "plan": rng.choice(["basic", "premium"], n), "active": rng.random(n) < 0.3})


def _bad_adult_csv(adult_small, path):
    raw = adult_small.head(300).astype(object)
    raw.loc[3, "age"] = -4  # outside the public bounds
    raw.loc[5, "age"] = "forty"  # not a number
    raw.loc[7, "workclass"] = "Astronaut"  # unknown category
    raw.loc[9, "hours-per-week"] = 40.5  # not an integer
    raw.loc[11, "sex"] = "Robot"
    raw.to_csv(path, index=False)
    return path


def test_fit_on_a_bad_frame_raises_the_violations_the_cli_reports(adult_small, adult_paths, tmp_path):
    """Before: IndexError from the encoder on the unknown category; now the CLI's DataError."""
    path = _bad_adult_csv(adult_small, tmp_path / "bad.csv")
    proc = fedsynth("schema", "validate", str(path), "--schema", str(adult_paths[1]))
    assert proc.returncode == 1
    cli_lines = [line for line in proc.stderr.splitlines() if line.startswith(str(path))]
    assert len(cli_lines) == 5 and "5 violation(s)" in proc.stderr

    with pytest.raises(DataError, match="5 schema violation") as caught:
        Synthesizer(adult_paths[1], **QUICK).fit(pd.read_csv(path))
    api_lines = [str(v).replace(FRAME_LABEL, str(path), 1) for v in caught.value.violations]
    assert api_lines == cli_lines


def test_a_refused_fit_spends_nothing(adult_small, adult_paths):
    synth = Synthesizer(adult_paths[1], **QUICK)
    bad = adult_small.assign(sex="Robot")
    with pytest.raises(DataError, match="unknown category"):
        synth.fit(bad)
    assert synth.privacy.history == [] and synth.model is None
    with pytest.raises(DataError, match="takes a pandas DataFrame"):
        synth.fit(adult_small.to_numpy())


@pytest.mark.parametrize("name", ["adult", "flights", "taxi"])
def test_a_typed_table_passes_the_check_unchanged(name):
    """fit() re-checks what load_table typed: the check must keep every value and dtype."""
    data, schema_path = bundled_paths(name)
    schema = Schema.load(schema_path)
    typed = load_table(data, schema)
    again, report = coerce(typed, schema, FRAME_LABEL)
    assert report.ok, report.violations[:3]
    pd.testing.assert_frame_equal(again, typed)


def test_a_frame_read_with_pandas_defaults_fits(adult_paths):
    """What an SDV user passes: pd.read_csv's own dtypes (ints, floats, strings), not load_table's."""
    raw = pd.read_csv(adult_paths[0], nrows=800)
    synth = Synthesizer(adult_paths[1], **QUICK).fit(raw)
    assert list(synth.sample(num_rows=20, seed=0).columns) == Schema.load(adult_paths[1]).names


def test_pandas_nullable_columns_hold_missing_values_not_text(adult_paths):
    """pd.NA in a 'string' column is a missing value (workclass may be missing), not the category '<NA>'."""
    raw = pd.read_csv(adult_paths[0], nrows=500).astype({"workclass": "string", "sex": "category", "age": "Int64"})
    raw.loc[3, "workclass"] = pd.NA
    raw.loc[4, "age"] = pd.NA
    with pytest.raises(DataError, match="1 schema violation") as caught:
        Synthesizer(adult_paths[1], **QUICK).fit(raw)
    [v] = caught.value.violations
    assert (v.column, v.row, v.problem) == ("age", 5, "missing value, but the schema does not allow missing values")


def test_sample_takes_sdvs_num_rows(tiny_model_dir):
    synth = Synthesizer.load(tiny_model_dir)
    by_n = synth.sample(7, seed=1)
    by_num_rows = synth.sample(num_rows=7, seed=1)
    pd.testing.assert_frame_equal(by_num_rows, by_n)
    assert len(synth.sample(n=3, num_rows=3)) == 3
    with pytest.raises(FedsynthError, match="disagree"):
        synth.sample(3, num_rows=4)
    with pytest.raises(FedsynthError, match="number of rows"):
        synth.sample()


def test_sample_from_conditions_as_in_sdv(tiny_model_dir):
    class Condition:  # SDV's: column_values and num_rows
        def __init__(self, column_values, num_rows):
            self.column_values, self.num_rows = column_values, num_rows

    synth = Synthesizer.load(tiny_model_dir)
    out = synth.sample_from_conditions([Condition({"sex": "Female"}, 6),
                                        {"column_values": {"income": ">50K"}, "num_rows": 4}], seed=0)
    assert len(out) == 10
    assert (out["sex"].iloc[:6] == "Female").all() and (out["income"].iloc[6:] == ">50K").all()
    with pytest.raises(FedsynthError, match="not a category"):  # checked before any row is generated
        synth.sample_from_conditions([Condition({"sex": "Female"}, 6), Condition({"sex": "Robot"}, 1)])
    with pytest.raises(FedsynthError, match="expected column_values"):
        synth.sample_from_conditions([{"sex": "Female"}])


def test_schema_from_an_sdv_metadata_dict_or_object(tmp_path):
    df = _sdv_frame()
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps(SDV_METADATA))

    class SingleTableMetadata:  # what SDV's metadata classes offer: to_dict()
        def to_dict(self):
            return json.loads(json.dumps(SDV_METADATA))

    from_path = Synthesizer(path).schema
    for given in (SDV_METADATA, SingleTableMetadata()):
        schema = Synthesizer(given).schema
        assert schema.hash() == from_path.hash() and [c.name for c in schema.ids] == ["id"]
    synth = Synthesizer(SDV_METADATA, **QUICK).fit(df)
    out = synth.sample(num_rows=50, seed=0)
    assert list(out.columns) == ["id", "age", "plan", "active"] and out["age"].between(0, 120).all()
    assert out["id"].tolist() == list(range(50))  # SDV's default id: numeric, regenerated


def test_schema_as_fedsynths_own_dict(adult_schema):
    assert Synthesizer(adult_schema.to_json()).schema == Schema.from_json(adult_schema.to_json())


def test_a_schema_of_the_wrong_kind_is_refused():
    with pytest.raises(FedsynthError, match="expected a Schema, a path to its JSON or a metadata dict"):
        Synthesizer(42)
    with pytest.raises(SchemaError, match="'age'.*public 'min'"):
        Synthesizer({"columns": {"age": {"sdtype": "numerical"}}})


def test_verbose_fit_shows_progress(adult_small, adult_paths, capsys):
    synth = Synthesizer(adult_paths[1], **QUICK)
    steps = int(synth.plan(len(adult_small))["steps"])
    calls, fit_calls = [], []
    synth.fit(adult_small, progress=lambda done, total: calls.append((done, total)), verbose=True,
              fit_progress=lambda done, total: fit_calls.append((done, total)))
    err = capsys.readouterr().err
    assert "training" in err and f"{steps}/{steps}" in err
    # capsys is no terminal: a few plain lines (not one per step), no ANSI codes, no redraws
    assert "\x1b[" not in err and "\r" not in err
    lines = err.splitlines()
    dp = [line for line in lines if line.startswith("training: DP-SGD step")]
    assert 1 <= len(dp) <= 10 and dp[-1].startswith(f"training: DP-SGD step {steps}/{steps}, "), err
    assert calls[-1] == (steps, steps)
    # then the marginal fit's steps, in lines of their own (none when no pair was worth measuring)
    fit_steps = synth.info["marginal_fit"]["steps"]
    fine = [line for line in lines if line.startswith("marginal fit: step")]
    assert len(dp) + len(fine) == len(lines), err
    if fit_steps:
        assert 1 <= len(fine) <= 10 and fine[-1].startswith(f"marginal fit: step {fit_steps}/{fit_steps}, "), err
        assert lines.index(fine[0]) > lines.index(dp[-1])
        assert fit_calls == [(k, fit_steps) for k in range(1, fit_steps + 1)]
    else:
        assert not fine and not fit_calls


def test_quiet_fit_prints_nothing(adult_small, adult_paths, capsys):
    Synthesizer(adult_paths[1], **QUICK).fit(adult_small)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
