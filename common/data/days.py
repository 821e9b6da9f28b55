"""Datetimes as days since 1970-01-01 (float), the scale the encoder and the histograms use."""

from __future__ import annotations

import numpy as np
import pandas as pd

EPOCH = pd.Timestamp("1970-01-01")


def to_days(s: pd.Series) -> np.ndarray:
    """Timestamps (or texts pandas parses) -> float days; NaT -> NaN."""
    return ((pd.to_datetime(s) - EPOCH) / pd.Timedelta(days=1)).to_numpy(dtype=float)


def from_days(x: np.ndarray) -> pd.Series:
    """Float days -> timestamps rounded to the second; NaN -> NaT."""
    return pd.to_datetime(pd.Series(x) * 86400.0, unit="s").dt.round("s")
