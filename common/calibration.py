"""Samples that agree with the released marginals: post-processing, no budget of its own.

The one-off counts release (category counts and numerical histograms, see
:mod:`fedsynth.common.data.histogram`) measures each column's marginal far more precisely
than DP-SGD's noisy gradients teach it to the model. A sample is therefore drawn in two
steps that only use the model and that release:

1. **raking**: a pool of :data:`POOL_FACTOR` x n model rows gets iterative proportional
   fitting weights that match its categorical columns to the released category frequencies
   (the least change to the model's joint distribution that does, in the KL sense), and n
   distinct rows are drawn from it with inclusion probabilities proportional to those weights;
2. **quantile mapping**: each numerical column is moved to the same quantiles of its released
   histogram (datetime columns too, in days), keeping the order of its values, so their
   relations to the other columns.

Only unconditional draws are calibrated: under a condition the released (unconditional)
marginals are the wrong target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from fedsynth.common.data.encoding import TableEncoder, as_declared
from fedsynth.common.data.units import join_part

POOL_FACTOR = 4  # model rows per calibrated row
RAKING_SWEEPS = 20
MAX_WEIGHT = 20.0  # a row stands for at most this many average rows: no single row dominates
REBALANCE_BINS = 16  # quantile cells a numerical is raked on after constraint rejection (rebalanced)
MAX_REBALANCE_LEVELS = 256  # a text column with more distinct values is not raked on (an id, free text)


def raking_weights(codes: Sequence[np.ndarray], targets: Sequence[np.ndarray], sweeps: int = RAKING_SWEEPS
                   ) -> np.ndarray:
    """Row weights (mean 1) under which each column's category shares (``codes``: a category
    index per row) approach ``targets`` (frequencies), by iterative proportional fitting."""
    n = len(codes[0]) if codes else 0
    w = np.ones(n)
    for _ in range(sweeps if n else 0):
        for code, target in zip(codes, targets):
            target = np.asarray(target, dtype=float)
            have = np.bincount(code, weights=w, minlength=len(target)) / w.sum()
            w *= np.where(have > 0, target / np.maximum(have, 1e-12), 1.0)[code]
        w = np.clip(w / w.mean(), 0.0, MAX_WEIGHT)
    return w


def weighted_draw(weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct row indices, row i included with probability proportional to its weight
    (capped at 1), by systematic sampling over a random order; returned in random order.

    Exact inclusion probabilities matter: drawing the n largest keys u^(1/w) (Efraimidis-Spirakis)
    under-represents heavy rows when n is a quarter of the pool, by a third in tests."""
    w = np.clip(np.asarray(weights, dtype=float), 0.0, None)
    if n >= len(w):
        return rng.permutation(len(w))
    pi, capped = np.zeros(len(w)), np.zeros(len(w), dtype=bool)
    while True:  # pi = min(1, c w) with sum n: rows that would exceed 1 are taken for sure
        c = (n - capped.sum()) / max(w[~capped].sum(), 1e-300)
        over = ~capped & (c * w >= 1.0)
        if not over.any():
            break
        capped |= over
    pi[capped], pi[~capped] = 1.0, c * w[~capped]
    order = rng.permutation(len(w))
    cum = np.cumsum(pi[order])
    picked = np.searchsorted(cum, rng.random() + np.arange(n), side="right")
    return rng.permutation(order[np.clip(picked, 0, len(w) - 1)])


def calibrated_rows(generate: Callable[[int], np.ndarray], encoder: TableEncoder, category_freqs: Sequence[np.ndarray],
                    histograms: Sequence[np.ndarray], n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` decoded rows drawn from ``generate`` (encoded model rows) and calibrated to the released
    ``category_freqs`` (one per conditionable column, if the table has any) and ``histograms`` (one
    per numerical or datetime column, :attr:`TableEncoder.histograms`)."""
    if encoder.conditionable:
        pool = generate(POOL_FACTOR * n)
        codes = [pool[:, s.start : s.end].argmax(axis=1) for s in encoder.conditionable]
        rows = pool[weighted_draw(raking_weights(codes, category_freqs), n, rng)]
    else:  # a table of numericals alone: nothing to rake, so no pool
        rows = generate(n)
    df = encoder.decode(rows, seed=int(rng.integers(2**62)))
    for layout, freqs in zip(encoder.histograms, histograms):  # a timestamp's day, then its time of day
        column = encoder.schema.column(layout.column)
        mapped = layout.quantile_map(layout.values(df[layout.column]), freqs, rng)
        df[layout.column] = as_declared(join_part(column, df[layout.column], layout.part, mapped), column)
    return df


def rebalanced(rows: pd.DataFrame, reference: pd.DataFrame, n: int, rng: np.random.Generator,
               columns: Sequence[str], bins: int = REBALANCE_BINS) -> pd.DataFrame:
    """``n`` of ``rows`` (the drawn rows that keep the schema's constraints) weighted so that each
    of ``columns`` (those the rejected constraints name) has ``reference``'s marginal (the same
    draws before rejection).

    Rejection selects: with many inequalities (a drafted schema can hold dozens) the rows that
    keep them all have far larger high columns than the model draws (docs/benchmarks.md, "Many
    inequalities"). Raking the kept rows back to the
    calibrated draw's marginals (numericals and datetimes in ``bins`` quantile cells, the rest
    by value, missing a cell of its own) undoes that as far as the kept rows reach, and every
    drawn row still keeps the constraints."""
    codes, targets = [], []
    for col in columns:
        cells = _cells(reference[col], rows[col], bins)
        if cells is not None:
            codes.append(cells[1])
            targets.append(np.bincount(cells[0], minlength=int(max(cells[0].max(), cells[1].max())) + 1) / len(cells[0]))
    weights = raking_weights(codes, targets) if codes else np.ones(len(rows))
    return rows.iloc[weighted_draw(weights, n, rng)].reset_index(drop=True)


def _cells(reference: pd.Series, values: pd.Series, bins: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Cell indices of ``reference`` and ``values``: quantile cells of the reference for numbers
    and datetimes, one cell per reference value otherwise; missing (and, for values, anything the
    reference lacks) in the last cell. None for a column of many distinct texts (nothing to rake)."""
    if pd.api.types.is_numeric_dtype(reference) or pd.api.types.is_datetime64_any_dtype(reference):
        ref, val = _floats(reference), _floats(values)
        present = ref[~np.isnan(ref)]
        if present.size == 0:
            return None
        edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]))
        last = len(edges) + 1
        ref_cells, val_cells = (np.where(np.isnan(x), last, np.searchsorted(edges, np.nan_to_num(x), side="right"))
                                for x in (ref, val))
        return ref_cells, val_cells
    levels = pd.unique(reference.dropna().astype(object))
    if len(levels) > MAX_REBALANCE_LEVELS:
        return None
    out = []
    for x in (reference, values):
        code = pd.Categorical(x.astype(object), categories=levels).codes.astype(np.int64)
        out.append(np.where(code < 0, len(levels), code))
    return out[0], out[1]


def _floats(s: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(s):
        out = s.astype("int64").to_numpy(dtype=float)
        out[s.isna().to_numpy()] = np.nan
        return out
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
