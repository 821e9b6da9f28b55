"""Behavioural tests of the evaluation module on small samples of the bundled Adult table.

Each metric is checked against a synthetic table whose right answer is known: a perfect copy
(distances 0, utility equal to the real data's, maximal privacy leak), an independent real
sample (the honest baseline: small distances, chance-level attacks), and a table whose columns
were shuffled independently (perfect marginals, destroyed relations).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fedsynth.cli import app
from fedsynth.common.data.schema import Column, Schema
from fedsynth.common.data.tables import load_table, write_table
from fedsynth.common.errors import DataError
from fedsynth.evaluation import PARALLEL_MIN_ROWS, evaluate, write_report
from fedsynth.evaluation.detection import detect, detection_score
from fedsynth.evaluation.guarantee import (
    compare_with_guarantee,
    describe_guarantee,
    dp_max_auc,
    dp_max_tpr,
    guarantee_from_card,
)
from fedsynth.evaluation.jsonable import OMIT_IF_NONE, to_jsonable
from fedsynth.evaluation.prepared import prepare
from fedsynth.evaluation.privacy import privacy
from fedsynth.evaluation.roc import roc_auc, tpr_at_fpr
from fedsynth.simulations.quality import quick_quality

DATA = Path(__file__).resolve().parents[1] / "fedsynth" / "data"
GUARANTEE = {"clients": [{"client": "0", "epsilon": 0.99, "delta": 1e-5},
                         {"client": "1", "epsilon": 1.0, "delta": 1e-5}],
             "accountant": "rdp", "mechanism": "DP-SGD"}


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema.load(DATA / "adult.schema.json")


@pytest.fixture(scope="module")
def split(schema: Schema) -> dict[str, pd.DataFrame]:
    """Disjoint training, holdout and 'other' samples of Adult."""
    df = load_table(DATA / "adult.csv.gz", schema)
    perm = np.random.default_rng(7).permutation(len(df))

    def take(a: int, b: int) -> pd.DataFrame:
        return df.iloc[perm[a:b]].reset_index(drop=True)

    return {"real": take(0, 2500), "holdout": take(2500, 4000), "other": take(4000, 6500)}


@pytest.fixture(scope="module")
def copy_result(split, schema) -> dict:
    """Synthetic = the training rows themselves: the worst case for privacy."""
    return evaluate(split["real"], split["holdout"], split["real"].copy(), schema, target="income", seed=0)


@pytest.fixture(scope="module")
def honest_result(split, schema) -> dict:
    """Synthetic = an independent real sample: what a perfect, non-memorising generator gives."""
    return evaluate(split["real"], split["holdout"], split["other"], schema, target="income",
                    guarantee=GUARANTEE, seed=0)


@pytest.fixture(scope="module")
def shuffled_result(split, schema) -> dict:
    """Every column permuted separately: marginals intact, every relation between columns gone."""
    rng = np.random.default_rng(3)
    shuffled = pd.DataFrame({c: split["other"][c].to_numpy()[rng.permutation(len(split["other"]))]
                             for c in split["other"].columns})
    return evaluate(split["real"], split["holdout"], shuffled, schema, target="income", seed=0)


# --------------------------------------------------------------------------- fidelity
def test_identical_tables_have_zero_distance(copy_result):
    fid = copy_result["fidelity"]
    for col in fid["columns"]:
        assert col["tvd"] == pytest.approx(0.0, abs=1e-12), col["name"]
        if col["type"] == "numerical":
            assert col["ks"] == pytest.approx(0.0, abs=1e-12), col["name"]
            assert col["tvd_quantile_bins"] == pytest.approx(0.0, abs=1e-12)
    assert fid["mean_tvd_1way"] == pytest.approx(0.0, abs=1e-12)
    assert fid["two_way"]["mean_tvd"] == pytest.approx(0.0, abs=1e-12)
    assert fid["two_way"]["contingency_similarity"] == pytest.approx(1.0)
    assert fid["associations"]["similarity"] == pytest.approx(1.0)
    assert copy_result["summary"]["fidelity_1way_score"] == pytest.approx(1.0)


def test_independent_real_sample_is_close_but_not_perfect(honest_result):
    fid = honest_result["fidelity"]
    assert 0.0 < fid["mean_tvd_1way"] < 0.05
    assert 0.0 < fid["two_way"]["mean_tvd"] < 0.12
    assert fid["associations"]["similarity"] > 0.95
    # numericals report both KS and the binned TVD
    age = next(c for c in fid["columns"] if c["name"] == "age")
    assert age["ks"] is not None and age["tvd_quantile_bins"] == age["tvd"]
    # the sampling-noise baseline is reported next to it and is of the same order
    assert fid["baseline_holdout"]["mean_tvd_1way"] < 0.05
    # a classifier cannot tell two real samples apart: detection at chance, for the holdout too
    summary = honest_result["summary"]
    assert 0.4 < summary["detection_auc"] < 0.6
    assert 0.4 < summary["detection_auc_holdout"] < 0.6
    assert summary["detection_score"] > 0.8
    # and it keeps Adult's strong relations (education <-> education-num first) within 0.1
    pairs = fid["strong_pairs"]
    assert tuple(pairs[0]["columns"]) == ("education", "education-num") and pairs[0]["real"] > 0.95
    assert summary["strong_pairs"] == len(pairs) >= 3 and summary["strong_pairs_kept"] == len(pairs)


def test_shuffled_columns_keep_marginals_but_lose_associations(shuffled_result, honest_result):
    fid, ref = shuffled_result["fidelity"], honest_result["fidelity"]
    # 1-way: a permutation of an independent real sample is exactly as good as the sample
    assert fid["mean_tvd_1way"] == pytest.approx(ref["mean_tvd_1way"], abs=1e-12)
    assert fid["mean_ks"] == pytest.approx(ref["mean_ks"], abs=1e-12)
    # 2-way and associations clearly degrade
    assert fid["two_way"]["mean_tvd"] > ref["two_way"]["mean_tvd"] + 0.03
    assert fid["associations"]["similarity"] < ref["associations"]["similarity"] - 0.08
    names = fid["associations"]["columns"]
    i, j = names.index("education"), names.index("education-num")
    assert fid["associations"]["real"][i][j] > 0.95  # education determines education-num
    assert fid["associations"]["synthetic"][i][j] < 0.1
    worst = fid["two_way"]["worst_pairs"][0]["columns"]
    assert set(worst) == {"education", "education-num"}


def test_no_relations_baseline_is_what_shuffled_columns_score(shuffled_result, honest_result):
    """The baseline (training columns shuffled) scores like a synthesizer that keeps no relation,
    clearly below two real samples, and a classifier sees through both."""
    s, h = shuffled_result["summary"], honest_result["summary"]
    assert s["association_similarity"] == pytest.approx(s["association_similarity_no_relations"], abs=0.02)
    assert s["association_similarity_no_relations"] < s["association_similarity_holdout"] - 0.08
    assert s["mean_tvd_2way_no_relations"] > s["mean_tvd_2way_holdout"] + 0.03
    assert shuffled_result["fidelity"]["baseline_no_relations"]["mean_tvd_1way"] == pytest.approx(0.0, abs=1e-12)
    assert s["detection_auc"] > 0.8 and s["detection_auc_no_relations"] > 0.8
    assert h["detection_auc"] < s["detection_auc"] - 0.2
    # the references do not depend on the synthetic table
    for key in ("association_similarity_no_relations", "association_similarity_holdout", "detection_auc_holdout",
                "detection_auc_no_relations", "mean_tvd_2way_no_relations"):
        assert s[key] == h[key], key
    assert all(not p["kept"] for p in shuffled_result["fidelity"]["strong_pairs"])
    assert s["strong_pairs_kept"] == 0


# --------------------------------------------------------------------------- a planted 1:1 relation
_LEVELS = tuple(f"L{k}" for k in range(8))


def _planted_schema() -> Schema:
    return Schema(columns=(
        Column(name="level", type="categorical", categories=_LEVELS),
        Column(name="level_num", type="numerical", subtype="int", min=0, max=20),
        Column(name="x", type="numerical", subtype="float", min=-10, max=10),
        Column(name="flag", type="boolean"),
    ), name="planted")


def _planted_frame(n: int, seed: int) -> pd.DataFrame:
    """``level`` <-> ``level_num`` one to one (as Adult's education <-> education-num), x and flag noise."""
    rng = np.random.default_rng(seed)
    k = rng.integers(0, len(_LEVELS), n)
    return pd.DataFrame({"level": pd.Series(np.asarray(_LEVELS)[k], dtype=object), "level_num": k + 1,
                         "x": rng.normal(0, 1, n), "flag": rng.random(n) < 0.3})


@pytest.fixture(scope="module")
def planted() -> dict:
    schema = _planted_schema()
    real, holdout, keeps = _planted_frame(2000, 1), _planted_frame(1000, 2), _planted_frame(2000, 3)
    breaks = keeps.assign(level_num=np.random.default_rng(4).permutation(keeps["level_num"].to_numpy()))
    return {"schema": schema, "real": real, "holdout": holdout, "breaks_frame": breaks,
            "keeps": evaluate(real, holdout, keeps, schema, seed=0),
            "breaks": evaluate(real, holdout, breaks, schema, seed=0)}


def test_breaking_a_planted_relation_scores_worse_and_near_the_no_relations_baseline(planted):
    keeps, breaks = planted["keeps"]["summary"], planted["breaks"]["summary"]
    assert breaks["association_similarity"] < keeps["association_similarity"] - 0.1
    assert breaks["mean_tvd_2way"] > keeps["mean_tvd_2way"] + 0.05
    assert breaks["detection_auc"] > 0.9 and keeps["detection_auc"] < 0.6
    # the baseline keeps no relation, the real holdout keeps them all
    assert keeps["association_similarity_no_relations"] < keeps["association_similarity_holdout"] - 0.1
    assert breaks["association_similarity"] < keeps["association_similarity_holdout"] - 0.1


def test_strong_pairs_list_the_planted_pair_with_every_tables_value(planted):
    (kept,) = planted["keeps"]["fidelity"]["strong_pairs"]  # the only strong relation in the table
    (lost,) = planted["breaks"]["fidelity"]["strong_pairs"]
    for pair in (kept, lost):
        assert tuple(pair["columns"]) == ("level", "level_num") and pair["measure"] == "correlation_ratio"
        assert pair["real"] > 0.99 and pair["holdout"] > 0.99 and pair["no_relations"] < 0.1
    assert kept["synthetic"] > 0.99 and kept["kept"] is True
    assert lost["synthetic"] < 0.1 and lost["kept"] is False
    assert lost["abs_difference"] == pytest.approx(lost["real"] - lost["synthetic"])
    assert planted["breaks"]["summary"]["strong_pairs_kept"] == 0


def test_detection_is_chance_for_real_rows_and_near_one_for_shifted_numbers(planted):
    schema = planted["schema"]
    real = prepare(planted["real"], schema, "real")
    holdout = prepare(planted["holdout"], schema, "holdout")
    shifted = prepare(planted["real"].assign(x=planted["real"]["x"] + 3.0), schema, "shifted")
    floor = detect(real, holdout, schema, seed=0)
    wrong = detect(real, shifted, schema, seed=0)
    assert floor.rows_per_side == 1000 and 0.4 < floor.auc < 0.6
    assert wrong.auc > 0.95 and wrong.score < 0.1
    assert detection_score(0.3) == 1.0 and detection_score(1.0) == 0.0 and detection_score(0.75) == 0.5
    # seeded: the same call gives the same number
    assert detect(real, shifted, schema, seed=0) == wrong


# --------------------------------------------------------------------------- utility
def test_tstr_on_real_rows_matches_trtr(copy_result):
    util = copy_result["utility"]
    assert util["task"] == "binary" and util["positive_class"] == ">50K"
    names = {m["model"] for m in util["models"]}
    assert names == {"HistGradientBoostingClassifier", "LogisticRegression"}
    for m in util["models"]:
        assert m["real"]["auc"] > 0.8, m["model"]
        assert abs(m["synthetic"]["auc"] - m["real"]["auc"]) < 0.01
        assert abs(m["synthetic"]["f1"] - m["real"]["f1"]) < 0.02
        assert m["auc_ratio"] == pytest.approx(1.0, abs=0.01)


def test_tstr_collapses_when_relations_are_destroyed(shuffled_result):
    for m in shuffled_result["utility"]["models"]:
        assert m["synthetic"]["auc"] < m["real"]["auc"] - 0.2, m["model"]
    assert shuffled_result["summary"]["utility_auc_ratio"] < 0.8


# --------------------------------------------------------------------------- privacy
def _attack(result: dict, name: str) -> dict:
    return next(a for a in result["privacy"]["membership_inference"]["attacks"] if a["attack"].startswith(name))


def test_copied_training_rows_are_detected(copy_result, honest_result):
    copied, honest = copy_result["privacy"], honest_result["privacy"]
    assert copied["exact_copies"]["exact_copy_rate"] == 1.0
    assert honest["exact_copies"]["exact_copy_rate"] < 0.01
    assert copied["dcr"]["share_closer_to_train"] > 0.7
    assert 0.45 < honest["dcr"]["share_closer_to_train"] < 0.55
    dist_copy, dist_honest = _attack(copy_result, "Distance"), _attack(honest_result, "Distance")
    assert dist_copy["auc"] > 0.95 and dist_copy["tpr_at_1pct_fpr"] > 0.9
    assert dist_honest["auc_ci95"][0] < 0.5 < dist_honest["auc_ci95"][1] + 0.02
    for name in ("DOMIAS", "Distance", "Calibrated"):
        honest_auc, copy_auc = _attack(honest_result, name)["auc"], _attack(copy_result, name)["auc"]
        assert abs(honest_auc - 0.5) < 0.05, name
        assert copy_auc > honest_auc, name
    assert copy_result["summary"]["attack_auc"] > 0.95
    assert honest_result["summary"]["attack_auc"] < 0.56


def test_copied_training_rows_carry_re_identification_risk(copy_result, honest_result):
    """Inference of the target, singling out and linkability, each against the holdout control."""
    copied = copy_result["risks"]
    assert [e["detail"].split(";")[0] for e in copied["attribute_inference"]] == [
        "sensitive column 'income'", "sensitive column 'income' (memorising tree model)"]
    for e in (*copied["attribute_inference"], copied["singling_out"], copied["linkability"]):
        assert e["added_risk_ci95"][0] > 0.3 and e["n_train"] == e["n_control"], e
    summary = copy_result["summary"]
    assert summary["max_added_risk"] > 0.9 and summary["max_added_risk_ci95"][0] > 0.3
    assert honest_result["summary"]["max_added_risk"] < 0.3


def test_attack_confidence_intervals_bracket_the_estimate(honest_result):
    for a in honest_result["privacy"]["membership_inference"]["attacks"]:
        lo, hi = a["auc_ci95"]
        assert lo <= a["auc"] <= hi and hi - lo < 0.15
        lo, hi = a["tpr_at_1pct_fpr_ci95"]
        assert lo <= a["tpr_at_1pct_fpr"] <= hi


def test_roc_helpers():
    members, nonmembers = np.arange(100, 200.0), np.arange(0, 100.0)
    assert roc_auc(members, nonmembers) == 1.0
    assert roc_auc(nonmembers, members) == 0.0
    assert tpr_at_fpr(members, nonmembers) == 1.0
    same = np.zeros(50)
    assert roc_auc(same, same) == 0.5
    assert tpr_at_fpr(same, same) == 0.0  # ties are never flagged, so FPR stays at 0


# --------------------------------------------------------------------------- guarantee
def test_guarantee_bounds_and_plain_words():
    assert float(dp_max_tpr(1.0, 0.0, 0.01)) == pytest.approx(np.e * 0.01)
    assert dp_max_auc(0.0, 0.0) == pytest.approx(0.5, abs=1e-6)
    assert dp_max_auc(20.0, 0.0) > 0.999
    assert 0.5 < dp_max_auc(1.0, 1e-5) < dp_max_auc(2.0, 1e-5) < 1.0
    info = describe_guarantee(GUARANTEE)
    assert info.epsilon_max == 1.0 and info.delta_max == 1e-5
    text = info.statement
    assert "each institution's records are protected" in text
    assert "institution 0: (epsilon, delta) = (0.99, 1e-05)" in text
    assert "DP-SGD" in text and "RDP" in text
    assert f"{100 * info.max_tpr_at_1pct_fpr:.1f} %" in text
    assert describe_guarantee({"epsilon": 3, "delta": 1e-6}).clients[0].epsilon == 3.0
    with pytest.raises(ValueError, match="epsilon"):
        describe_guarantee({"clients": [{"client": "0", "epsilon": "lots"}]})
    with pytest.raises(ValueError, match="clients"):
        describe_guarantee({"mechanism": "DP-SGD"})


def test_attacks_are_checked_against_the_guarantee(split, schema, honest_result):
    info = describe_guarantee(GUARANTEE)
    assert honest_result["privacy"]["compared_with_guarantee"]["consistent"] is True
    assert honest_result["guarantee"]["statement"] == info.statement
    real, holdout = (prepare(split[k].iloc[:600], schema, k) for k in ("real", "holdout"))
    copied = privacy(real, holdout, real, schema, seed=0)
    verdict = compare_with_guarantee(copied.membership_inference, info)
    assert verdict.consistent is False and verdict.conflicts


def test_report_sections_keep_their_json_shape_without_attacks(split, schema):
    """Too few holdout rows: the attacks are skipped, and the file says so without invented keys."""
    small = {k: v.iloc[:300].reset_index(drop=True) for k, v in split.items()}
    result = evaluate(small["real"], small["holdout"].iloc[:30], small["other"], schema,
                      guarantee=GUARANTEE, seed=0)
    priv = result["privacy"]
    assert list(priv) == ["exact_copies", "dcr", "membership_inference", "embedding_dimensions",
                          "compared_with_guarantee"]
    assert list(priv["membership_inference"]) == ["skipped"]
    assert priv["compared_with_guarantee"] == {"consistent": None, "explanation": "no attack was run"}
    summary = result["summary"]
    assert summary["strongest_attack"] is None and summary["attack_auc_ci95"] is None
    assert summary["attack_tpr_at_1pct_fpr"] is None and summary["utility_auc_ratio"] is None
    assert list(result["utility"]) == ["skipped"]
    assert result["risks"]["attribute_inference"] == [] and "no sensitive column" in result["risks"]["attribute_inference_skipped"]
    assert result["risks"]["targets"] == 30 and "linkability" in result["risks"]
    without = evaluate(small["real"], small["holdout"], small["other"], schema, seed=0)
    assert "compared_with_guarantee" not in without["privacy"] and without["guarantee"] is None


# --------------------------------------------------------------------------- API contract
def test_result_is_json_and_deterministic_in_one_process_or_two(honest_result, split, schema):
    text = json.dumps(honest_result, allow_nan=False)
    assert json.loads(text)["format"] == "fedsynth-evaluation/1"
    meta = honest_result["meta"]
    assert meta["rows"] == {"real": 2500, "holdout": 1500, "synthetic": 2500}
    assert meta["seed"] == 0 and "scikit-learn" in meta["versions"] and meta["seconds"]["total"] > 0
    assert meta["rows"]["real"] < PARALLEL_MIN_ROWS  # so honest_result ran every section here
    again = evaluate(split["real"], split["holdout"], split["other"], schema, target="income",
                     guarantee=GUARANTEE, seed=0, parallel=True)  # the risks in a second process
    for key in ("fidelity", "utility", "privacy", "risks", "guarantee"):
        if key == "utility":
            for a, b in zip(again[key]["models"], honest_result[key]["models"], strict=True):
                assert a["real"]["auc"] == b["real"]["auc"] and a["synthetic"]["auc"] == b["synthetic"]["auc"]
        else:
            assert again[key] == honest_result[key], key


def test_bad_input_is_refused(split, schema):
    with pytest.raises(ValueError, match="lacks schema column"):
        evaluate(split["real"], split["holdout"], split["other"].drop(columns=["age"]), schema)
    with pytest.raises(ValueError, match="no rows"):
        evaluate(split["real"], split["holdout"], split["other"].iloc[:0], schema)
    with pytest.raises(ValueError, match="not a schema column"):
        evaluate(split["real"], split["holdout"], split["other"], schema, target="salary")
    with pytest.raises(ValueError, match=r"sensitive column\(s\) \['salary'\] are not schema columns"):
        evaluate(split["real"], split["holdout"], split["other"], schema, sensitive=("sex", "salary"))


def test_numerical_target_skips_utility(split, schema):
    small = {k: v.iloc[:300] for k, v in split.items()}
    result = evaluate(small["real"], small["holdout"], small["other"], schema, target="age")
    assert "skipped" in result["utility"] and "models" not in result["utility"]


# --------------------------------------------------------------------------- other column types
def _mixed_schema() -> Schema:
    return Schema(columns=(
        Column(name="<script>alert(1)</script>", type="numerical", subtype="float", min=0, max=100),
        Column(name='tier & "class"', type="categorical",
               categories=("$5 & up", "<b>bold</b>", "$1-$2 bin"), nullable=True),
        Column(name="flag", type="boolean", nullable=True),
        Column(name="when", type="datetime", min="2020-01-01", max="2024-12-31"),
    ), name="mixed <table>")


def _mixed_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tier = rng.choice(["$5 & up", "<b>bold</b>", "$1-$2 bin", None], n, p=[0.4, 0.3, 0.2, 0.1])
    x = np.where(tier == "$5 & up", rng.uniform(50, 100, n), rng.uniform(0, 60, n))
    flag = pd.Series(rng.random(n) < 0.3 + 0.4 * (x > 50), dtype=object)
    flag[rng.random(n) < 0.05] = None
    when = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1800, n), unit="D")
    return pd.DataFrame({"<script>alert(1)</script>": x, 'tier & "class"': pd.Series(tier, dtype=object),
                         "flag": flag, "when": when})


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple[dict, Path, Path]:
    schema = _mixed_schema()
    real, holdout = _mixed_frame(600, 1), _mixed_frame(400, 2)
    result = evaluate(real, holdout, real.copy(), schema, target="flag", seed=1)
    out = tmp_path_factory.mktemp("mixed")
    return (result, *write_report(result, out))


def test_boolean_and_datetime_columns(mixed):
    result = mixed[0]
    cols = {c["name"]: c for c in result["fidelity"]["columns"]}
    assert cols["when"]["ks"] == 0.0 and cols["when"]["plot"]["datetime"] is True
    assert cols["flag"]["tvd"] == 0.0 and cols["flag"]["missing_real"] > 0
    assert result["utility"]["task"] == "binary"
    assert result["utility"]["positive_class"] == "True"
    for m in result["utility"]["models"]:
        assert m["real"]["auc"] > 0.6 and abs(m["synthetic"]["auc"] - m["real"]["auc"]) < 0.01


def test_report_escapes_user_strings(mixed):
    _, json_path, html_path = mixed
    page = html_path.read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in page and "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    # drawn literally by matplotlib, not parsed as math between the two dollar signs
    assert "$5 &amp; up" in page and "$1-$2 bin" in page
    assert "mixed &lt;table&gt;" in page
    data = json.loads(json_path.read_text())
    assert data["fidelity"]["columns"][0]["name"] == "<script>alert(1)</script>"


# --------------------------------------------------------------------------- report files
def test_report_files_are_written(honest_result, tmp_path):
    json_path, html_path = write_report(honest_result, tmp_path / "out")
    assert json_path.name == "report.json" and html_path.name == "report.html"
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(honest_result))
    assert sorted(p.name for p in json_path.parent.iterdir()) == ["report.html", "report.json"]
    page = html_path.read_text(encoding="utf-8")
    n_cols = len(honest_result["fidelity"]["columns"])
    assert page.count('class="plot column-plot"') == n_cols
    assert page.count('<svg class="plot-svg"') == n_cols + 3 + 2  # columns, 3 heatmaps, DCR, ROC
    for col in honest_result["fidelity"]["columns"]:
        assert f'data-column="{col["name"]}"' in page
    for kind in ("real", "synthetic", "difference"):
        assert f'class="plot heatmap" data-kind="{kind}"' in page
    assert "Differential-privacy guarantee" in page and "each institution" in page
    assert "HistGradientBoostingClassifier" in page and "DOMIAS" in page
    # every similarity score has its references next to it, and detection is said in plain words
    s = honest_result["summary"]
    assert (f"association similarity: synthetic {s['association_similarity']:.3f} &middot; no-relations baseline "
            f"{s['association_similarity_no_relations']:.3f} &middot; real holdout "
            f"{s['association_similarity_holdout']:.3f}") in page
    assert f"AUC {s['detection_auc']:.3f}</div>" in page and "a classifier tells synthetic rows from real ones" in page
    assert page.count("<tr><td>education &times; education-num</td><td>correlation_ratio</td>") == 1
    # self-contained: nothing is fetched from anywhere
    for needle in ("<script", "<link", 'src="http', "url(http", "@import"):
        assert needle not in page
    # every SVG id is unique across the page, so figures cannot clip one another
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))


def test_report_without_guarantee_or_target(split, schema, tmp_path):
    small = {k: v.iloc[:400] for k, v in split.items()}
    result = evaluate(small["real"], small["holdout"], small["other"], schema)
    assert result["guarantee"] is None and "skipped" in result["utility"]
    _, html_path = write_report(result, tmp_path)
    page = html_path.read_text(encoding="utf-8")
    assert "No formal privacy guarantee was supplied" in page
    assert "Not measured" in page


# --------------------------------------------------------------------------- one definition
def test_headline_quality_is_the_reports_definition(split, schema, honest_result, shuffled_result):
    """summary.json / benchmark numbers (quick_quality) equal the report's, to the last digit."""
    q = quick_quality(split["real"], split["holdout"], split["other"], schema, "income", seed=0, floor=True)
    summary = honest_result["summary"]
    assert q["tvd_1way"] == pytest.approx(summary["mean_tvd_1way"], abs=1e-12)
    assert q["tvd_2way"] == pytest.approx(summary["mean_tvd_2way"], abs=1e-12)
    hgb = next(m for m in honest_result["utility"]["models"] if m["model"] == "HistGradientBoostingClassifier")
    assert q["tstr_auc"] == pytest.approx(hgb["synthetic"]["auc"], abs=1e-12)
    assert q["trtr_auc"] == pytest.approx(hgb["real"]["auc"], abs=1e-12)
    base = honest_result["fidelity"]["baseline_holdout"]
    assert q["tvd_1way_floor"] == pytest.approx(base["mean_tvd_1way"], abs=1e-12)
    assert q["tvd_2way_floor"] == pytest.approx(base["mean_tvd_2way"], abs=1e-12)
    # detection on a smaller subsample than the report's: the same classifier, at chance for real rows
    assert 0.4 < q["detection_auc"] < 0.6 and 0.4 < q["detection_auc_floor"] < 0.6
    assert (q["strong_pairs"], q["strong_pairs_kept"]) == (summary["strong_pairs"], summary["strong_pairs_kept"])
    assert q["strong_pairs"] > 0 and q["strong_pairs_kept"] == q["strong_pairs"]  # real rows keep every one
    rng = np.random.default_rng(3)  # every column permuted separately, as shuffled_result's
    shuffled = pd.DataFrame({c: split["other"][c].to_numpy()[rng.permutation(len(split["other"]))]
                             for c in split["other"].columns})
    lost = quick_quality(split["real"], split["holdout"], shuffled, schema, None)
    assert lost["strong_pairs_kept"] == shuffled_result["summary"]["strong_pairs_kept"] == 0
    assert lost["strong_pair_worst"]["abs_difference"] > 0.4
    # the column furthest off is named with its own TVD: one column set to a single value stands out
    bent = split["other"].copy()
    name = schema.columns[0].name
    bent[name] = bent[name].iloc[0]
    off = quick_quality(split["real"], split["holdout"], bent, schema, None)
    assert off["worst_column"] == name and off["tvd_1way_max"] == off["tvd_1way_per_column"][name] > 0.3


# --------------------------------------------------------------------------- holdout disjointness
def test_holdout_that_repeats_training_rows_is_refused(split, schema):
    with pytest.raises(DataError, match=r"2500 of the 2500 holdout rows .*disjoint"):
        evaluate(split["real"], split["real"].copy(), split["other"], schema)
    half = pd.concat([split["holdout"].iloc[:750], split["real"].iloc[:750]], ignore_index=True)
    with pytest.raises(DataError, match=r"75\d of the 1500 holdout rows"):
        evaluate(split["real"], half, split["other"], schema)


def test_disjoint_holdout_reports_its_natural_duplicates(split, schema, honest_result):
    overlap = honest_result["meta"]["holdout_overlap"]
    assert overlap["holdout_rows"] == 1500 and overlap["shared_rows"] <= 3  # Adult's own exact duplicates
    # a few shared rows (under 1 % of the holdout) are reported, not refused
    small = {k: v.iloc[:400].reset_index(drop=True) for k, v in split.items()}
    holdout = pd.concat([small["holdout"].iloc[:397], small["real"].iloc[:3]], ignore_index=True)
    result = evaluate(small["real"], holdout, small["other"], schema)
    assert result["meta"]["holdout_overlap"]["shared_rows"] >= 3
    assert "of the 400 holdout rows also occur in the training rows" in result["meta"]["holdout_overlap"]["warning"]


def test_low_entropy_table_split_is_not_mistaken_for_overlap(split, schema):
    """Three categorical columns: a disjoint split shares most rows by chance, and is accepted."""
    coarse = Schema(columns=tuple(schema.column(c) for c in ("sex", "race", "income")), name="coarse")
    small = {k: v.iloc[:300].reset_index(drop=True) for k, v in split.items()}
    result = evaluate(small["real"], small["holdout"], small["other"], coarse)
    overlap = result["meta"]["holdout_overlap"]
    assert overlap["shared_rows"] > 250 and overlap["expected"] > 250


def test_cli_refuses_a_holdout_equal_to_the_training_file(split, schema, tmp_path):
    real = tmp_path / "real.csv"
    write_table(split["real"].iloc[:500], real, schema=schema)
    write_table(split["other"].iloc[:500], tmp_path / "syn.csv", schema=schema)
    r = CliRunner().invoke(app, ["evaluate", "--real", str(real), "--holdout", str(real), "--synthetic",
                                 str(tmp_path / "syn.csv"), "--schema", str(DATA / "adult.schema.json"),
                                 "--out", str(tmp_path / "report")])
    assert r.exit_code == 2, r.output
    assert f"--holdout {real} and --real {real}" in r.stderr and "500 of the 500 holdout rows" in r.stderr
    assert "disjoint" in r.stderr
    assert not (tmp_path / "report").exists()


def test_one_mapping_from_a_model_card_to_the_guarantee():
    federated = {"clients": [{"client": "0", "epsilon_spent": 0.98, "delta": 1e-5},
                             {"client": "1", "epsilon_spent": 0.5, "delta": 1e-5}]}
    g = guarantee_from_card(federated)
    assert [c["epsilon"] for c in g["clients"]] == [0.98, 0.5] and "SecAgg+" in g["mechanism"]
    single = {"privacy": {"epsilon_spent": 1.0, "delta": 1e-6, "accountant": "prv"}}
    g = guarantee_from_card(single)
    assert g["clients"] == [{"client": "single party", "epsilon": 1.0, "delta": 1e-6}] and g["accountant"] == "prv"
    with pytest.raises(KeyError):
        guarantee_from_card({"clients": [{"client": "0"}]})


# --------------------------------------------------------------------------- JSON edge
@dataclass(frozen=True, kw_only=True)
class _Section:
    name: str
    value: float
    extra: int | None = field(default=None, metadata=OMIT_IF_NONE)
    kept: float | None = None


def test_to_jsonable_writes_dataclass_fields_in_order_and_omits_only_marked_nones():
    section = _Section(name="a", value=np.float64(0.5), kept=float("nan"))
    assert json.dumps(to_jsonable([section, (np.int64(2), np.bool_(True))])) == (
        '[{"name": "a", "value": 0.5, "kept": null}, [2, true]]')
    assert list(to_jsonable(_Section(name="b", value=1.0, extra=3))) == ["name", "value", "extra", "kept"]


def test_a_timestamps_time_of_day_is_measured_as_a_column_of_its_own():
    """As days alone, stops moved to noon of their own day match the real ones: the metrics read each
    timestamp's time of day as a column of its own, and the report keeps the schema's identity."""
    from fedsynth.simulations.quality import quick_quality
    schema = Schema.from_json({"name": "stops", "columns": [
        {"name": "stopped", "type": "datetime", "min": "2017-01-01", "max": "2018-12-31T23:59:59",
         "datetime_format": "%Y-%m-%d %H:%M:%S"},
        {"name": "kind", "type": "categorical", "categories": ["night", "day"]}]})

    def stops(rows: int, seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        night = rng.random(rows) < 0.4
        minutes = np.where(night, (22 * 60 + rng.integers(0, 240, rows)) % 1440, 600 + rng.integers(0, 240, rows))
        when = pd.Timestamp("2017-01-01") + pd.to_timedelta(rng.integers(0, 729, rows) * 1440 + minutes, unit="min")
        return pd.DataFrame({"stopped": when, "kind": np.where(night, "night", "day")})

    real, holdout, alike = stops(2000, 0), stops(1000, 1), stops(2000, 2)
    noon = alike.assign(stopped=alike["stopped"].dt.floor("D") + pd.Timedelta(hours=12))
    good, bad = (quick_quality(real, holdout, s, schema, "kind") for s in (alike, noon))
    assert good["tvd_1way_per_column"]["stopped (time of day)"] < 0.06
    assert bad["tvd_1way_per_column"]["stopped (time of day)"] > 0.8
    assert max(bad["tvd_1way_per_column"]["stopped"], good["tvd_1way_per_column"]["stopped"]) < 0.06  # as days: alike
    assert bad["detection_auc"] > 0.95 > 0.6 > good["detection_auc"]
    assert bad["tstr_auc"] < 0.6 < 0.95 < good["tstr_auc"]  # the hour was what told night from day
    report = evaluate(real, holdout, noon, schema, target="kind")
    measured = {c["name"]: c for c in report["fidelity"]["columns"]}
    assert list(measured) == ["stopped", "stopped (time of day)", "kind"]
    assert measured["stopped (time of day)"]["tvd"] > 0.8
    assert report["meta"]["schema_hash"] == schema.hash()
