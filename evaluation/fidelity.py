"""Fidelity: how closely the synthetic table reproduces the real one.

Three levels, each answering a question a data user asks:

* **1-way** (per column): "does each column look right?" -- the Kolmogorov-Smirnov statistic
  for numericals and datetimes, the total variation distance (TVD) for categoricals and
  booleans, and, so that every column is on one scale, the TVD of numericals on bins cut at
  the *real* rows' quantiles.
* **2-way** (per pair of columns): "are combinations right?" -- the TVD between the joint
  distributions of every column pair, numericals binned as above. A synthesizer that gets
  every marginal right but breaks the relations between columns scores perfectly on 1-way
  metrics and badly here.
* **associations**: "are the relations as strong as in the real data?" -- one association
  matrix per table (Spearman for numerical pairs, bias-corrected Cramér's V for categorical
  pairs, the correlation ratio on ranks for mixed pairs) and their similarity.

Missing values are part of the distribution everywhere (a synthesizer must reproduce how
often a value is missing), never silently dropped, except where a statistic is undefined on
them (KS, ranks), which is said next to the statistic.

This module also holds the schema-typed view of a table (:class:`PreparedTable`) that the
utility and privacy modules share, so that every metric reads the three tables the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from fedsynth.common.data.schema import Column, Schema
from fedsynth.common.data.tables import FALSE_TOKENS, TRUE_TOKENS

N_QUANTILE_BINS = 10
PLOT_BINS = 30
MAX_PLOT_CATEGORIES = 15
MISSING_LABEL = "(missing)"
OTHER_LABEL = "(not in schema)"
_EPOCH = pd.Timestamp("1970-01-01")


# =========================================================================== typed view
def is_discrete(col: Column) -> bool:
    """Categoricals and booleans are compared as categories; the rest as numbers."""
    return col.type in ("categorical", "boolean")


def levels(col: Column) -> tuple[str, ...]:
    """The public category list of a discrete column (booleans: ``False``, ``True``)."""
    if col.type == "boolean":
        return ("False", "True")
    return tuple(col.categories or ())


def n_codes(col: Column) -> int:
    """Codes of a discrete column: one per category, then *missing*, then *not in schema*."""
    return len(levels(col)) + 2


def code_labels(col: Column) -> list[str]:
    return [*levels(col), MISSING_LABEL, OTHER_LABEL]


def numeric_bounds(col: Column) -> tuple[float, float]:
    """Public bounds of a numerical column (datetimes: as days since 1970-01-01)."""
    if col.type == "datetime":
        return (_days(pd.Timestamp(str(col.min))), _days(pd.Timestamp(str(col.max))))
    return (float(col.min), float(col.max))  # type: ignore[arg-type]


def _days(ts: pd.Timestamp) -> float:
    if ts.tzinfo is not None:
        ts = ts.tz_convert(None)
    return float((ts - _EPOCH) / pd.Timedelta(days=1))


@dataclass(frozen=True)
class PreparedTable:
    """One table as schema-typed arrays, the common currency of every metric.

    Numericals and datetimes (as days) are float arrays with NaN for missing; categoricals
    and booleans are integer codes over :func:`code_labels`. Converting once means the three
    tables are read identically by fidelity, utility and privacy code, whatever dtype
    (object, pandas ``str``, nullable boolean) the caller's frames happen to use.
    """

    columns: dict[str, np.ndarray]
    n_rows: int

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def take(self, index: np.ndarray) -> PreparedTable:
        """The rows at ``index`` (used for subsampling with a fixed seed)."""
        return PreparedTable({k: v[index] for k, v in self.columns.items()}, int(len(index)))


def prepare(df: pd.DataFrame, schema: Schema, label: str) -> PreparedTable:
    """Convert a typed frame (as from ``load_table``) into a :class:`PreparedTable`.

    Raises ValueError naming the table when it is empty or lacks schema columns, because a
    metric silently computed on the wrong columns would be worse than no metric.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"the {label} table must be a pandas DataFrame, got {type(df).__name__}")
    absent = [c for c in schema.names if c not in df.columns]
    if absent:
        raise ValueError(f"the {label} table lacks schema column(s) {absent}")
    if len(df) == 0:
        raise ValueError(f"the {label} table has no rows")
    out: dict[str, np.ndarray] = {}
    for col in schema.columns:
        series = df[col.name].reset_index(drop=True)
        out[col.name] = _discrete_codes(series, col) if is_discrete(col) else _continuous(series, col)
    return PreparedTable(out, len(df))


def _continuous(series: pd.Series, col: Column) -> np.ndarray:
    if col.type == "datetime":
        if pd.api.types.is_datetime64_any_dtype(series):
            ts = series
        else:
            ts = pd.to_datetime(series, errors="coerce", format="mixed")
        if getattr(ts.dt, "tz", None) is not None:
            ts = ts.dt.tz_convert(None)
        return ((ts - _EPOCH) / pd.Timedelta(days=1)).to_numpy(dtype=float, na_value=np.nan)
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return np.where(np.isinf(values), np.nan, values)


def _bool_label(value: Any) -> str | None:
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    text = str(value).strip().lower()
    if text in TRUE_TOKENS:
        return "True"
    if text in FALSE_TOKENS:
        return "False"
    return text


def _discrete_codes(series: pd.Series, col: Column) -> np.ndarray:
    lv = levels(col)
    missing = series.isna().to_numpy()
    obj = series.astype(object)
    if col.type == "boolean":
        text = obj.map(lambda v: None if v is None or v is pd.NA else _bool_label(v))
    else:
        text = obj.map(lambda v: v if isinstance(v, str) else str(v))
    values = text.where(~missing, None).to_numpy(dtype=object)
    codes = pd.Categorical(values, categories=list(lv)).codes.astype(np.int64)
    codes[(codes < 0) & ~missing] = len(lv) + 1
    codes[missing] = len(lv)
    return codes


# =========================================================================== binning
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


# =========================================================================== distances
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


def _two_way(codes_a: dict[str, tuple[np.ndarray, int]], codes_b: dict[str, tuple[np.ndarray, int]],
             names: list[str]) -> list[tuple[str, str, float]]:
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
    pairs = _two_way(codes_real, codes_other, schema.names)
    return one, (float(np.mean([p[2] for p in pairs])) if pairs else 0.0)


# =========================================================================== associations
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


# =========================================================================== plot data
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


def _continuous_plot(col: Column, real: np.ndarray, syn: np.ndarray) -> dict[str, Any]:
    edges, log_x = _plot_edges(col, [real, syn])

    def shares(v: np.ndarray) -> list[float]:
        counts, _ = np.histogram(np.clip(v[np.isfinite(v)], edges[0], edges[-1]), bins=edges)
        return (counts / v.size).tolist()

    return {
        "kind": "histogram",
        "edges": edges.tolist(),
        "real": shares(real),
        "synthetic": shares(syn),
        "missing_real": float(np.isnan(real).mean()),
        "missing_synthetic": float(np.isnan(syn).mean()),
        "log_x": log_x,
        "datetime": col.type == "datetime",
    }


def _discrete_plot(col: Column, real: np.ndarray, syn: np.ndarray) -> dict[str, Any]:
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
    return {"kind": "bars", "labels": out_labels, "real": real_s, "synthetic": syn_s}


# =========================================================================== entry point
def _one_way(schema: Schema, real: PreparedTable, other: PreparedTable,
             codes_real: dict[str, tuple[np.ndarray, int]],
             codes_other: dict[str, tuple[np.ndarray, int]]) -> list[dict[str, Any]]:
    rows = []
    for col in schema.columns:
        r, o = real[col.name], other[col.name]
        code_r, k = codes_real[col.name]
        t = tvd(code_r, codes_other[col.name][0], k)
        if is_discrete(col):
            miss_r = float(np.mean(r == len(levels(col))))
            miss_o = float(np.mean(o == len(levels(col))))
            rows.append({"name": col.name, "type": col.type, "ks": None, "tvd": t,
                         "tvd_method": "categories", "missing_real": miss_r,
                         "missing_synthetic": miss_o})
        else:
            rows.append({"name": col.name, "type": col.type, "ks": ks_statistic(r, o), "tvd": t,
                         "tvd_quantile_bins": t, "tvd_method": "real-quantile bins",
                         "missing_real": float(np.isnan(r).mean()),
                         "missing_synthetic": float(np.isnan(o).mean())})
    return rows


def fidelity(real: PreparedTable, synthetic: PreparedTable, schema: Schema,
             holdout: PreparedTable | None = None) -> dict[str, Any]:
    """All fidelity metrics of ``synthetic`` against ``real``.

    When ``holdout`` is given, the headline numbers are also computed for holdout-vs-real:
    two independent real samples never match perfectly, so that baseline shows how much of
    the distance is plain sampling noise.
    """
    names = schema.names
    binnings = {c.name: fit_binning(real[c.name], c) for c in schema.columns if not is_discrete(c)}
    codes_real = discretise(real, schema, binnings)
    codes_syn = discretise(synthetic, schema, binnings)

    columns = _one_way(schema, real, synthetic, codes_real, codes_syn)
    for entry, col in zip(columns, schema.columns, strict=True):
        entry["score"] = 1.0 - entry["tvd"]
        entry["plot"] = (_discrete_plot(col, real[col.name], synthetic[col.name]) if is_discrete(col)
                         else _continuous_plot(col, real[col.name], synthetic[col.name]))
        if not is_discrete(col):
            entry["bins"] = binnings[col.name].n_codes

    pairs = _two_way(codes_real, codes_syn, names)
    pair_tvds = np.array([p[2] for p in pairs]) if pairs else np.zeros(0)
    worst = sorted(pairs, key=lambda p: -p[2])[:8]

    assoc_real = association_matrix(real, schema)
    assoc_syn = association_matrix(synthetic, schema)
    sim, diff = association_similarity(assoc_real, assoc_syn, schema)

    ks_values = [c["ks"] for c in columns if c["ks"] is not None]
    mean_tvd_2 = float(pair_tvds.mean()) if pair_tvds.size else 0.0
    out: dict[str, Any] = {
        "columns": columns,
        "mean_tvd_1way": float(np.mean([c["tvd"] for c in columns])),
        "mean_ks": float(np.mean(ks_values)) if ks_values else None,
        "two_way": {
            "mean_tvd": mean_tvd_2,
            "contingency_similarity": 1.0 - mean_tvd_2,
            "n_pairs": len(pairs),
            "numerical_bins": f"{N_QUANTILE_BINS} real-quantile bins + one per declared point mass + missing",
            "worst_pairs": [{"columns": [x, y], "tvd": t} for x, y, t in worst],
        },
        "associations": {
            "columns": names,
            "measures": association_measures(schema),
            "real": assoc_real.tolist(),
            "synthetic": assoc_syn.tolist(),
            "abs_difference": diff.tolist(),
            "similarity": sim,
        },
    }
    if holdout is not None:
        codes_hold = discretise(holdout, schema, binnings)
        base_cols = _one_way(schema, real, holdout, codes_real, codes_hold)
        base_pairs = _two_way(codes_real, codes_hold, names)
        base_sim, _ = association_similarity(assoc_real, association_matrix(holdout, schema), schema)
        base_ks = [c["ks"] for c in base_cols if c["ks"] is not None]
        out["baseline_holdout"] = {
            "description": "the same metrics for real holdout rows against the training rows: "
                           "the level sampling noise alone produces",
            "rows": holdout.n_rows,
            "mean_tvd_1way": float(np.mean([c["tvd"] for c in base_cols])),
            "mean_ks": float(np.mean(base_ks)) if base_ks else None,
            "mean_tvd_2way": float(np.mean([p[2] for p in base_pairs])) if base_pairs else 0.0,
            "association_similarity": base_sim,
        }
    return out
