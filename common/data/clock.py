"""Times of day written as HHMM numbers (hours * 100 + minutes): 517 is 05:17, 2359 is 23:59.

Airline schedules (BTS on-time data, nycflights13) and many registries write times this way.
Read as plain integers, 1259 and 1300 are 41 apart and 1275 looks like a time; the encoder and
the released histograms therefore count a ``clock`` column in minutes since midnight, where
neighbouring times are one apart, and every synthetic value is written back as a real time.
"""

from __future__ import annotations

import numpy as np

#: the notations a numerical column's ``clock`` may declare
CLOCKS: tuple[str, ...] = ("HHMM",)


def is_hhmm(x: np.ndarray) -> np.ndarray:
    """Whether each value is a time of day written HHMM (a whole number 0..2359, minutes below 60)."""
    x = np.asarray(x, dtype=float)
    with np.errstate(invalid="ignore"):
        whole = np.isfinite(x) & (x == np.round(x))
        return whole & (x >= 0) & (x <= 2359) & (np.mod(x, 100) < 60)


def to_minutes(x: np.ndarray) -> np.ndarray:
    """HHMM -> minutes since midnight (floats; NaN stays NaN)."""
    x = np.asarray(x, dtype=float)
    return np.floor(x / 100.0) * 60.0 + np.mod(x, 100.0)


def from_minutes(m: np.ndarray) -> np.ndarray:
    """Minutes since midnight -> HHMM, rounded to the whole minute (floats; NaN stays NaN)."""
    m = np.round(np.asarray(m, dtype=float))
    return np.floor(m / 60.0) * 100.0 + np.mod(m, 60.0)
