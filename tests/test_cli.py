import json

import pandas as pd
import pytest
from _cli import fedsynth

from fedsynth.common.tables import write_table


@pytest.fixture()
def small_csv(tmp_path, adult, adult_schema):
    p = tmp_path / "train.csv"
    write_table(adult.sample(2500, random_state=5), p, schema=adult_schema)
    return p


def test_fit_sample_lineage(tmp_path, small_csv, adult_paths):
    model = tmp_path / "model"
    r = fedsynth("fit", str(small_csv), "--schema", str(adult_paths[1]), "--epsilon", "1", "--delta", "1e-5",
                 "--epochs", "2", "--out", str(model))
    assert r.returncode == 0, r.stderr
    assert "epsilon spent" in r.stdout
    meta = json.loads((model / "synthesizer.json").read_text())
    assert 0 < meta["privacy"]["epsilon_spent"] <= 1.0
    out = tmp_path / "syn.parquet"
    r = fedsynth("sample", str(model), "--rows", "300", "--out", str(out), "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert len(pd.read_parquet(out)) == 300
    r = fedsynth("lineage", str(out))
    assert r.returncode == 0 and json.loads(r.stdout)["model_id"] == meta["model_id"]
    # tampering is detected
    side = json.loads((tmp_path / "syn.parquet.lineage.json").read_text())
    out.write_bytes(out.read_bytes() + b"\0")
    r = fedsynth("lineage", str(out))
    assert r.returncode == 1 and "hash mismatch" in r.stderr and side["sha256"]


def test_fit_refuses_bad_privacy_settings(tmp_path, small_csv, adult_paths):
    for args, message in ((["--epsilon", "0"], "epsilon must be"), (["--delta", "0.01"], "not below 1/n")):
        r = fedsynth("fit", str(small_csv), "--schema", str(adult_paths[1]), "--out", str(tmp_path / "m"), *args)
        assert r.returncode == 2 and message in r.stderr
        assert not (tmp_path / "m").exists()


def test_schema_draft_and_validate(tmp_path, small_csv, adult_paths):
    r = fedsynth("schema", "draft", str(small_csv))
    assert r.returncode == 0
    drafted = json.loads(r.stdout)
    assert {c["name"] for c in drafted["columns"]} >= {"age", "income"}
    assert "replace bounds and category lists" in r.stderr.replace("\n", " ")
    r = fedsynth("schema", "validate", str(small_csv), "--schema", str(adult_paths[1]))
    assert r.returncode == 0 and "ok" in r.stdout
    bad = tmp_path / "bad.csv"
    text = small_csv.read_text().splitlines()
    text[3] = text[3].replace(text[3].split(",")[0], "200", 1)
    bad.write_text("\n".join(text) + "\n")
    r = fedsynth("schema", "validate", str(bad), "--schema", str(adult_paths[1]))
    assert r.returncode == 1
    assert "column 'age', row 3" in r.stderr and "'200'" in r.stderr and str(bad) in r.stderr


def test_evaluate_writes_report(tmp_path, adult, adult_schema, adult_paths):
    real, hold, syn = tmp_path / "r.csv", tmp_path / "h.csv", tmp_path / "s.csv"
    write_table(adult.iloc[:1500], real, schema=adult_schema)
    write_table(adult.iloc[1500:2500], hold, schema=adult_schema)
    write_table(adult.iloc[2500:4000], syn, schema=adult_schema)
    r = fedsynth("evaluate", "--real", str(real), "--holdout", str(hold), "--synthetic", str(syn), "--schema",
                 str(adult_paths[1]), "--target", "income", "--out", str(tmp_path / "rep"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["fidelity"] and rep["utility"] and rep["privacy"]


def test_simulate_help_explains_every_option():
    r = fedsynth("simulate", "--help")
    assert r.returncode == 0
    for opt in ("--data", "--schema", "--clients", "--partition", "--alpha", "--label", "--column", "--epsilon",
                "--delta", "--rounds", "--local-epochs", "--clients-per-round", "--server-lr", "--model", "--holdout", "--rows",
                "--secagg-shares", "--secagg-threshold", "--seed", "--out", "--client-weighting", "--weight-cap-rows"):
        assert opt in r.stdout, opt


@pytest.mark.parametrize("args, message", [
    (["--partition", "random"], "choose one of"),
    (["--clients", "1"], "1"),
    (["--epsilon", "-1"], "epsilon must be"),
    (["--data", "nope.csv"], "give --schema"),
    (["--model", "diffusion"], "choose vae or gan"),
    (["--client-weighting", "median"], "choose rows or equal"),
    (["--secagg-shares", "2.5"], "--secagg-shares 2.5 / --secagg-threshold 0.67: num_shares = 2.5: a value above 1 is a count"),
])
def test_simulate_bad_options_get_clear_errors(tmp_path, args, message):
    r = fedsynth("simulate", "--out", str(tmp_path / "x"), *args)
    assert r.returncode == 2 and message in (r.stderr + r.stdout)
