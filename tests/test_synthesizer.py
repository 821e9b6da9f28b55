import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from opacus.accountants import RDPAccountant

from fedsynth.common.artifact import PrivacyRecord, write_model
from fedsynth.common.calibration import POOL_FACTOR
from fedsynth.common.errors import FedsynthError, PrivacyError
from fedsynth.common.model.marginal_fit import MarginalFitConfig
from fedsynth.common.model.tabular import ModelConfig
from fedsynth.common.lineage import provenance, read_lineage, write_synthetic
from fedsynth.common.synthesizer import SAMPLE_CHUNK_ROWS, Synthesizer, TrainingConfig


# the marginal releases as the defaults make them, a short fine-tune (post-processing, no privacy
# effect): what the fine-tune does is test_marginal_fit.py's; `trained` keeps the default steps
BRIEF_FINE_TUNE = MarginalFitConfig(steps=50)


@pytest.fixture(scope="module")
def trained(adult):
    df = adult.sample(3000, random_state=1).reset_index(drop=True)
    s = Synthesizer(_schema_path(), epsilon=2.0, delta=1e-5,
                    training=TrainingConfig(epochs=3))
    return s.fit(df)


def _schema_path():
    from fedsynth.simulations.datasets import bundled_paths

    return bundled_paths("adult")[1]


def test_epsilon_reported_is_the_accountant_over_every_release(trained):
    acc = RDPAccountant()
    for sigma, q, steps in trained.privacy.history:
        for _ in range(int(steps)):
            acc.step(noise_multiplier=sigma, sample_rate=q)
    assert trained.epsilon_spent == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)
    assert trained.epsilon_spent <= 2.0
    assert trained.epsilon_spent > 1.9  # lands on the target, not far below
    kinds = [q for _, q, _ in trained.privacy.history]
    assert kinds[0] == 1.0  # the category-frequency release is accounted too


def test_sample_respects_schema(trained, adult_schema):
    df = trained.sample(500, seed=3)
    assert len(df) == 500 and list(df.columns) == adult_schema.names
    for col in adult_schema.columns:
        if col.type == "categorical":
            assert set(df[col.name].dropna()) <= set(col.categories)
        else:
            assert df[col.name].between(col.min, col.max).all()


def test_conditional_sampling_returns_exactly_n_matching_rows(trained):
    df = trained.sample(200, conditions={"income": ">50K", "sex": "Female"}, seed=0)
    assert len(df) == 200
    assert (df["income"] == ">50K").all() and (df["sex"] == "Female").all()


def test_impossible_conditions_are_refused(trained):
    with pytest.raises(FedsynthError, match="not a category"):
        trained.sample(10, conditions={"income": "rich"})
    with pytest.raises(FedsynthError, match="not in the schema"):
        trained.sample(10, conditions={"colour": "red"})


def test_save_load_roundtrip(trained, tmp_path):
    path = trained.save(tmp_path / "m")
    loaded = Synthesizer.load(path)
    assert loaded.epsilon_spent == pytest.approx(trained.epsilon_spent)
    a, b = trained.sample(300, seed=7), loaded.sample(300, seed=7)
    assert a.equals(b)
    meta = json.loads((path / "synthesizer.json").read_text())
    assert meta["privacy"]["epsilon_spent"] == pytest.approx(trained.epsilon_spent)
    assert meta["model_id"] == loaded.info["model_id"]


def test_save_is_all_or_nothing(trained, tmp_path, monkeypatch):
    target = tmp_path / "m"
    trained.save(target)
    before = (target / "weights.pt").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("pathlib.Path.write_text", boom)
    with pytest.raises(OSError):
        trained.save(target, overwrite=True)
    assert (target / "weights.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_load_refuses_garbage(tmp_path):
    (tmp_path / "synthesizer.json").write_text("{")
    with pytest.raises(FedsynthError, match="corrupt"):
        Synthesizer.load(tmp_path)
    with pytest.raises(FedsynthError, match="not a fedsynth model"):
        Synthesizer.load(tmp_path / "nothing")


def test_refuses_delta_too_large_for_table(adult_schema, adult):
    s = Synthesizer(adult_schema, epsilon=1.0, delta=1e-2)
    with pytest.raises(PrivacyError, match="1/n"):
        s.fit(adult.head(500))


def test_refuses_second_fit(trained, adult):
    with pytest.raises(PrivacyError, match="already spent"):
        trained.fit(adult.head(100))


def test_gan_trains_and_samples(adult_schema, adult):
    df = adult.sample(1500, random_state=2).reset_index(drop=True)
    s = Synthesizer(adult_schema, model="gan", epsilon=1.0, delta=1e-5, training=TrainingConfig(epochs=1),
                    marginal_fit=BRIEF_FINE_TUNE).fit(df)
    out = s.sample(100, conditions={"sex": "Female"}, seed=1)
    assert len(out) == 100 and (out["sex"] == "Female").all()
    assert s.epsilon_spent <= 1.0
    assert np.isfinite(out["age"]).all()


def test_sampling_generates_in_bounded_chunks(trained, monkeypatch):
    asked = []
    generate = trained.model.generate
    monkeypatch.setattr(trained.model, "generate", lambda n, **kw: (asked.append(n), generate(n, **kw))[1])
    n = 2 * SAMPLE_CHUNK_ROWS + 7
    assert len(trained.sample(n, seed=1)) == n
    # calibrated: each row is drawn from a pool of POOL_FACTOR model rows, one bounded pool at a time
    assert max(asked) <= SAMPLE_CHUNK_ROWS and sum(asked) == POOL_FACTOR * n
    asked.clear()
    monkeypatch.setattr(trained, "calibrate", False)  # the fixture is shared
    assert len(trained.sample(n, seed=1)) == n
    assert max(asked) <= SAMPLE_CHUNK_ROWS and sum(asked) == n


def test_sampling_refuses_sizes_it_cannot_hold(trained):
    with pytest.raises(FedsynthError, match="iter_sample"):
        trained.sample(10**9)
    with pytest.raises(FedsynthError, match="at most 100,000,000"):
        trained.iter_sample(10**9)


def test_seeded_chunks_are_reproducible_and_independent(trained):
    a = list(trained.iter_sample(250, seed=5, chunk_rows=100))
    b = list(trained.iter_sample(250, seed=5, chunk_rows=100))
    assert [len(c) for c in a] == [100, 100, 50] and all(x.equals(y) for x, y in zip(a, b))
    assert a[0].equals(trained.sample(100, seed=5))  # the first chunk is what one call with the seed gives
    assert not a[1].equals(a[0])


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_streamed_sample_is_written_whole_with_its_lineage(trained, tmp_path, suffix):
    path = tmp_path / f"s.{suffix}"
    meta, _ = trained.to_state()
    chunks = trained.iter_sample(250, conditions={"sex": "Female"}, seed=3, chunk_rows=100)
    write_synthetic(chunks, path, provenance(meta, 250, {"sex": "Female"}), schema=trained.schema)
    back = pd.read_csv(path) if suffix == "csv" else pd.read_parquet(path)
    assert len(back) == 250 and (back["sex"] == "Female").all()
    assert list(back.columns) == trained.schema.names
    check = read_lineage(path)
    assert check.file_ok is True and check.ok and check.record["rows"] == 250


def _opacus_epsilon(history, delta):
    """Opacus' RDP accountant stepped through the history, with orders beyond its defaults (they stop at 63)."""
    acc = RDPAccountant()
    for sigma, q, steps in history:
        for _ in range(int(steps)):
            acc.step(noise_multiplier=sigma, sample_rate=q)
    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 1025))
    return acc.get_epsilon(delta, alphas=orders)


def test_small_budgets_scale_the_frequency_release_and_stay_within_epsilon(adult_schema, adult_small):
    sigmas = []
    for eps in (1.0, 0.3, 0.1):
        s = Synthesizer(adult_schema, epsilon=eps, delta=1e-5, training=TrainingConfig(epochs=1),
                        model_config=ModelConfig(hidden=16), marginal_fit=BRIEF_FINE_TUNE).fit(adult_small)
        sigma, q, steps = s.privacy.history[0]
        assert (q, steps) == (1.0, 1)  # the category-frequency release, accounted first
        assert s.epsilon_spent <= eps and _opacus_epsilon(s.privacy.history, 1e-5) <= eps
        sigmas.append(sigma)
    assert sigmas[0] == 10.0 < sigmas[1] < sigmas[2]


@pytest.mark.parametrize("record", [
    PrivacyRecord(0.98, 1e-5, "rdp", [], 0.98, per_client=True),  # a federated model, as the coordinator writes it
    PrivacyRecord(0.5, 1e-5, "rdp", [], None, per_client=True),  # no client reported its epsilon
    PrivacyRecord(0.0, 0.0, "rdp", [], None, per_client=True),  # no client reported anything
], ids=["reported", "epsilon-unreported", "nothing-reported"])
def test_a_loaded_model_states_the_model_id_it_was_saved_with(tiny_model_dir, tmp_path, record):
    """The id in a sample's sidecar is recomputed from the loaded model: it must be the file's (and the card's).
    Before, the two unreported cases came back with epsilon_spent 0.0 and a clamped target: another id."""
    meta = dataclasses.replace(Synthesizer.load(tiny_model_dir).artifact_meta(), privacy=record)
    written = write_model(tmp_path / "m", meta, Synthesizer.load(tiny_model_dir).model.get_arrays())
    loaded = Synthesizer.load(tmp_path / "m")
    state, _ = loaded.to_state()
    assert state["model_id"] == written["model_id"] and state["privacy"] == written["privacy"]
    assert provenance(state, 10)["model_id"] == written["model_id"]


def test_a_table_of_numericals_alone_samples_every_row_asked_for():
    """No categorical or boolean column: nothing to condition on or rake to. Sampling once
    returned no rows at all for such a table (the raking weights were sized by its absent
    categorical columns), so a new user's all-numeric CSV got an empty synthetic file."""
    from fedsynth.common.data.schema import Schema
    schema = Schema.from_json({"columns": [
        {"name": "visits", "type": "numerical", "subtype": "int", "min": 0, "max": 80, "point_masses": [0]},
        {"name": "cost", "type": "numerical", "subtype": "float", "min": 0.0, "max": 9.0},
        {"name": "insured", "type": "numerical", "subtype": "int", "min": 0, "max": 1}]})
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"visits": np.where(rng.random(600) < 0.3, 0, rng.integers(1, 30, 600)),
                       "cost": rng.uniform(0, 9, 600).round(3), "insured": rng.integers(0, 2, 600)})
    s = Synthesizer(schema, epsilon=1.0, delta=1e-5, training=TrainingConfig(epochs=1),
                    model_config=ModelConfig(hidden=16), marginal_fit=BRIEF_FINE_TUNE).fit(df)
    out = s.sample(250, seed=0)
    assert len(out) == 250 and out.notna().all().all()
    assert out["visits"].between(0, 80).all() and out["cost"].between(0, 9).all() and out["insured"].isin([0, 1]).all()
    assert (out["visits"] == 0).any() and (out["visits"] > 0).any()
    assert sum(len(c) for c in s.iter_sample(250, seed=0, chunk_rows=100)) == 250
