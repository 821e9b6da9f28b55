"""Marginal distances: 1-way and 2-way total variation distance (TVD) and the KS statistic.

Numericals are compared on bins fitted on the *real* rows (:class:`Binning`), categoricals and
booleans as their codes; missing values are a category of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from fedsynth.common.data.schema import Column, Schema
from fedsynth.evaluation.prepared import PreparedTable, is_discrete, n_codes

N_QUANTILE_BINS = 10


@dataclass(frozen=True)
class Binning:
    """Bins of one numerical column, fixed from the *real* rows so every table shares them.

    Declared point masses (public, e.g. capital-gain = 0) get a bin of their own and the
    remaining values are cut at their real-data deciles; otherwise a column that is 92 % zeros
    would collapse into one or two bins and its TVD would say nothing about the tail.
    Bins are right-closed, so repeated integer values stay in one bin. The last code is
    *missing*.
    """

    point_masses: np.ndarray
    inner_edges: np.ndarray

    @property
    def n_codes(self) -> int:
        return len(self.point_masses) + len(self.inner_edges) + 2

    def codes(self, values: np.ndarray) -> np.ndarray:
        n_pm = len(self.point_masses)
        codes = n_pm + np.searchsorted(self.inner_edges, values, side="left")
        for j, pm in enumerate(self.point_masses):
            codes[values == pm] = j
        codes[np.isnan(values)] = self.n_codes - 1
        return codes.astype(np.int64)


def fit_binning(real_values: np.ndarray, col: Column, n_bins: int = N_QUANTILE_BINS) -> Binning:
    """The :class:`Binning` of one numerical column, fitted on the real rows' values."""
    point_masses = np.asarray(sorted(col.point_masses), dtype=float)
    finite = real_values[np.isfinite(real_values)]
    rest = finite[~np.isin(finite, point_masses)]
    if rest.size:
        inner = np.unique(np.quantile(rest, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))
    else:
        inner = np.empty(0)
    return Binning(point_masses, inner)


def discretise(table: PreparedTable, schema: Schema, binnings: dict[str, Binning]) -> dict[str, tuple[np.ndarray, int]]:
    """Every column as (codes, number of codes): categories as they are, numericals binned."""
    out: dict[str, tuple[np.ndarray, int]] = {}
    for col in schema.columns:
        if is_discrete(col):
            out[col.name] = (table[col.name], n_codes(col))
        else:
            b = binnings[col.name]
            out[col.name] = (b.codes(table[col.name]), b.n_codes)
    return out


def tvd(a: np.ndarray, b: np.ndarray, n: int) -> float:
    """Total variation distance between the code distributions of two samples."""
    p = np.bincount(a, minlength=n) / max(a.size, 1)
    q = np.bincount(b, minlength=n) / max(b.size, 1)
    return float(0.5 * np.abs(p - q).sum())


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic on the non-missing values.

    Computed directly from the empirical CDFs rather than with ``scipy.stats.ks_2samp``,
    whose exact p-value mode is slow on mid-sized samples and whose p-value we do not use.
    """
    a = np.sort(a[np.isfinite(a)])
    b = np.sort(b[np.isfinite(b)])
    if a.size == 0 or b.size == 0:
        return 0.0 if a.size == b.size else 1.0
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def two_way(codes_a: dict[str, tuple[np.ndarray, int]], codes_b: dict[str, tuple[np.ndarray, int]],
            names: list[str]) -> list[tuple[str, str, float]]:
    """(x, y, 2-way TVD) for every column pair, the joint codes of ``codes_b`` against ``codes_a``."""
    out = []
    for x, y in combinations(names, 2):
        (ax, kx), (ay, ky) = codes_a[x], codes_a[y]
        bx, by = codes_b[x][0], codes_b[y][0]
        out.append((x, y, tvd(ax * ky + ay, bx * ky + by, kx * ky)))
    return out


def marginal_tvds(real: PreparedTable, other: PreparedTable, schema: Schema) -> tuple[dict[str, float], float]:
    """(1-way TVD per column, mean 2-way TVD over all column pairs) of ``other`` against ``real``.

    The same definition as :func:`fidelity`'s headline numbers (bins fitted on ``real``, declared
    point masses in their own bin, missing as a category), without the plots and associations:
    the view that :mod:`fedsynth.simulations.quality` and the benchmarks use, so that a number
    in ``summary.json``, a benchmark table and the HTML report mean the same thing.
    """
    binnings = {c.name: fit_binning(real[c.name], c) for c in schema.columns if not is_discrete(c)}
    codes_real = discretise(real, schema, binnings)
    codes_other = discretise(other, schema, binnings)
    one = {name: tvd(codes_real[name][0], codes_other[name][0], codes_real[name][1]) for name in schema.names}
    pairs = two_way(codes_real, codes_other, schema.names)
    return one, (float(np.mean([p[2] for p in pairs])) if pairs else 0.0)
