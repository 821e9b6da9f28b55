"""Attribute inference: from a row's known columns, guess its sensitive value using the synthetic rows.

The attacker knows the quasi-identifiers of a real person (default: every other column) and
looks up the synthetic row nearest to them on the report's embedding
(:mod:`fedsynth.evaluation.embedding`, here built from the known columns only); its sensitive
value is the guess. A guess is right when it is the same category (categoricals, booleans,
missing counted as a value) or, for numbers and dates, within ``NUMERIC_TOLERANCE`` of the
public range on the embedding's scale (log scale where the schema says so). The same attacks on
holdout rows are the control (:mod:`fedsynth.evaluation.added_risk`).

A second attacker trains a model on the synthetic rows (known columns in, sensitive value out)
and takes its prediction as the guess: fully grown extremely randomised trees
(:class:`~sklearn.ensemble.ExtraTreesClassifier`, or the regressor for numbers and dates), fitted
on every synthetic row up to ``MAX_MODEL_ROWS``. The learner memorises on purpose. A model that
generalises (gradient boosting, a pruned tree) learns what the population reveals, which it
guesses as well on holdout rows, so its added risk stays near 0 even when the synthetic table
copies the training rows (docs/benchmarks.md). The attacker who can exploit copied rows is the one who remembers them: fully grown
trees without bootstrap put every fitted row in a leaf of each tree, so a training row that the
synthetic table reproduces gets its own value back (unless rows with the same known columns
disagree), while on rows it never saw the forest still predicts from neighbouring rows like any
model, which keeps the holdout baseline fair.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from fedsynth.common.data.schema import Schema
from fedsynth.evaluation.added_risk import RiskEstimate, estimate
from fedsynth.evaluation.embedding import Embedding
from fedsynth.evaluation.prepared import PreparedTable, is_discrete
from fedsynth.evaluation.utility import tree_features

NUMERIC_TOLERANCE = 0.05
"""A numerical guess within 5 % of the column's public range counts as a hit."""
MAX_MODEL_ROWS = 50_000
"""Synthetic rows the model attacker trains on (a sample beyond that): an Adult-size table fits whole
(times in docs/benchmarks.md)."""
N_TREES = 50
"""Trees in the model attacker's forest: each one memorises on its own, more only smooth the guesses on unseen rows."""
N_JOBS = 1
"""Threads fitting the forest: one, like the rest of the report. scikit-learn's thread workers
(n_jobs > 1) swap the process's warning filters without a lock before Python 3.14: in a bench run
they were left empty and every later forest call printed its "sklearn.utils.parallel.delayed" UserWarning."""


def _hits(schema: Schema, sensitive: str, guess: PreparedTable, truth: PreparedTable) -> np.ndarray:
    col = schema.column(sensitive)
    g, t = guess[sensitive], truth[sensitive]
    if is_discrete(col):
        return g == t
    others = frozenset(schema.names) - {sensitive}
    scale = Embedding(schema, frozenset(), exclude=others)
    gs, ts = scale.transform(guess)[:, 0], scale.transform(truth)[:, 0]
    g_miss, t_miss = np.isnan(g), np.isnan(t)
    return np.where(g_miss | t_miss, g_miss & t_miss, np.abs(gs - ts) <= NUMERIC_TOLERANCE)


def attribute_inference(schema: Schema, synthetic: PreparedTable, members: PreparedTable,
                        control: PreparedTable, sensitive: str, known: tuple[str, ...],
                        rng: np.random.Generator, level: float = 0.95) -> RiskEstimate:
    """Added risk of guessing ``sensitive`` from the ``known`` columns by the nearest synthetic row."""
    layout = Embedding.build(schema, [synthetic, members, control],
                             exclude=tuple(n for n in schema.names if n not in known))
    nn = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(layout.transform(synthetic))
    hits = []
    for targets in (members, control):
        nearest = nn.kneighbors(layout.transform(targets), return_distance=False)[:, 0]
        hits.append(_hits(schema, sensitive, synthetic.take(nearest), targets))
    quoted = sensitive.replace("{", "{{").replace("}", "}}")  # the sentence is a format string
    what = (f"Knowing {len(known)} other column(s) of a person, an attacker guesses '{quoted}' right for "
            "{train} of training rows and {control} of rows the synthesizer never saw")
    detail = f"sensitive column '{sensitive}'; known: {', '.join(known)}"
    return estimate("attribute inference", detail, hits[0], hits[1], rng, what, level)


def model_inference(schema: Schema, synthetic: PreparedTable, members: PreparedTable,
                    control: PreparedTable, sensitive: str, known: tuple[str, ...],
                    rng: np.random.Generator, level: float = 0.95, seed: int = 0) -> RiskEstimate:
    """Added risk of guessing ``sensitive`` with a memorising model (fully grown trees) trained on the synthetic rows."""
    keep = np.array([n in known for n in schema.names if n != sensitive])
    if synthetic.n_rows > MAX_MODEL_ROWS:
        synthetic = synthetic.take(rng.choice(synthetic.n_rows, MAX_MODEL_ROWS, replace=False))
    x_syn = tree_features(synthetic, schema, target=sensitive)[0]
    y = synthetic[sensitive]
    discrete = is_discrete(schema.column(sensitive))
    fit = np.ones(y.size, bool) if discrete else ~np.isnan(y)
    # no depth limit and no bootstrap: every fitted row sits in a leaf of every tree (the module's docstring)
    forest = ExtraTreesClassifier if discrete else ExtraTreesRegressor
    model = forest(n_estimators=N_TREES, bootstrap=False, n_jobs=N_JOBS, random_state=seed)
    hits = []
    with threadpool_limits(limits=1):  # as in utility and detection: no nested BLAS/OpenMP threads on a small machine
        if np.unique(y[fit]).size > 1:
            model.fit(x_syn[fit][:, keep], y[fit])
        for targets in (members, control):
            if np.unique(y[fit]).size > 1:
                guess = model.predict(tree_features(targets, schema, target=sensitive)[0][:, keep])
            else:
                guess = np.full(targets.n_rows, y[fit][0] if fit.any() else np.nan)
            guessed = PreparedTable({sensitive: guess.astype(y.dtype)}, targets.n_rows)
            hits.append(_hits(schema, sensitive, guessed, targets))
    quoted = sensitive.replace("{", "{{").replace("}", "}}")  # the sentence is a format string
    what = (f"A model that memorises the synthetic rows (fully grown trees) guesses '{quoted}' from {len(known)} "
            "other column(s) right for {train} of training rows and {control} of rows the synthesizer never saw")
    detail = f"sensitive column '{sensitive}' (memorising tree model); known: {', '.join(known)}"
    return estimate("attribute inference (model)", detail, hits[0], hits[1], rng, what, level)
