"""A real federated run end to end: Flower Simulation Engine (Ray), SecAgg+, 3 institutions."""

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from _cli import fedsynth as run_cli

from fedsynth.client.ledger import Ledger
from fedsynth.common.deploy.processes import PID_FILE
from fedsynth.common.dp.accounting import epsilon_spent
from fedsynth.common.synthesizer import Synthesizer


def fedsynth(*args, check=True, env=None):
    proc = run_cli(*args, env=env, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"fedsynth {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "run"
    proc = fedsynth("simulate", "--data", "adult", "--clients", "3", "--partition", "dirichlet", "--alpha", "0.5",
                    "--label", "income", "--epsilon", "1", "--delta", "1e-5", "--rounds", "2", "--local-epochs", "0.5",
                    "--rows", "2000", "--pairs", "5", "--fit-steps", "100", "--out", str(out))
    return out, proc.stdout + proc.stderr


def test_outputs_exist_and_are_consistent(run_dir):
    out, log = run_dir
    for name in ("synthetic.csv", "synthetic.csv.lineage.json", "model_card.json", "summary.json", "report.html",
                 "report.json", "synthesizer/synthesizer.json", "checkpoint/weights.pt", "holdout.csv"):
        assert (out / name).exists(), name
    syn = pd.read_csv(out / "synthetic.csv")
    assert len(syn) == 2000
    card = json.loads((out / "model_card.json").read_text())
    assert card["rounds_completed"] == 2 and card["participating_clients"] == 3
    assert card["secure_aggregation"]["protocol"].startswith("SecAgg+")
    assert len(card["clients"]) == 3
    assert all(0 < c["epsilon_spent"] <= 1.0 and c["delta"] == 1e-5 for c in card["clients"])
    assert "round 2/2 done" in log and "3 updates securely aggregated" in log
    assert "round 1/2 done" in log and "left:" in log.split("round 1/2 done")[1].split("\n")[0]  # time left
    assert "\x1b[" not in log and "\r" not in log  # no colour codes and no redraws when the output is not a terminal
    # Flower's own lines are in their log file, not between the round lines
    flower = (out / "flower.log").read_text()
    assert "Secure aggregation completed" in flower and "Secure aggregation" not in log
    assert "DEPRECATED" not in log and "Ray will no longer override" not in log
    assert f"{out}/flower.log" in log
    # Flower's current simulation route: a SuperLink in simulation mode and `flwr run`, not the
    # deprecated run_simulation (whose warning would be in Flower's log); all stopped with the run
    assert "Starting Flower SuperLink" in flower and "DEPRECATED" not in flower and "\x1b[" not in flower
    assert (out / "flower" / "app" / "pyproject.toml").exists() and not (out / "flower" / PID_FILE).exists()
    # the marginal fit after the last round (--pairs 5): said, and recorded in the model
    fit = json.loads((out / "synthesizer/synthesizer.json").read_text())["info"]["marginal_fit"]
    assert "marginal fit" in log and fit.get("contributors") == 3, log[-2000:]
    assert card["plan"]["marginal_fit"]["steps"] == 100  # --fit-steps


def test_each_ledger_is_the_accountant_over_its_history(run_dir):
    out, _ = run_dir
    for i in (1, 2, 3):
        ledger = Ledger.open(out / "clients" / f"client-{i}", 1.0, 1e-5)
        rounds = [e for e in ledger.events if e["event"] == "round"]
        assert [e["round"] for e in rounds] == [1, 2]
        assert ledger.epsilon_spent == pytest.approx(epsilon_spent(ledger.history, 1e-5))
        assert 0.99 <= ledger.epsilon_spent <= 1.0  # the planned participation lands on the cap


def test_global_model_samples_with_the_cli(run_dir, tmp_path):
    out, _ = run_dir
    synth = Synthesizer.load(out / "synthesizer")
    assert 0.99 <= synth.epsilon_spent <= 1.0
    fedsynth("sample", str(out / "synthesizer"), "--rows", "50", "--where", "income=>50K", "--out", str(tmp_path / "s.csv"))
    s = pd.read_csv(tmp_path / "s.csv")
    assert len(s) == 50 and (s["income"] == ">50K").all()
    lineage = json.loads(fedsynth("lineage", str(tmp_path / "s.csv")).stdout)
    assert lineage["synthetic"] is True and lineage["round"] == 2 and lineage["conditions"] == {"income": ">50K"}


def test_one_model_id_in_the_model_card_the_model_and_every_sidecar(run_dir, tmp_path):
    """Issue 17: the lineage sidecar of a federated run named another model id than model_card.json."""
    out, _ = run_dir
    card_id = json.loads((out / "model_card.json").read_text())["model_id"]
    assert json.loads((out / "synthesizer" / "synthesizer.json").read_text())["model_id"] == card_id
    assert json.loads((out / "synthetic.csv.lineage.json").read_text())["model_id"] == card_id
    assert json.loads((out / "summary.json").read_text())["model_card"]["model_id"] == card_id
    fedsynth("sample", str(out / "synthesizer"), "--rows", "20", "--out", str(tmp_path / "more.parquet"))
    assert json.loads(fedsynth("lineage", str(tmp_path / "more.parquet")).stdout)["model_id"] == card_id


def test_quality_summary_against_holdout(run_dir):
    out, _ = run_dir
    q = json.loads((out / "summary.json").read_text())["quality"]
    assert 0 <= q["tvd_1way"] < 0.5 and 0.5 <= q["trtr_auc"] <= 1.0


def test_a_finished_run_is_not_overwritten(run_dir):
    out, _ = run_dir
    proc = fedsynth("simulate", "--out", str(out), "--rounds", "1", check=False)
    assert proc.returncode == 2 and "already holds a finished run" in proc.stderr


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """Local noise, 4 institutions, 2 per round, 6 rounds, on a terminal: FORCE_COLOR and
    TTY_INTERACTIVE make rich treat the captured stderr as one. One run serves the budget
    refusals' test and the progress bar's."""
    out = tmp_path_factory.mktemp("local") / "pp"
    proc = fedsynth("simulate", "--noise", "local", "--clients", "4", "--clients-per-round", "2", "--rounds", "6",
                    "--local-epochs", "0.3", "--rows", "500", "--no-report", "--out", str(out),
                    env={"FORCE_COLOR": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "200"})
    return out, proc


def test_clients_refuse_rounds_they_cannot_afford(local_run):
    """Each of the 4 institutions plans 3 participations of the 6 rounds and must sit out after them."""
    out, _ = local_run
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    checks = [e for e in events if e["event"] == "budget_check"]
    refusals = [r for e in checks for r in e["replies"].values() if not r["can_train"]]
    assert refusals and {r["reason"] for r in refusals} == {"budget exhausted"}
    for i in range(1, 5):
        ledger = Ledger.open(out / "clients" / f"client-{i}", 1.0, 1e-5)
        rounds = [e for e in ledger.events if e["event"] == "round"]
        assert len(rounds) == 3  # least-spent-first selection: exactly the planned participation
        assert ledger.epsilon_spent <= 1.0
    card = json.loads((out / "model_card.json").read_text())
    assert card["rounds_completed"] == 6


def test_simulate_on_a_terminal_shows_a_bar_with_round_k_of_n_and_the_time_left(local_run):
    """A bar redrawn in place with round k/N, the time left and the last round's facts; the plain
    per-round lines are not printed between them, and Flower's lines stay in OUT/flower.log."""
    out, proc = local_run
    assert "\x1b[" in proc.stderr
    frames = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", proc.stderr).split("\r")  # what the terminal shows
    bar = [f for f in frames if re.search(r"^round \d/6 ", f.strip(), re.M)]
    assert any("round 2/6 " in f and re.search(r"about \d+(s| min) left", f) and "2 updates securely aggregated; "
               "epsilon spent up to" in f for f in bar), frames
    assert any("round 6/6 " in f and " done " in f for f in bar), frames
    assert "round 1/6 done in" not in proc.stderr  # the facts are on the bar, not a line a round
    assert "Secure aggregation" not in proc.stderr and (out / "flower.log").exists()
    assert (out / "synthetic.csv").exists() and "done" in proc.stdout


@pytest.fixture(scope="module")
def replaced_run(run_dir, tmp_path_factory):
    """A copy of the module's finished run, replaced with --overwrite by a run of another table
    (flights, split by its natural column): one simulation serves the overwrite test and the
    natural partition's."""
    parent = tmp_path_factory.mktemp("replaced")
    out = parent / "run"
    shutil.copytree(run_dir[0], out)
    first = json.loads((out / "model_card.json").read_text())["model_id"]
    proc = fedsynth("simulate", "--data", "flights", "--partition", "natural", "--rounds", "1",
                    "--local-epochs", "0.2", "--rows", "200", "--no-report", "--pairs", "0", "--seed", "1",
                    "--overwrite", "--out", str(out))
    return out, first, proc.stdout + proc.stderr


def test_a_finished_run_is_replaced_whole_only_with_overwrite(replaced_run):
    out, first, _ = replaced_run
    assert json.loads((out / "model_card.json").read_text())["model_id"] != first
    assert json.loads((out / "summary.json").read_text())["config"]["seed"] == 1
    for i in (1, 2, 3):  # fresh institutions: the new run did not inherit the old run's spent budgets (rounds 1, 2)
        ledger = Ledger.open(out / "clients" / f"client-{i}", 1.0, 1e-5)
        assert [e["round"] for e in ledger.events if e["event"] == "round"] == [1]
    assert not (out / "report.html").exists()  # the old run's report went with it (--no-report)
    assert [p.name for p in out.parent.iterdir()] == ["run"]  # the old run is gone, nothing set aside


def test_natural_partition_makes_one_institution_per_value_without_clients(replaced_run):
    """flights' natural column (origin) has 3 airports: --clients is not needed, and not 5."""
    out, _, log = replaced_run
    assert "split over 3 institutions (natural)" in log
    assert json.loads((out / "model_card.json").read_text())["participating_clients"] == 3


def test_shared_noise_simulation_end_to_end(tmp_path):
    """`simulate --noise shared` on the Simulation Engine with SecAgg+: the pooled counts from every
    institution's share, one pooled step per round, one budget check for the whole run (every
    institution can afford every planned round), the marginal fit's shares after the last round
    (on by default), both epsilons in the ledgers, the log and the model card, within each cap."""
    out = tmp_path / "shared"
    proc = fedsynth("simulate", "--clients", "3", "--rounds", "4", "--noise", "shared", "--rows", "300", "--no-report",
                    "--fit-steps", "100", "--out", str(out))
    log = proc.stdout + proc.stderr
    assert "round 4/4 done" in log and "if all other parties colluded" in log
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("budget_check") == 1
    assert [e["contributors"] for e in events if e["event"] == "round_done"] == [3, 3, 3, 3]
    assert [e["contributors"] for e in events if e["event"] == "pooled_counts"] == [3]
    assert [e["event"] for e in events].index("pooled_counts") < [e["event"] for e in events].index("round_done")
    fit = [e for e in events if e["event"] == "marginal_fit"]
    assert len(fit) == 1 and (fit[0].get("skipped") or fit[0]["contributors"] == 3)
    card = json.loads((out / "model_card.json").read_text())
    assert card["marginal_fit"] == {k: v for k, v in fit[0].items() if k not in ("event", "reports")}
    assert card["plan"]["shared_noise"]["min_contributors"] == 3
    assert card["secure_aggregation"]["clipping_range"] == 2**25  # the field's quantisation, as run
    for i in (1, 2, 3):
        ledger = Ledger.open(out / "clients" / f"client-{i}", 1.0, 1e-5)
        assert [e["round"] for e in ledger.events if e["event"] == "round"] == [1, 2, 3, 4]
        assert [e["event"] for e in ledger.events].count("pooled_counts") == 1
        assert "pair_errors" in [e["event"] for e in ledger.events]
        assert 0.99 <= ledger.epsilon_spent <= 1.0 < ledger.epsilon_alone
    assert sorted(c["epsilon_alone"] for c in card["clients"]) == sorted(
        round(Ledger.open(out / "clients" / f"client-{i}", 1.0, 1e-5).epsilon_alone, 2) for i in (1, 2, 3))


def test_outputs_made_while_flower_shuts_down_hand_over_their_result_or_error():
    """simulate makes the synthetic rows and the report on a thread from the coordinator's "finished"
    event on: their value, or their exception, must still reach the run, as when made after it."""
    from fedsynth.simulations.driver import _Background

    made = _Background(lambda: {"quality": 1})
    made.start()
    made.start()  # the event seen twice starts nothing more
    assert made.result() == {"quality": 1}
    failed = _Background(lambda: 1 / 0)
    failed.start()
    with pytest.raises(ZeroDivisionError):
        failed.result()
    never_started = _Background(lambda: "made here")  # no "finished" event: made after Flower ended
    assert never_started.result() == "made here"


def test_a_table_with_timestamps_is_simulated_with_shared_noise(tmp_path):
    """A new user's event table on the real engine: the pooled counts carry the timestamp's day and
    time-of-day histograms, every institution encodes with the edges the coordinator derived from
    them (one entry per column on the wire), and the synthetic times are written back as the input's."""
    rng = np.random.default_rng(0)
    rows = 3000  # 2,400 training rows over the time of day's 256 released cells
    night = rng.random(rows) < 0.4
    minutes = np.where(night, (22 * 60 + rng.integers(0, 240, rows)) % 1440, 600 + rng.integers(0, 240, rows))
    when = pd.Timestamp("2017-01-01") + pd.to_timedelta(rng.integers(0, 729, rows) * 1440 + minutes, unit="min")
    pd.DataFrame({"stopped": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "kind": np.where(night, "night", "day")}).to_csv(
        tmp_path / "stops.csv", index=False)
    (tmp_path / "stops.schema.json").write_text(json.dumps({"name": "stops", "columns": [
        {"name": "stopped", "type": "datetime", "min": "2017-01-01", "max": "2018-12-31T23:59:59",
         "datetime_format": "%Y-%m-%dT%H:%M:%SZ", "bins": 8},
        {"name": "kind", "type": "categorical", "categories": ["night", "day"]}]}))
    out = tmp_path / "run"
    proc = fedsynth("simulate", "--data", str(tmp_path / "stops.csv"), "--schema", str(tmp_path / "stops.schema.json"),
                    "--label", "kind", "--clients", "3", "--rounds", "3", "--noise", "shared", "--no-report",
                    "--fit-steps", "20", "--out", str(out))
    assert "round 3/3 done" in proc.stdout + proc.stderr
    synthetic = pd.read_csv(out / "synthetic.csv", dtype=str)["stopped"]
    assert synthetic.str.fullmatch(r"201[78]-\d\d-\d\dT\d\d:\d\d:\d\dZ").all(), synthetic.head().tolist()
    hours = pd.to_datetime(synthetic).dt.hour
    in_windows = ((hours >= 22) | (hours < 2) | hours.between(10, 13)).mean()
    assert in_windows > 0.7, in_windows  # the released hours (flat: 0.33; 0.84-0.96 in four runs)
    model = json.loads((out / "synthesizer" / "synthesizer.json").read_text())
    assert [len(m) for m in model["marginals"]] == [256, 256]  # the day's histogram, the time of day's
