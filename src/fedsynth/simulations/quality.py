"""The headline quality numbers used across fedsynth's simulations and benchmarks.

One definition for every system compared (fedsynth federated, fedsynth single-party, the
centralized anchors), matching shared/ANCHORS.md:

* TSTR: gradient boosting trained on synthetic rows, ROC AUC on the real holdout;
* 1-way / 2-way TVD: mean total variation distance of the marginals, numericals binned
  on the *real training* quantiles (10 bins), missing values as their own category.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from fedsynth.common.schema import Schema

BINS = 10


def discretize(frames: list[pd.DataFrame], reference: pd.DataFrame, schema: Schema) -> list[pd.DataFrame]:
    """Map every column to string categories: numericals by the reference's quantile bins."""
    out = [pd.DataFrame(index=f.index) for f in frames]
    for col in schema.columns:
        if col.type in ("numerical", "datetime"):
            ref = pd.to_numeric(reference[col.name], errors="coerce") if col.type == "numerical" else reference[col.name].astype("int64")
            edges = np.unique(np.nanquantile(ref.to_numpy(dtype=float), np.linspace(0, 1, BINS + 1))[1:-1])
            for f, o in zip(frames, out):
                v = f[col.name].to_numpy(dtype=float) if col.type == "numerical" else f[col.name].astype("int64").to_numpy(dtype=float)
                codes = np.searchsorted(edges, v, side="right").astype(object)
                codes[np.isnan(v)] = "missing"
                o[col.name] = codes.astype(str)
        else:
            for f, o in zip(frames, out):
                o[col.name] = f[col.name].map(lambda v: "missing" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    return out


def _tvd(a: pd.Series, b: pd.Series) -> float:
    pa, pb = a.value_counts(normalize=True), b.value_counts(normalize=True)
    return float(0.5 * pa.subtract(pb, fill_value=0.0).abs().sum())


def marginal_tvds(real: pd.DataFrame, synth: pd.DataFrame, reference: pd.DataFrame, schema: Schema,
                  max_pairs: int | None = None) -> tuple[dict[str, float], float]:
    r, s = discretize([real, synth], reference, schema)
    one = {c: _tvd(r[c], s[c]) for c in schema.names}
    pairs = list(itertools.combinations(schema.names, 2))
    if max_pairs and len(pairs) > max_pairs:
        rng = np.random.default_rng(0)
        pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), max_pairs, replace=False))]
    two = [_tvd(r[a] + "\x1f" + r[b], s[a] + "\x1f" + s[b]) for a, b in pairs]
    return one, float(np.mean(two)) if two else 0.0


def _features(df: pd.DataFrame, schema: Schema, label: str) -> pd.DataFrame:
    X = pd.DataFrame(index=df.index)
    for col in schema.columns:
        if col.name == label:
            continue
        if col.type == "numerical":
            X[col.name] = pd.to_numeric(df[col.name], errors="coerce").astype(float)
        elif col.type == "datetime":
            X[col.name] = pd.to_datetime(df[col.name]).astype("int64").astype(float)
        else:
            cats = [str(c) for c in (col.categories or ("False", "True"))] + ["missing"]
            vals = df[col.name].map(lambda v: "missing" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
            X[col.name] = pd.Categorical(vals, categories=cats)
    return X


def tstr_auc(train: pd.DataFrame, test: pd.DataFrame, schema: Schema, label: str, seed: int = 0) -> float:
    """ROC AUC on ``test`` of gradient boosting fitted on ``train`` (binary: positive = the
    label's last category in the schema; multi-class: one-vs-rest macro)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    col = schema.column(label)
    classes = [str(c) for c in (col.categories or ("False", "True"))]
    y_tr = train[label].map(str)
    y_te = test[label].map(str)
    if y_tr.nunique() < 2:
        return 0.5  # a generator that never produces one class gives a constant predictor
    clf = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
    clf.fit(_features(train, schema, label), y_tr)
    proba = clf.predict_proba(_features(test, schema, label))
    if len(classes) == 2:
        pos = classes[-1]
        if pos not in clf.classes_:
            return 0.5
        return float(roc_auc_score(y_te == pos, proba[:, list(clf.classes_).index(pos)]))
    return float(roc_auc_score(y_te, proba, multi_class="ovr", average="macro", labels=list(clf.classes_)))


def quick_quality(train: pd.DataFrame, holdout: pd.DataFrame, synth: pd.DataFrame, schema: Schema,
                  label: str | None) -> dict[str, float]:
    one, two = marginal_tvds(holdout, synth, train, schema)
    out: dict[str, float] = {"tvd_1way": float(np.mean(list(one.values()))), "tvd_2way": two,
                             "tvd_1way_per_column": one}  # type: ignore[dict-item]
    if label:
        out["tstr_auc"] = tstr_auc(synth, holdout, schema, label)
        out["trtr_auc"] = tstr_auc(train, holdout, schema, label)
    return out
