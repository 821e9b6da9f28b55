"""The numeric embedding of a table that every distance (DCR, attacks, the linear utility model) uses.

Built from the *public* schema only: numericals scaled to [0, 1] by their public bounds (on the
log scale where the schema says so), one-hot categoricals weighted 1/sqrt(2) so that any
mismatch in one column costs at most 1, like a numerical spanning its whole range, and an
indicator per column that can be missing. Distances are Euclidean in it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.neighbors import NearestNeighbors

from fedsynth.common.data.schema import Schema
from fedsynth.evaluation.prepared import (
    PreparedTable,
    is_discrete,
    n_codes,
    numeric_bounds,
)

_ONEHOT = 1.0 / math.sqrt(2.0)


@dataclass(frozen=True)
class Embedding:
    """Column layout of the numeric embedding; fixed from the schema so tables line up."""

    schema: Schema
    indicators: frozenset[str]
    exclude: frozenset[str] = frozenset()

    @classmethod
    def build(cls, schema: Schema, tables: list[PreparedTable], exclude: tuple[str, ...] = ()) -> Embedding:
        """A missing indicator for every nullable numerical, or one that is missing anywhere."""
        ind = set()
        for col in schema.columns:
            if is_discrete(col) or col.name in exclude:
                continue
            if col.nullable or any(np.isnan(t[col.name]).any() for t in tables):
                ind.add(col.name)
        return cls(schema, frozenset(ind), frozenset(exclude))

    def transform(self, table: PreparedTable) -> np.ndarray:
        parts: list[np.ndarray] = []
        for col in self.schema.columns:
            if col.name in self.exclude:
                continue
            v = table[col.name]
            if is_discrete(col):
                onehot = np.zeros((table.n_rows, n_codes(col)))
                onehot[np.arange(table.n_rows), v] = _ONEHOT
                parts.append(onehot)
                continue
            lo, hi = numeric_bounds(col)
            miss = np.isnan(v)
            x = np.clip(np.where(miss, lo, v), lo, hi)
            if col.type == "numerical" and col.scale == "log":
                scaled = np.log1p(x - lo) / np.log1p(hi - lo)
            else:
                scaled = (x - lo) / (hi - lo)
            parts.append(scaled[:, None])
            if col.name in self.indicators:
                parts.append(miss.astype(float)[:, None])
        return np.hstack(parts) if parts else np.zeros((table.n_rows, 0))


def nn_distance(index: np.ndarray, queries: np.ndarray, k: int = 1) -> np.ndarray:
    """Distances to the k nearest rows of ``index``; brute force suits ~100 one-hot dimensions."""
    k = min(k, index.shape[0])
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(index)
    dist, _ = nn.kneighbors(queries)
    return dist
