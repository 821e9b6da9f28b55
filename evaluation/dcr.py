"""Distance to closest record (DCR): are synthetic rows nearer the training rows than unseen real rows?

For every synthetic row, the distance to the nearest training row and to the nearest holdout
row, the training rows subsampled to the holdout's size so both reference sets are equally
dense. Without memorisation a synthetic row is as likely to be nearer a training row as a
holdout row (share ~ 50 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsynth.evaluation.embedding import nn_distance

MAX_DCR_QUERIES = 30_000


@dataclass(frozen=True)
class DistanceSummary:
    """Distances from the synthetic rows to their nearest row of one reference set."""

    p05: float
    median: float
    mean: float

    @classmethod
    def of(cls, d: np.ndarray) -> DistanceSummary:
        return cls(float(np.quantile(d, 0.05)), float(np.median(d)), float(d.mean()))


@dataclass(frozen=True)
class DcrHistogram:
    """Shares of synthetic rows per distance bin (``edges`` has one more entry than each share list)."""

    edges: list[float]
    train: list[float]
    holdout: list[float]


@dataclass(frozen=True)
class Dcr:
    """Distance to closest record: training rows against equally many holdout rows."""

    reference_rows: int
    synthetic_rows_scored: int
    train: DistanceSummary
    holdout: DistanceSummary
    share_closer_to_train: float
    histogram: DcrHistogram


def dcr(emb_train: np.ndarray, emb_hold: np.ndarray, emb_syn: np.ndarray, rng: np.random.Generator) -> Dcr:
    """DCR of the embedded synthetic rows (``emb_syn``) against training and holdout rows."""
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
    return Dcr(
        reference_rows=int(n_ref),
        synthetic_rows_scored=int(queries.shape[0]),
        train=DistanceSummary.of(d_train),
        holdout=DistanceSummary.of(d_hold),
        share_closer_to_train=share,
        histogram=DcrHistogram(
            edges=edges.tolist(),
            train=(np.histogram(np.clip(d_train, 0, hi), edges)[0] / d_train.size).tolist(),
            holdout=(np.histogram(np.clip(d_hold, 0, hi), edges)[0] / d_hold.size).tolist(),
        ),
    )
