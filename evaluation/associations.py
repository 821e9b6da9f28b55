"""Associations: how strongly every two columns are related, and how similar two tables are in that.

One matrix per table: Spearman for numerical pairs, bias-corrected Cramér's V for categorical
pairs, the correlation ratio on ranks for mixed pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.stats import rankdata

from fedsynth.common.data.schema import Schema
from fedsynth.evaluation.prepared import PreparedTable, is_discrete, n_codes

STRONG_ASSOCIATION = 0.5
"""A pair whose real association is at least this strong (in absolute value) is listed on its own."""
KEPT_WITHIN = 0.1
"""A strong pair counts as kept when the synthetic association is within this of the real one."""


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks of the finite values, NaN elsewhere."""
    out = np.full(values.shape, np.nan)
    ok = np.isfinite(values)
    out[ok] = rankdata(values[ok])
    return out


def spearman(x: np.ndarray, y: np.ndarray, rx: np.ndarray, ry: np.ndarray) -> float:
    """Spearman's rho on the rows where both values are present.

    Rank-based because the columns we meet (incomes, capital gains) have heavy tails and
    point masses that would let a handful of rows dominate Pearson's r.
    """
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return 0.0
    if not ok.all():
        rx, ry = rankdata(x[ok]), rankdata(y[ok])
    else:
        rx, ry = rx[ok], ry[ok]
    sx, sy = rx.std(), ry.std()
    if sx == 0 or sy == 0:
        return 0.0
    return float(np.clip(np.mean((rx - rx.mean()) * (ry - ry.mean())) / (sx * sy), -1.0, 1.0))


def cramers_v(a: np.ndarray, b: np.ndarray, ka: int, kb: int) -> float:
    """Bias-corrected Cramér's V (Bergsma 2013), in [0, 1].

    The uncorrected V of two independent columns with many categories is clearly above 0 at
    a few thousand rows, which would hide exactly the loss of association we look for.
    """
    n = a.size
    table = np.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb).astype(float)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    r, k = table.shape
    if n < 2 or min(r, k) < 2:
        return 0.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / n
    phi2 = float(((table - expected) ** 2 / expected).sum()) / n
    phi2c = max(0.0, phi2 - (k - 1) * (r - 1) / (n - 1))
    rc = r - (r - 1) ** 2 / (n - 1)
    kc = k - (k - 1) ** 2 / (n - 1)
    denom = min(kc - 1, rc - 1)
    return float(np.clip(np.sqrt(phi2c / denom), 0.0, 1.0)) if denom > 0 else 0.0


def correlation_ratio(codes: np.ndarray, ranks: np.ndarray, k: int) -> float:
    """Correlation ratio (eta) of a numerical column's ranks on a categorical column, in [0, 1].

    Uses the bias-adjusted epsilon-squared form, for the same reason as the corrected
    Cramér's V. Missing categories form their own group; missing numbers are left out.
    """
    ok = np.isfinite(ranks)
    codes, y = codes[ok], ranks[ok]
    n = y.size
    if n < 3:
        return 0.0
    counts = np.bincount(codes, minlength=k).astype(float)
    sums = np.bincount(codes, weights=y, minlength=k)
    mean = y.mean()
    ss_total = float(((y - mean) ** 2).sum())
    nz = counts > 0
    groups = int(nz.sum())
    if ss_total == 0 or groups < 2 or n <= groups:
        return 0.0
    ss_between = float((sums[nz] ** 2 / counts[nz]).sum() - n * mean**2)
    ss_within = ss_total - ss_between
    eps2 = (ss_between - (groups - 1) * ss_within / (n - groups)) / ss_total
    return float(np.sqrt(np.clip(eps2, 0.0, 1.0)))


def association_matrix(table: PreparedTable, schema: Schema) -> np.ndarray:
    """Pairwise association strength; numerical pairs signed (Spearman), the rest in [0, 1]."""
    cols = list(schema.columns)
    m = len(cols)
    ranks = {c.name: _ranks(table[c.name]) for c in cols if not is_discrete(c)}
    out = np.eye(m)
    for i, j in combinations(range(m), 2):
        ci, cj = cols[i], cols[j]
        if is_discrete(ci) and is_discrete(cj):
            v = cramers_v(table[ci.name], table[cj.name], n_codes(ci), n_codes(cj))
        elif is_discrete(ci):
            v = correlation_ratio(table[ci.name], ranks[cj.name], n_codes(ci))
        elif is_discrete(cj):
            v = correlation_ratio(table[cj.name], ranks[ci.name], n_codes(cj))
        else:
            v = spearman(table[ci.name], table[cj.name], ranks[ci.name], ranks[cj.name])
        out[i, j] = out[j, i] = v
    return out


@dataclass(frozen=True)
class StrongPair:
    """A pair with a strong real association, with the value each compared table gives it.

    A mean similarity over all pairs hides a broken strong relation among many weak ones that
    any table reproduces (independent columns included); this lists the relations that matter.
    """

    columns: tuple[str, str]
    measure: str
    real: float
    synthetic: float
    abs_difference: float
    kept: bool
    no_relations: float
    holdout: float


def strong_pairs(real: np.ndarray, synthetic: np.ndarray, no_relations: np.ndarray, holdout: np.ndarray,
                 schema: Schema) -> list[StrongPair]:
    """Every pair with ``|real association| >= STRONG_ASSOCIATION``, strongest first, from the matrices
    of :func:`association_matrix`."""
    names, measures = schema.names, association_measures(schema)
    found = [(i, j) for i, j in combinations(range(len(names)), 2) if abs(real[i, j]) >= STRONG_ASSOCIATION]
    found.sort(key=lambda ij: (-abs(real[ij]), ij))
    return [StrongPair(
        columns=(names[i], names[j]),
        measure=measures[i][j],
        real=float(real[i, j]),
        synthetic=float(synthetic[i, j]),
        abs_difference=float(abs(synthetic[i, j] - real[i, j])),
        kept=bool(abs(synthetic[i, j] - real[i, j]) <= KEPT_WITHIN),
        no_relations=float(no_relations[i, j]),
        holdout=float(holdout[i, j]),
    ) for i, j in found]


def association_measures(schema: Schema) -> list[list[str]]:
    """Which statistic sits in each cell of :func:`association_matrix` (for the report)."""
    cols = list(schema.columns)
    out = []
    for ci in cols:
        row = []
        for cj in cols:
            if ci.name == cj.name:
                row.append("self")
            elif is_discrete(ci) and is_discrete(cj):
                row.append("cramers_v")
            elif is_discrete(ci) or is_discrete(cj):
                row.append("correlation_ratio")
            else:
                row.append("spearman")
        out.append(row)
    return out


def association_similarity(a: np.ndarray, b: np.ndarray, schema: Schema) -> tuple[float, np.ndarray]:
    """Mean similarity over column pairs, and the per-pair absolute differences.

    Signed Spearman values differ by up to 2, so their similarity is ``1 - |diff| / 2``
    (as SDMetrics' CorrelationSimilarity); the other measures lie in [0, 1] and use
    ``1 - |diff|``.
    """
    cols = list(schema.columns)
    diff = np.abs(a - b)
    sims = []
    for i, j in combinations(range(len(cols)), 2):
        both_numeric = not is_discrete(cols[i]) and not is_discrete(cols[j])
        sims.append(1.0 - diff[i, j] / 2.0 if both_numeric else 1.0 - diff[i, j])
    return (float(np.mean(sims)) if sims else 1.0), diff
