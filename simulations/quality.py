"""The headline quality numbers of simulations and benchmarks: a thin view over
:mod:`fedsynth.evaluation`, so ``summary.json``, every ``bench/`` table and the HTML
report share one definition (one implementation) for every system compared: fedsynth
federated, fedsynth single-party, and the centralized anchors.

* TSTR: the report's gradient-boosting model trained on synthetic rows, ROC AUC on the real
  holdout (TRTR: the same model trained on the real training rows, the ceiling);
* 1-way / 2-way TVD: mean total variation distance of the synthetic rows' marginals from the
  real *training* rows' (what the synthesizer was asked to reproduce), numericals binned at
  the training rows' deciles with each declared (public) point mass in a bin of its own and
  missing values as their own category (:func:`fedsynth.evaluation.fidelity.fit_binning`);
  ``worst_column`` and ``tvd_1way_max``: the column furthest off, which the mean hides.
  ``tvd_*_floor`` gives the same distances for the real holdout: the level sampling noise
  alone reaches, below which no synthesizer can be told apart from real data.
* detection AUC: the report's real-vs-synthetic classifier
  (:func:`fedsynth.evaluation.detection.detect`) on a balanced subsample of
  ``QUICK_DETECTION_ROWS`` rows per side (under a second on Adult; the report uses up to
  10,000), 0.5 = indistinguishable; ``detection_auc_floor`` is the real holdout's.
* strong pairs: the real pairs with association at least
  :data:`~fedsynth.evaluation.associations.STRONG_ASSOCIATION`, how many the synthetic rows keep
  within :data:`~fedsynth.evaluation.associations.KEPT_WITHIN`, and the one furthest off (the
  report's own list, :func:`fedsynth.evaluation.associations.strong_pairs`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fedsynth.evaluation.associations import association_matrix, strong_pairs
from fedsynth.evaluation.detection import detect
from fedsynth.evaluation.marginals import marginal_tvds
from fedsynth.evaluation.prepared import measured_schema, prepare
from fedsynth.evaluation.utility import tree_auc
from fedsynth.common.data.schema import Schema

DEFINITION = ("TSTR/TRTR: HistGradientBoosting (fedsynth.evaluation.utility.tree_auc), ROC AUC on the real "
              "holdout; TVD: synthetic vs real training rows, numericals at training deciles + one bin per "
              "declared point mass + missing (fedsynth.evaluation.marginals.marginal_tvds); detection: ROC AUC "
              "of HistGradientBoosting telling synthetic from real training rows, 3-fold CV on 2,000 rows per "
              "side (fedsynth.evaluation.detection.detect); strong pairs: real association >= 0.5, kept when the "
              "synthetic one is within 0.1 (fedsynth.evaluation.associations.strong_pairs)")
QUICK_DETECTION_ROWS = 2_000


def quick_quality(train: pd.DataFrame, holdout: pd.DataFrame, synth: pd.DataFrame, schema: Schema,
                  label: str | None, seed: int = 0, floor: bool = False,
                  detection_rows: int = QUICK_DETECTION_ROWS) -> dict[str, Any]:
    """TVDs, detection AUC and (with ``label``) TSTR/TRTR ROC AUC of ``synth``; see the module docstring.
    ``detection_rows``: rows a side for detection (the report's classifier takes up to
    :data:`~fedsynth.evaluation.detection.MAX_ROWS_PER_SIDE`, and a larger sample sees more)."""
    schema = measured_schema(schema)  # with each timestamp's time of day
    real, hold, syn = prepare(train, schema, "real"), prepare(holdout, schema, "holdout"), prepare(synth, schema, "synthetic")
    one, two = marginal_tvds(real, syn, schema)
    out: dict[str, Any] = {"tvd_1way": float(np.mean(list(one.values()))), "tvd_2way": two,
                           "tvd_1way_per_column": one,
                           "detection_auc": detect(real, syn, schema, seed, detection_rows).auc}
    if one:  # the column furthest off, which a mean hides (issue 16: none above 0.08)
        out["worst_column"] = max(one, key=one.get)
        out["tvd_1way_max"] = one[out["worst_column"]]
    real_assoc, syn_assoc = association_matrix(real, schema), association_matrix(syn, schema)
    pairs = strong_pairs(real_assoc, syn_assoc, syn_assoc, syn_assoc, schema)  # (its two reference columns unused here)
    out["strong_pairs"], out["strong_pairs_kept"] = len(pairs), sum(p.kept for p in pairs)
    if pairs:
        worst = max(pairs, key=lambda p: p.abs_difference)
        out["strong_pair_worst"] = {"columns": list(worst.columns), "real": worst.real,
                                    "synthetic": worst.synthetic, "abs_difference": worst.abs_difference}
    if floor:
        one_h, two_h = marginal_tvds(real, hold, schema)
        out["tvd_1way_floor"], out["tvd_2way_floor"] = float(np.mean(list(one_h.values()))), two_h
        out["detection_auc_floor"] = detect(real, hold, schema, seed, detection_rows).auc
    if label:
        trtr = tree_auc(real, hold, schema, label, seed)
        if trtr is not None:  # None: not a classification target, or a single class in the real rows
            tstr = tree_auc(syn, hold, schema, label, seed)
            # a generator that never emits one class gives a constant predictor: AUC 0.5
            out["tstr_auc"] = 0.5 if tstr is None else tstr
            out["trtr_auc"] = trtr
    return out
