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
