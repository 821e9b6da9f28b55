import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest
from _cli import fedsynth

from fedsynth.cli.choices import Accountant, Binning, ClientWeighting, Model, Partition
from fedsynth.common.data.tables import load_table, write_table
from fedsynth.common.dp.accounting import ACCOUNTANTS
from fedsynth.common.lineage import provenance, write_synthetic
from fedsynth.common.model.tabular import BINNINGS, MODELS
from fedsynth.common.protocol.federation import AGGREGATION_WEIGHTS
from fedsynth.simulations.partition import PARTITIONS


@pytest.fixture()
def small_csv(tmp_path, adult, adult_schema):
    p = tmp_path / "train.csv"
    write_table(adult.sample(2500, random_state=5), p, schema=adult_schema)
    return p


def test_fit_sample_lineage(tmp_path, small_csv, adult_paths):
    model = tmp_path / "model"
    r = fedsynth("fit", "--data", str(small_csv), "--schema", str(adult_paths[1]), "--epsilon", "1", "--delta", "1e-5",
                 "--epochs", "2", "--pairs", "0", "--out", str(model))  # with pairs: the small-epsilon fit below
    assert r.returncode == 0, r.stderr
    assert "epsilon spent" in r.stdout
    # not a terminal: a few plain progress lines (not one per step), no ANSI codes, no redraws
    assert "\x1b[" not in r.stderr and "\r" not in r.stderr
    steps = re.findall(r"^DP-SGD step (\d+)/(\d+), .* elapsed, ", r.stderr, re.M)
    assert 2 <= len(steps) <= 10 and steps[-1][0] == steps[-1][1], r.stderr
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


@pytest.fixture()
def written(tmp_path, adult, adult_schema):
    """A synthetic file and its sidecar as `fedsynth sample` writes them (no training needed)."""
    meta = {"model_id": "0123456789abcdef", "format": "fedsynth-synthesizer/1", "schema_hash": adult_schema.hash(),
            "round": 2, "privacy": {"epsilon_spent": 0.99, "delta": 1e-5, "accountant": "rdp"}}
    df = adult.head(50)
    path = write_synthetic(df, tmp_path / "syn.csv", provenance(meta, len(df), {"income": ">50K"}),
                           schema=adult_schema)
    return path, tmp_path / "syn.csv.lineage.json"


def _edit_sidecar(side, change):
    record = json.loads(side.read_text())
    change(record)
    side.write_text(json.dumps(record, indent=2))


def test_lineage_detects_edited_claims(written):
    path, side = written
    r = fedsynth("lineage", str(path))
    assert r.returncode == 0 and "hash verified" in r.stderr, r.stderr
    assert json.loads(r.stdout)["privacy"]["epsilon"] == 0.99
    _edit_sidecar(side, lambda rec: rec["privacy"].update(epsilon=0.1))  # a stronger guarantee than was given
    _edit_sidecar(side, lambda rec: rec.update(model_id="feedfacefeedface"))
    r = fedsynth("lineage", str(path))
    assert r.returncode == 1 and "hash verified" not in r.stderr
    assert "claims do not match" in r.stderr and "model_id, privacy.epsilon" in r.stderr, r.stderr
    assert str(side) in r.stderr


def test_lineage_of_an_older_sidecar_verifies_the_file_only(written):
    path, side = written
    _edit_sidecar(side, lambda rec: rec.pop("digests", None))  # as fedsynth wrote sidecars before claims were hashed
    r = fedsynth("lineage", str(path))
    assert r.returncode == 0 and "file hash verified; claims NOT verified" in r.stderr
    assert "older fedsynth" in r.stderr
    path.write_text(path.read_text() + "1,2,3\n")
    r = fedsynth("lineage", str(path))
    assert r.returncode == 1 and "hash mismatch" in r.stderr


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
    assert (tmp_path / "rep" / "report.html").is_file()
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    # The "synthetic" rows are real rows no model saw: as faithful and as useful as real data,
    # none copied from the training rows, and no membership attack tells the training rows apart.
    assert rep["utility"]["target"] == "income" and rep["utility"]["test_rows_holdout"] == 1000
    summary = rep["summary"]
    assert summary["mean_tvd_1way"] < 0.05 and 0.9 <= summary["utility_auc_ratio"] <= 1.1, summary
    assert summary["exact_copy_rate"] == 0.0 and summary["attack_auc"] < 0.6, summary


def test_simulate_help_explains_every_option():
    r = fedsynth("simulate", "--help")
    assert r.returncode == 0
    for opt in ("--data", "--schema", "--clients", "--partition", "--alpha", "--label", "--column", "--epsilon",
                "--delta", "--rounds", "--local-epochs", "--clients-per-round", "--server-lr", "--model", "--holdout", "--rows",
                "--secagg-shares", "--secagg-threshold", "--seed", "--out", "--client-weighting", "--weight-cap-rows"):
        assert opt in r.stdout, opt


@pytest.mark.parametrize("args, message", [
    (["--clients", "1"], "x>=2"),
    (["--epsilon", "-1"], "epsilon must be"),
    (["--data", "nope.csv"], "give --schema"),
    (["--secagg-shares", "2.5"], "--secagg-shares 2.5 / --secagg-threshold 0.67: num_shares = 2.5: a value above 1 is a count"),
])
def test_simulate_bad_options_get_clear_errors(tmp_path, args, message):
    r = fedsynth("simulate", "--out", str(tmp_path / "x"), *args)
    assert r.returncode == 2 and message in (r.stderr + r.stdout)


# ------------------------------------------------------------------------- clear errors, not tracebacks (issue 13)
LATIN1 = '{"name": "caf\xe9"}\n'.encode("latin-1")  # not UTF-8: a bare 0xe9 byte


def _error_cases(tmp: Path, adult, adult_schema, adult_paths) -> dict[str, tuple[list[str], str, str]]:
    """command args, the file the error must name, and what it must say."""
    bad_json, bad_toml, card_list = tmp / "latin1.json", tmp / "latin1.toml", tmp / "card.json"
    bad_json.write_bytes(LATIN1)
    bad_toml.write_bytes(b"[plan]\nname = 'caf\xe9'\n")
    card_list.write_text('[{"client": "a"}]\n')
    table = tmp / "t.csv"
    write_table(adult.iloc[:400], table, schema=adult_schema)
    synthetic = tmp / "syn.csv"
    write_table(adult.iloc[400:800], synthetic, schema=adult_schema)
    (tmp / "syn.csv.lineage.json").write_text('["synthetic"]\n')
    evaluate = ["evaluate", "--real", str(table), "--holdout", str(table), "--synthetic", str(table), "--schema",
                str(adult_paths[1]), "--out", str(tmp / "rep")]
    return {
        "schema validate": (["schema", "validate", str(table), "--schema", str(bad_json)], str(bad_json), "not UTF-8"),
        "client": (["client", "--data", str(table), "--schema", str(bad_json), "--budget-epsilon", "1",
                    "--budget-delta", "1e-6", "--coordinator", "127.0.0.1:9", "--state-dir", str(tmp / "state"),
                    "--insecure"],
                   str(bad_json), "not UTF-8"),
        "coordinator": (["coordinator", "--config", str(bad_toml), "--out", str(tmp / "run"), "--insecure"],
                        str(bad_toml), "not UTF-8"),
        "evaluate card encoding": ([*evaluate, "--model-card", str(bad_json)], str(bad_json), "not UTF-8"),
        "evaluate card list": ([*evaluate, "--model-card", str(card_list)], str(card_list), "expected a JSON object"),
        "lineage sidecar list": (["lineage", str(synthetic)], "syn.csv.lineage.json", "expected a JSON object"),
    }


@pytest.mark.parametrize("case", ["schema validate", "client", "coordinator", "evaluate card encoding",
                                  "evaluate card list", "lineage sidecar list"])
def test_unreadable_files_get_one_clear_error(tmp_path, adult, adult_schema, adult_paths, case):
    args, names, says = _error_cases(tmp_path, adult, adult_schema, adult_paths)[case]
    r = fedsynth(*args)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert names in r.stderr and says in r.stderr, r.stderr


def test_fit_refuses_zero_threads(tmp_path, small_csv, adult_paths):
    r = fedsynth("fit", str(small_csv), "--schema", str(adult_paths[1]), "--out", str(tmp_path / "m"), "--threads", "0")
    assert r.returncode == 2 and "--threads" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "m").exists()


def test_simulate_with_too_small_alpha_names_the_alpha_that_works(tmp_path):
    out = tmp_path / "run"
    r = fedsynth("simulate", "--partition", "dirichlet", "--alpha", "0.001", "--clients", "5", "--out", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "--alpha 0.001" in r.stderr and "the smallest --alpha that works here" in r.stderr
    assert not out.exists()  # refused before anything was written


def test_sample_refuses_an_absurd_row_count_before_allocating(tmp_path, tiny_model_dir):
    out = tmp_path / "s.csv"
    r = fedsynth("sample", str(tiny_model_dir), "--rows", "1000000000", "--out", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "1,000,000,000 rows" in r.stderr and "at most 100,000,000" in r.stderr
    assert not out.exists()


def test_sample_refuses_two_values_for_one_column(tmp_path, tiny_model_dir):
    out = tmp_path / "s.csv"
    r = fedsynth("sample", str(tiny_model_dir), "--rows", "10", "--where", "sex=Male", "--where", "sex=Female",
                 "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert "'sex'" in r.stderr and "'Male'" in r.stderr and "'Female'" in r.stderr
    assert not out.exists()


def test_fit_on_a_terminal_shows_a_bar_with_steps_and_the_time_left(tmp_path, small_csv, adult_paths):
    """FORCE_COLOR and TTY_INTERACTIVE make rich treat the captured stderr as a terminal."""
    env = {"FORCE_COLOR": "1", "TTY_INTERACTIVE": "1"}
    r = fedsynth("fit", str(small_csv), "--schema", str(adult_paths[1]), "--epochs", "1", "--out", str(tmp_path / "m"),
                 "--pairs", "0", env=env)  # the bar is DP-SGD's; no marginal fit after it
    assert r.returncode == 0, r.stderr
    assert "\x1b[" in r.stderr
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", r.stderr)  # what the terminal shows
    frames = text.split("\r")  # the bar is redrawn in place
    total = re.search(r"(\d+) DP-SGD steps", text).group(1)
    # a fast fit may be drawn only at its first and last step; the time left is tested in test_progress
    assert any(re.search(rf"DP-SGD step \d+/{total} .* \d:\d\d:\d\d (about \d+s left|time left unknown)", f)
               for f in frames), text
    assert any(re.search(rf"DP-SGD step {total}/{total} .* done", f) for f in frames[-2:]), text
    assert not re.search(r"^DP-SGD step \d+/\d+, ", text, re.M)  # no plain lines on a terminal


def test_fit_with_a_small_epsilon_spends_within_it(tmp_path, small_csv, adult_paths):
    model = tmp_path / "model"
    r = fedsynth("fit", str(small_csv), "--schema", str(adult_paths[1]), "--epsilon", "0.3", "--epochs", "1",
                 "--binning", "schema", "--fit-steps", "100", "--out", str(model))
    assert r.returncode == 0, r.stderr
    meta = json.loads((model / "synthesizer.json").read_text())
    fit = meta["info"]["marginal_fit"]
    assert fit["steps"] == (100 if fit["pairs"] else 0)  # the marginal releases are made whatever the steps
    fine = re.findall(r"^marginal fit step (\d+)/100, .* elapsed, ", r.stderr, re.M)  # its own lines, after DP-SGD's
    assert (fine[-1] == "100" and len(fine) <= 10) if fit["pairs"] else not fine, r.stderr
    assert meta["model_config"].get("binning", "schema") == "schema"  # the frugal choice: equal-width bins
    privacy = meta["privacy"]
    assert 0.29 <= privacy["epsilon_spent"] <= 0.3
    assert privacy["history"][0][0] > 10  # the category-frequency release took more noise than at epsilon 1


# ------------------------------------------------------------------------- issue 17: --version, choices, extensions
@pytest.mark.parametrize("module", ["fedsynth", "fedsynth.cli"])
def test_version_prints_the_installed_version(module):
    r = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"fedsynth {metadata.version('fedsynth')}"


def test_the_cli_imports_no_heavy_library():
    """`fedsynth --help` and --version stay quick: torch, Flower, pandas load inside the commands."""
    heavy = ("torch", "flwr", "sklearn", "pandas", "opacus", "cryptography")
    code = f"import sys, fedsynth.cli; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


@pytest.mark.parametrize("name", ["synth.xlsx", "synth.json", "synth.gz", "synth", ".csv"])
def test_sample_refuses_an_output_name_it_cannot_write_before_any_work(tmp_path, name):
    """Before: exit 0 and CSV text in synth.xlsx. The model folder does not exist: the name is checked first."""
    out = tmp_path / name
    r = fedsynth("sample", str(tmp_path / "no-model"), "--rows", "10", "--out", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"--out {out}: unsupported file type" in r.stderr
    assert ".csv, .csv.gz, .parquet, .pq" in r.stderr
    assert not out.exists() and not (tmp_path / f"{name}.lineage.json").exists()


def test_sample_writes_gzipped_csv_for_csv_gz(tmp_path, tiny_model_dir, adult_schema):
    """Before: plain CSV text in a file named .csv.gz."""
    out = tmp_path / "s.csv.gz"
    r = fedsynth("sample", str(tiny_model_dir), "--rows", "40", "--seed", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:2] == b"\x1f\x8b"  # the gzip magic number
    assert len(load_table(out, adult_schema)) == 40
    assert fedsynth("lineage", str(out)).returncode == 0


CHOICES = [  # (command, option, allowed values in order)
    (["simulate"], "--partition", ["iid", "dirichlet", "quantity", "natural"]),
    (["simulate"], "--model", ["vae", "gan"]),
    (["simulate"], "--client-weighting", ["rows", "equal"]),
    (["fit", "t.csv", "--schema", "s.json"], "--model", ["vae", "gan"]),
    (["fit", "t.csv", "--schema", "s.json"], "--accountant", ["rdp", "prv"]),
    (["fit", "t.csv", "--schema", "s.json"], "--binning", ["measured", "schema"]),
]


@pytest.mark.parametrize("command, option, allowed", CHOICES, ids=lambda v: v if isinstance(v, str) else None)
def test_every_choice_option_lists_its_values_and_refuses_others(tmp_path, command, option, allowed):
    shown = "[" + "|".join(allowed) + "]"
    assert shown in fedsynth(command[0], "--help").stdout
    r = fedsynth(*command, "--out", str(tmp_path / "x"), option, "bogus")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"'bogus' is not one of {', '.join(repr(v) for v in allowed)}" in r.stderr, r.stderr
    assert not (tmp_path / "x").exists()


def test_the_cli_choices_are_the_librarys():
    """The enums are spelled out in the CLI (kept free of torch and Flower): they must not drift."""
    for enum, values in ((Model, MODELS), (Accountant, ACCOUNTANTS), (Binning, BINNINGS),
                         (ClientWeighting, AGGREGATION_WEIGHTS), (Partition, PARTITIONS)):
        assert tuple(e.value for e in enum) == tuple(values), enum


def test_sample_calibrates_unless_told_not_to(tmp_path, tiny_model_dir, adult_schema):
    from fedsynth.common.synthesizer import Synthesizer
    files = {}
    for flag in ("--calibrate", "--no-calibrate"):
        files[flag] = tmp_path / f"{flag.strip('-')}.csv"
        r = fedsynth("sample", str(tiny_model_dir), "--rows", "60", "--seed", "5", flag, "--out", str(files[flag]))
        assert r.returncode == 0, r.stderr
    syn = Synthesizer.load(tiny_model_dir)
    syn.calibrate = False
    write_table(syn.sample(60, seed=5), tmp_path / "api.csv", schema=adult_schema)
    plain, api = load_table(files["--no-calibrate"], adult_schema), load_table(tmp_path / "api.csv", adult_schema)
    pd.testing.assert_frame_equal(plain, api)
    assert not load_table(files["--calibrate"], adult_schema).equals(plain)


def test_every_command_takes_the_table_as_data_and_the_old_argument_still_works(tmp_path, small_csv, adult_paths):
    schema = str(adult_paths[1])
    for args in (["schema", "validate", "--data", str(small_csv)], ["schema", "validate", str(small_csv)]):
        r = fedsynth(*args, "--schema", schema)
        assert r.returncode == 0 and "ok:" in r.stdout, r.stderr
    r = fedsynth("schema", "draft", "--data", str(small_csv))
    assert r.returncode == 0 and json.loads(r.stdout)["columns"], r.stderr
    r = fedsynth("fit", "--schema", schema, "--out", str(tmp_path / "m"))
    assert r.returncode == 2 and "no table given: pass it as --data FILE" in r.stderr
    r = fedsynth("fit", str(small_csv), "--data", str(tmp_path / "other.csv"), "--schema", schema,
                 "--out", str(tmp_path / "m"))
    assert r.returncode == 2 and "given twice" in r.stderr
    assert not (tmp_path / "m").exists()


def test_the_fine_tune_steps_default_to_the_librarys():
    """`fit` and `simulate` state --fit-steps' default without importing torch: it must stay the library's."""
    import inspect

    from fedsynth.cli.simulate import simulate
    from fedsynth.cli.synthesize import fit
    from fedsynth.common.model.marginal_fit import MarginalFitConfig

    for command in (fit, simulate):
        assert inspect.signature(command).parameters["fit_steps"].default == MarginalFitConfig.steps, command


def test_simulates_help_states_the_plans_own_defaults():
    """`simulate --help` states the shared-noise schedule as literals (the CLI does not import the
    server package, torch with it, to print help): they must stay the plan's."""
    import typing

    from fedsynth.cli.simulate import simulate
    from fedsynth.server.shared_plan import BATCH_FACTOR, SHARED_ROUNDS
    from fedsynth.simulations.driver import LOCAL_ROUNDS

    hints = typing.get_type_hints(simulate, include_extras=True)
    help_of = {name: " ".join(m.help for m in hints[name].__metadata__) for name in ("rounds", "sample_rate")}
    assert f"default {SHARED_ROUNDS} with shared noise" in help_of["rounds"], help_of
    assert f"{LOCAL_ROUNDS} with local noise" in help_of["rounds"], help_of
    assert f"default: {BATCH_FACTOR:g} x single-party's batch rule" in help_of["sample_rate"], help_of
