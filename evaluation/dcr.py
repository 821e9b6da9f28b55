"""Distance to closest record (DCR): are synthetic rows nearer the training rows than unseen real rows?

For every synthetic row, the distance to the nearest training row and to the nearest holdout
row, the training rows subsampled to the holdout's size so both reference sets are equally
dense. Without memorisation a synthetic row is as likely to be nearer a training row as a
holdout row (share ~ 50 %).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedsynth.evaluation.embedding import nn_distance

MAX_DCR_QUERIES = 30_000


def _summary(d: np.ndarray) -> dict[str, float]:
    return {"p05": float(np.quantile(d, 0.05)), "median": float(np.median(d)), "mean": float(d.mean())}


def dcr(emb_train: np.ndarray, emb_hold: np.ndarray, emb_syn: np.ndarray,
         rng: np.random.Generator) -> dict[str, Any]:
    n_ref = min(emb_train.shape[0], emb_hold.shape[0])
    train_ref = emb_train[rng.choice(emb_train.shape[0], n_ref, replace=False)]
    hold_ref = emb_hold[rng.choice(emb_hold.shape[0], n_ref, replace=False)]
    queries = emb_syn
    if queries.shape[0] > MAX_DCR_QUERIES:
        queries = queries[rng.choice(queries.shape[0], MAX_DCR_QUERIES, replace=False)]
    d_train = nn_distance(train_ref, queries)[:, 0]
    d_hold = nn_distance(hold_ref, queries)[:, 0]
    share = float(np.mean(d_train < d_hold) + 0.5 * np.mean(d_train == d_hold))
    hi = float(np.quantile(np.concatenate([d_train, d_hold]), 0.99)) or 1.0
    edges = np.linspace(0.0, hi, 41)
    return {
        "reference_rows": int(n_ref),
        "synthetic_rows_scored": int(queries.shape[0]),
        "train": _summary(d_train),
        "holdout": _summary(d_hold),
        "share_closer_to_train": share,
        "histogram": {
            "edges": edges.tolist(),
            "train": (np.histogram(np.clip(d_train, 0, hi), edges)[0] / d_train.size).tolist(),
            "holdout": (np.histogram(np.clip(d_hold, 0, hi), edges)[0] / d_hold.size).tolist(),
        },
    }
