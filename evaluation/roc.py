"""ROC metrics of a membership attack: AUC, TPR at a low FPR, the curve and bootstrap intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

N_BOOTSTRAP = 500
LOW_FPR = 0.01


@dataclass(frozen=True)
class RocCurve:
    """True-positive rates on a grid of false-positive rates."""

    fpr: list[float]
    tpr: list[float]


@dataclass(frozen=True)
class BootstrapIntervals:
    """Percentile 95 % intervals of an attack's AUC and of its TPR at 1 % FPR."""

    auc_ci95: tuple[float, float]
    tpr_at_1pct_fpr_ci95: tuple[float, float]


def roc_auc(members: np.ndarray, nonmembers: np.ndarray) -> float:
    """ROC AUC of scores where members should score higher (Mann-Whitney U, ties count 1/2)."""
    n1, n0 = members.size, nonmembers.size
    ranks = rankdata(np.concatenate([members, nonmembers]))
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def tpr_at_fpr(members: np.ndarray, nonmembers: np.ndarray, fpr: float = LOW_FPR) -> float:
    """Largest TPR reachable with a threshold whose FPR is at most ``fpr``.

    Rows are flagged when their score is strictly above the threshold, so ties never push the
    false-positive rate over the target.
    """
    allowed = math.floor(fpr * nonmembers.size)
    desc = np.sort(nonmembers)[::-1]
    threshold = desc[allowed] if allowed < desc.size else -np.inf
    return float(np.mean(members > threshold))


def roc_curve_points(members: np.ndarray, nonmembers: np.ndarray, n_points: int = 60) -> RocCurve:
    """ROC curve sampled on a log-spaced FPR grid (for a log-scale plot), from 1e-3 to 1."""
    grid = np.unique(np.concatenate([[0.0], np.logspace(-3, 0, n_points)]))
    return RocCurve(grid.tolist(), [tpr_at_fpr(members, nonmembers, f) for f in grid])


def bootstrap_ci(members: np.ndarray, nonmembers: np.ndarray, rng: np.random.Generator,
                 n_boot: int = N_BOOTSTRAP) -> BootstrapIntervals:
    """Percentile 95 % intervals, resampling members and non-members separately."""
    aucs, tprs = np.empty(n_boot), np.empty(n_boot)
    for b in range(n_boot):
        m = members[rng.integers(0, members.size, members.size)]
        n = nonmembers[rng.integers(0, nonmembers.size, nonmembers.size)]
        aucs[b] = roc_auc(m, n)
        tprs[b] = tpr_at_fpr(m, n)
    return BootstrapIntervals(
        auc_ci95=(float(np.quantile(aucs, 0.025)), float(np.quantile(aucs, 0.975))),
        tpr_at_1pct_fpr_ci95=(float(np.quantile(tprs, 0.025)), float(np.quantile(tprs, 0.975))),
    )
