"""Per-column fidelity: each column's distances, missing shares and the data of its plot."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from fedsynth.common.data.schema import Column, Schema
from fedsynth.evaluation.jsonable import OMIT_IF_NONE
from fedsynth.evaluation.marginals import ks_statistic, tvd
from fedsynth.evaluation.prepared import (
    PreparedTable,
    code_labels,
    is_discrete,
    levels,
    n_codes,
    numeric_bounds,
)

PLOT_BINS = 30
MAX_PLOT_CATEGORIES = 15


@dataclass(frozen=True, kw_only=True)
class HistogramPlot:
    """A numerical or datetime column: shares of all rows per bin, missing shares beside."""

    kind: Literal["histogram"] = "histogram"
    edges: list[float]
    real: list[float]
    synthetic: list[float]
    missing_real: float
    missing_synthetic: float
    log_x: bool
    datetime: bool


@dataclass(frozen=True, kw_only=True)
class BarsPlot:
    """A categorical or boolean column: share of rows per category, largest first."""

    kind: Literal["bars"] = "bars"
    labels: list[str]
    real: list[float]
    synthetic: list[float]


@dataclass(frozen=True, kw_only=True)
class ColumnFidelity:
    """One column of ``other`` against the real rows.

    ``ks`` is None for categories (null in the file); ``tvd_quantile_bins`` and ``bins`` exist
    only for numerical columns, and ``plot`` only for the synthetic table, not the baseline.
    """

    name: str
    type: str
    ks: float | None
    tvd: float
    tvd_quantile_bins: float | None = field(default=None, metadata=OMIT_IF_NONE)
    tvd_method: str
    missing_real: float
    missing_synthetic: float
    score: float
    plot: HistogramPlot | BarsPlot | None = field(default=None, metadata=OMIT_IF_NONE)
    bins: int | None = field(default=None, metadata=OMIT_IF_NONE)


def _plot_edges(col: Column, values: list[np.ndarray]) -> tuple[np.ndarray, bool]:
    finite = np.concatenate([v[np.isfinite(v)] for v in values])
    lo_b, hi_b = numeric_bounds(col)
    if finite.size == 0:
        return np.array([lo_b, hi_b]), False
    lo = max(float(finite.min()), lo_b)
    hi = min(float(finite.max()), hi_b)
    if col.is_discrete_int:
        return np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.0, 1.0), False
    if hi <= lo:
        return np.array([lo - 0.5, lo + 0.5]), False
    if col.type == "numerical" and col.scale == "log":
        t = np.linspace(np.log1p(lo - lo_b), np.log1p(hi - lo_b), PLOT_BINS + 1)
        return lo_b + np.expm1(t), True
    return np.linspace(lo, hi, PLOT_BINS + 1), False


def _continuous_plot(col: Column, real: np.ndarray, syn: np.ndarray) -> HistogramPlot:
    edges, log_x = _plot_edges(col, [real, syn])

    def shares(v: np.ndarray) -> list[float]:
        counts, _ = np.histogram(np.clip(v[np.isfinite(v)], edges[0], edges[-1]), bins=edges)
        return (counts / v.size).tolist()

    return HistogramPlot(
        edges=edges.tolist(),
        real=shares(real),
        synthetic=shares(syn),
        missing_real=float(np.isnan(real).mean()),
        missing_synthetic=float(np.isnan(syn).mean()),
        log_x=log_x,
        datetime=col.type == "datetime",
    )


def _discrete_plot(col: Column, real: np.ndarray, syn: np.ndarray) -> BarsPlot:
    k = n_codes(col)
    p = np.bincount(real, minlength=k) / real.size
    q = np.bincount(syn, minlength=k) / syn.size
    labels = code_labels(col)
    shown = [i for i in np.argsort(-np.maximum(p, q), kind="stable") if max(p[i], q[i]) > 0]
    # Aggregate the tail only when that saves at least two bars.
    cut = MAX_PLOT_CATEGORIES if len(shown) > MAX_PLOT_CATEGORIES + 1 else len(shown)
    rest = shown[cut:]
    shown = shown[:cut]
    out_labels = [labels[i] for i in shown]
    real_s = [float(p[i]) for i in shown]
    syn_s = [float(q[i]) for i in shown]
    if rest:
        out_labels.append(f"(other {len(rest)} categories)")
        real_s.append(float(p[rest].sum()))
        syn_s.append(float(q[rest].sum()))
    return BarsPlot(labels=out_labels, real=real_s, synthetic=syn_s)


def column_plot(col: Column, real: np.ndarray, synthetic: np.ndarray) -> HistogramPlot | BarsPlot:
    """The data of one column's plot: bars of category shares, or a histogram on the public bounds."""
    if is_discrete(col):
        return _discrete_plot(col, real, synthetic)
    return _continuous_plot(col, real, synthetic)


def one_way(schema: Schema, real: PreparedTable, other: PreparedTable,
            codes_real: dict[str, tuple[np.ndarray, int]],
            codes_other: dict[str, tuple[np.ndarray, int]]) -> list[ColumnFidelity]:
    """Per-column distances of ``other`` from ``real`` (codes from :func:`~fedsynth.evaluation.marginals.discretise`)."""
    rows = []
    for col in schema.columns:
        r, o = real[col.name], other[col.name]
        code_r, k = codes_real[col.name]
        t = tvd(code_r, codes_other[col.name][0], k)
        if is_discrete(col):
            miss_r = float(np.mean(r == len(levels(col))))
            miss_o = float(np.mean(o == len(levels(col))))
            rows.append(ColumnFidelity(name=col.name, type=col.type, ks=None, tvd=t, tvd_method="categories",
                                       missing_real=miss_r, missing_synthetic=miss_o, score=1.0 - t))
        else:
            rows.append(ColumnFidelity(name=col.name, type=col.type, ks=ks_statistic(r, o), tvd=t,
                                       tvd_quantile_bins=t, tvd_method="real-quantile bins",
                                       missing_real=float(np.isnan(r).mean()),
                                       missing_synthetic=float(np.isnan(o).mean()), score=1.0 - t))
    return rows
