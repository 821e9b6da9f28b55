"""Datetimes as days since 1970-01-01 (float), the scale the encoder and the histograms use."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

EPOCH = pd.Timestamp("1970-01-01")


def to_days(s: pd.Series) -> np.ndarray:
    """Timestamps (or texts pandas parses) -> float days; NaT -> NaN."""
    return ((pd.to_datetime(s) - EPOCH) / pd.Timedelta(days=1)).to_numpy(dtype=float)


def from_days(x: np.ndarray) -> pd.Series:
    """Float days -> timestamps rounded to the second; NaN -> NaT."""
    return pd.to_datetime(pd.Series(x) * 86400.0, unit="s").dt.round("s")


# strftime directives that write a time of day (or a finer part of one)
_TIME_OF_DAY = frozenset("HIMSfpXcTRrklsz")


def is_date_only(fmt: str | None) -> bool:
    """Whether a ``datetime_format`` writes no time of day (``%d/%m/%Y``): such a column's values
    are whole days, and a synthetic value should be one too. None (no format declared): False."""
    if not fmt:
        return False
    directives = set(re.findall(r"%(.)", fmt))  # left to right, so "%%" (a literal %) is one match
    return not directives & _TIME_OF_DAY
