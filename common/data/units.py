"""The units a numerical or datetime column is counted in: one place for the encoder and the histograms.

The encoder's bins (:mod:`fedsynth.common.data.encoding`) and the released histograms
(:mod:`fedsynth.common.data.histogram`) lay a column out on the same line: days since 1970-01-01
for a datetime (:mod:`fedsynth.common.data.days`), minutes since midnight for a ``clock`` column
(:mod:`fedsynth.common.data.clock`), the values themselves otherwise. The encoder places its bins
at the histogram's released quantiles, so the two must never disagree on that line; both convert
here. The way back is :func:`fedsynth.common.data.encoding.as_declared`, which also
applies grids, integer types and decimals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fedsynth.common.data.clock import to_minutes
from fedsynth.common.data.days import to_days
from fedsynth.common.data.schema import Column


def in_units(values: pd.Series | np.ndarray | Sequence, *, datetime: bool = False, clock: bool = False) -> np.ndarray:
    """``values`` as floats in their column's units (days for a ``datetime``, minutes for a
    ``clock``, themselves otherwise); missing -> NaN."""
    if datetime:
        return to_days(pd.Series(values))
    x = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return to_minutes(x) if clock else x


def to_units(column: Column, values: pd.Series | np.ndarray | Sequence) -> np.ndarray:
    """``values`` of ``column`` (typed, as read; or its bounds and point masses as the schema
    writes them) in the column's units."""
    return in_units(values, datetime=column.type == "datetime", clock=bool(column.clock))


def bounds_in_units(column: Column) -> tuple[float, float]:
    """The column's public bounds (``min``, ``max``) in its units.

    A datetime's bounds are parsed one by one: a draft writes ``2017-01-01`` and
    ``2018-12-31T23:59:59``, and pandas parses a column of texts in the first one's format."""
    bounds = [column.min, column.max]
    if column.type == "datetime":
        bounds = [pd.Timestamp(b) for b in bounds]
    lo, hi = to_units(column, bounds)
    return float(lo), float(hi)
