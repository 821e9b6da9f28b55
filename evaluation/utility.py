"""Utility: can an analyst who only has the synthetic data build a model that works on real data?

Train-on-synthetic/test-on-real (TSTR) against train-on-real/test-on-real (TRTR), both tested
on the *holdout* rows, which neither the synthesizer nor the real-data model saw. TRTR is the
ceiling; the ratio TSTR/TRTR is how much of the real data's predictive value the synthetic
data kept. Two model families, because a synthesizer can preserve the linear signal that a
logistic regression uses while losing the interactions a boosted-tree model exploits, or the
other way round:

* ``HistGradientBoostingClassifier`` on the raw columns (native categorical and missing-value
  support, so nothing about the encoding favours either training set);
* ``LogisticRegression`` on the schema-based embedding shared with the privacy module
  (bounds-scaled numericals, one-hot categoricals, missing indicators).

Binary targets report ROC AUC, accuracy and F1 of the positive class (the class listed last in
the schema's public category list: ``>50K`` for Adult, ``True`` for booleans); multi-class
targets use one-vs-rest macro AUC and macro F1.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from threadpoolctl import threadpool_limits

from fedsynth.common.data.schema import Schema
from fedsynth.evaluation.embedding import Embedding
from fedsynth.evaluation.jsonable import OMIT_IF_NONE
from fedsynth.evaluation.prepared import (
    PreparedTable,
    code_labels,
    is_discrete,
    levels,
    n_codes,
)

MAX_TRAIN_ROWS = 50_000
MODEL_NAMES = ("HistGradientBoostingClassifier", "LogisticRegression")
_HGB_MAX_CATEGORIES = 250  # HistGradientBoosting bins categories into at most 255 slots


@dataclass(frozen=True)
class Scores:
    """One model's scores on the real holdout rows."""

    auc: float
    accuracy: float
    f1: float
    fit_seconds: float


@dataclass(frozen=True)
class FitFailed:
    """Why a model could not be trained on these rows."""

    error: str


@dataclass(frozen=True, kw_only=True)
class ModelResult:
    """A model family trained on real rows (TRTR) and on synthetic rows (TSTR); ``auc_ratio`` when both fit."""

    model: str
    real: Scores | FitFailed
    synthetic: Scores | FitFailed
    auc_ratio: float | None = field(default=None, metadata=OMIT_IF_NONE)


@dataclass(frozen=True)
class Utility:
    """The utility section of the report."""

    target: str
    task: str
    classes: list[str]
    positive_class: str | None
    averaging: str | None
    train_rows_real: int
    train_rows_synthetic: int
    test_rows_holdout: int
    majority_class_accuracy: float
    models: list[ModelResult]
    mean_auc_ratio: float | None


@dataclass(frozen=True, kw_only=True)
class UtilitySkipped:
    """Why utility was not measured (``target`` is absent when no target was given)."""

    target: str | None = field(default=None, metadata=OMIT_IF_NONE)
    skipped: str


def tree_features(table: PreparedTable, schema: Schema, target: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Raw columns for a tree model, all but ``target``: numbers as they are, categories as codes,
    NaN = missing; with the mask of the columns the model should treat as categorical."""
    cols, is_cat = [], []
    for col in schema.columns:
        if col.name == target:
            continue
        v = table[col.name]
        if is_discrete(col):
            x = v.astype(float)
            x[v >= len(levels(col))] = np.nan
            cols.append(x)
            is_cat.append(n_codes(col) <= _HGB_MAX_CATEGORIES)
        else:
            cols.append(v)
            is_cat.append(False)
    return np.column_stack(cols), np.asarray(is_cat, dtype=bool)


def _make_model(name: str, is_cat: np.ndarray, seed: int) -> Any:
    if name == "HistGradientBoostingClassifier":
        return HistGradientBoostingClassifier(categorical_features=is_cat if is_cat.any() else None,
                                              random_state=seed)
    return LogisticRegression(max_iter=2000)


def _proba(model: Any, X: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Class probabilities aligned to ``classes`` (classes the model never saw get 0)."""
    raw = model.predict_proba(X)
    out = np.zeros((X.shape[0], classes.size))
    for j, c in enumerate(model.classes_):
        out[:, int(np.searchsorted(classes, c))] = raw[:, j]
    return out


def _scores(y: np.ndarray, proba: np.ndarray, classes: np.ndarray, positive: int | None,
            fit_seconds: float) -> Scores:
    pred = classes[np.argmax(proba, axis=1)]
    if positive is not None:
        pos_col = int(np.searchsorted(classes, positive))
        return Scores(
            auc=float(roc_auc_score(y == positive, proba[:, pos_col])),
            accuracy=float(accuracy_score(y, pred)),
            f1=float(f1_score(y == positive, pred == positive, zero_division=0)),
            fit_seconds=fit_seconds,
        )
    present = np.isin(classes, y)
    return Scores(
        auc=float(roc_auc_score(y, proba[:, present] / proba[:, present].sum(1, keepdims=True).clip(1e-12),
                                multi_class="ovr", average="macro", labels=classes[present])),
        accuracy=float(accuracy_score(y, pred)),
        f1=float(f1_score(y, pred, average="macro", labels=classes[present], zero_division=0)),
        fit_seconds=fit_seconds,
    )


def _fit_and_score(name: str, X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
                   is_cat: np.ndarray, classes: np.ndarray, positive: int | None, seed: int) -> Scores | FitFailed:
    if np.unique(y).size < 2:
        return FitFailed("the training rows contain a single class of the target, so no classifier "
                         "can be trained on them")
    model = _make_model(name, is_cat, seed)
    start = time.perf_counter()
    # One thread: HistGradientBoosting runs hundreds of tiny OpenMP regions per fit, and on a
    # small machine shared with other work (a training run, a test suite) every region's
    # barrier waits for a descheduled thread; we measured 100x slowdowns that way, while a
    # single thread is as fast as two on these table sizes.
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
        fit_seconds = time.perf_counter() - start
        proba = _proba(model, X_test, classes)
    return _scores(y_test, proba, classes, positive, fit_seconds)


def tree_auc(train: PreparedTable, test: PreparedTable, schema: Schema, target: str, seed: int = 0) -> float | None:
    """ROC AUC on ``test`` of the gradient-boosting model of :func:`utility` fitted on ``train``.

    The headline TSTR (train = synthetic) / TRTR (train = real) number of the simulations and
    benchmarks, computed exactly as the report's ``HistGradientBoostingClassifier`` row (same
    features, classes and positive class). None when it is undefined: the target is not
    discrete, or the training or test rows hold a single class.
    """
    col = schema.column(target)
    if not is_discrete(col):
        return None
    n_valid = len(levels(col))
    tr = train.take(np.flatnonzero(train[target] < n_valid))
    te = test.take(np.flatnonzero(test[target] < n_valid))
    if tr.n_rows > MAX_TRAIN_ROWS:
        tr = tr.take(np.sort(np.random.default_rng(seed).choice(tr.n_rows, MAX_TRAIN_ROWS, replace=False)))
    if np.unique(te[target]).size < 2 or np.unique(tr[target]).size < 2:
        return None
    classes = np.unique(np.concatenate([tr[target], te[target]]))
    binary = np.unique(te[target]).size == 2 and classes.size == 2
    positive = int(classes[-1]) if binary else None
    (X, is_cat), (X_t, _) = tree_features(tr, schema, target), tree_features(te, schema, target)
    res = _fit_and_score("HistGradientBoostingClassifier", X, tr[target], X_t, te[target], is_cat, classes,
                         positive, seed)
    return res.auc if isinstance(res, Scores) else None


def utility(real: PreparedTable, holdout: PreparedTable, synthetic: PreparedTable, schema: Schema,
            target: str, seed: int = 0) -> Utility | UtilitySkipped:
    """TSTR vs TRTR for each model family; a ``skipped`` reason when the task is undefined."""
    col = schema.column(target)
    if not is_discrete(col):
        return UtilitySkipped(target=target, skipped=f"target {target!r} is {col.type}; utility is measured "
                                                     "for classification targets (categorical or boolean)")
    n_valid = len(levels(col))
    labels = code_labels(col)
    rng = np.random.default_rng(seed)

    def rows(table: PreparedTable) -> PreparedTable:
        keep = np.flatnonzero(table[target] < n_valid)
        if keep.size > MAX_TRAIN_ROWS:
            keep = np.sort(rng.choice(keep, MAX_TRAIN_ROWS, replace=False))
        return table.take(keep)

    train_r, train_s = rows(real), rows(synthetic)
    test = holdout.take(np.flatnonzero(holdout[target] < n_valid))
    y_r, y_s, y_t = train_r[target], train_s[target], test[target]
    if np.unique(y_r).size < 2:
        return UtilitySkipped(target=target, skipped="the real training rows contain a single class of the target")
    if np.unique(y_t).size < 2:
        return UtilitySkipped(target=target, skipped="the holdout rows contain a single class of the target")

    classes = np.unique(np.concatenate([y_r, y_t, y_s]))
    binary = np.unique(np.concatenate([y_r, y_t])).size == 2 and classes.size == 2
    # The positive class is the one listed last in the public schema (``True`` for booleans,
    # ``>50K`` for Adult): fixed by public metadata, not by which class the data has fewer of.
    positive: int | None = int(classes[-1]) if binary else None

    layout = Embedding.build(schema, [real, holdout, synthetic], exclude=(target,))
    features = {
        "HistGradientBoostingClassifier": lambda t: tree_features(t, schema, target),
        "LogisticRegression": lambda t: (layout.transform(t), np.zeros(0, dtype=bool)),
    }
    models = []
    for name in MODEL_NAMES:
        (X_r, is_cat), (X_s, _), (X_t, _) = (features[name](t) for t in (train_r, train_s, test))
        trtr = _fit_and_score(name, X_r, y_r, X_t, y_t, is_cat, classes, positive, seed)
        tstr = _fit_and_score(name, X_s, y_s, X_t, y_t, is_cat, classes, positive, seed)
        ratio = None
        if isinstance(trtr, Scores) and isinstance(tstr, Scores) and trtr.auc > 0:
            ratio = tstr.auc / trtr.auc
        models.append(ModelResult(model=name, real=trtr, synthetic=tstr, auc_ratio=ratio))

    majority = int(np.bincount(y_r).argmax())
    ratios = [m.auc_ratio for m in models if m.auc_ratio is not None]
    return Utility(
        target=target,
        task="binary" if binary else "multiclass",
        classes=[labels[int(c)] for c in classes],
        positive_class=labels[positive] if positive is not None else None,
        averaging=None if binary else "macro (one-vs-rest AUC)",
        train_rows_real=train_r.n_rows,
        train_rows_synthetic=train_s.n_rows,
        test_rows_holdout=test.n_rows,
        majority_class_accuracy=float(np.mean(y_t == majority)),
        models=models,
        mean_auc_ratio=float(np.mean(ratios)) if ratios else None,
    )
