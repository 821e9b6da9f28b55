"""The splits the risk benchmarks attack: null (nothing to find) and copy (everything to find).

null: training, holdout and "synthetic" rows are disjoint samples of the table (N/2, N/8 and the
rest, a 4:1 training:holdout ratio), so an attack should add no risk; copy: an 80/20 split with
the training rows as the synthetic table, so every attack should fire.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedsynth.common.data.schema import Schema
from fedsynth.evaluation.prepared import PreparedTable, prepare

MODES = ("null", "copy")


def risk_split(df: pd.DataFrame, schema: Schema, mode: str, seed: int) -> tuple[PreparedTable, PreparedTable,
                                                                                 PreparedTable]:
    """(training, holdout, synthetic) rows of ``df`` for ``mode``, drawn with ``seed``."""
    total = len(df)
    perm = np.random.default_rng(seed).permutation(total)
    n, m = (int(0.8 * total), total - int(0.8 * total)) if mode == "copy" else (total // 2, total // 8)
    real = prepare(df.iloc[perm[:n]].reset_index(drop=True), schema, "real")
    holdout = prepare(df.iloc[perm[n:n + m]].reset_index(drop=True), schema, "holdout")
    synthetic = real if mode == "copy" else prepare(df.iloc[perm[n + m:]].reset_index(drop=True), schema, "synthetic")
    return real, holdout, synthetic
