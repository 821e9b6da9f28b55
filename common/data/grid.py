"""A numerical column's public grid: the only values it can hold, ``origin + k * step`` or a
declared list of levels.

Many measured columns are unit conversions of a coarser reading: wind reported in whole knots
and written in mph (steps of 1.150779448), temperatures read in tenths of a degree Celsius and
written in Fahrenheit (steps of 0.18 from 32), pressure in tenths of a millibar. A continuous
synthetic value between two grid points is a value no real row holds, and a classifier tells
such rows apart at once. A schema that states the grid (``step``, ``step_origin``) gets one
histogram cell per grid value (:mod:`fedsynth.common.data.histogram`), so calibrated sampling
puts every value on the grid, and rows read off the grid are refused like any bad cell.

Some columns hold a few values on no regular grid: codes (a coinsurance rate of 0, 25, 50 or 95 %
stored as its logarithm), the answers a form offers, visibility read as 1/4, 1/2, 1, 2, ... miles.
A schema lists them as ``values``: :class:`Levels`, with the same interface as :class:`Grid`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_GRID_VALUES = 2048  # cells of a grid's histogram; an exact integer histogram's limit too
# A text within this share of a step of a grid value is on it: tables write 13 knots as 14.96 mph.
TOLERANCE = 0.01
_FUZZ = 1e-9  # of a step: float rounding of (bound - origin) / step
_DIGITS = 10  # grid values are written rounded here, so 32 + 0.18 * 39 is 39.02, not 39.019999999999996


class _Snapping:
    """What a grid and a list of levels share: moving values onto their nearest allowed value."""

    def values(self) -> np.ndarray:
        raise NotImplementedError

    def index(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def snap(self, x: np.ndarray) -> np.ndarray:
        """Values moved to their nearest allowed value (within the bounds); NaN stays NaN."""
        x = np.asarray(x, dtype=float)
        out = x.copy()
        present = ~np.isnan(x)
        out[present] = self.values()[self.index(x[present])]
        return out


@dataclass(frozen=True)
class Grid(_Snapping):
    """The grid values ``origin + k * step`` for ``k`` from ``first`` to ``last`` (within the bounds)."""

    step: float
    origin: float
    first: int
    last: int

    @classmethod
    def within(cls, step: float, origin: float, lo: float, hi: float) -> Grid:
        """The grid's values between the bounds ``lo`` and ``hi`` (a bound on the grid up to
        float rounding, such as 32 + 0.18 x 433 = 109.94, is inside)."""
        first = math.ceil((lo - origin) / step - _FUZZ)
        last = math.floor((hi - origin) / step + _FUZZ)
        return cls(step, origin, first, last)

    @property
    def size(self) -> int:
        return max(0, self.last - self.first + 1)

    def values(self) -> np.ndarray:
        return np.round(self.origin + np.arange(self.first, self.last + 1) * self.step, _DIGITS)

    def index(self, x: np.ndarray) -> np.ndarray:
        """Each value's nearest grid value, as an index into :meth:`values` (NaN must be removed first)."""
        k = np.rint((np.asarray(x, dtype=float) - self.origin) / self.step)
        return np.clip(k, self.first, self.last).astype(np.int64) - self.first

    def off(self, x: np.ndarray) -> np.ndarray:
        """Which (finite) values lie further than the tolerance from every grid value."""
        x = np.asarray(x, dtype=float)
        k = np.rint((x - self.origin) / self.step)
        return np.abs(x - (self.origin + k * self.step)) > TOLERANCE * self.step

    def extent(self) -> tuple[np.ndarray, np.ndarray]:
        """The stretch of the line each grid value stands for: half a step either side."""
        v = self.values()
        return v - self.step / 2, v + self.step / 2

    def describe(self) -> str:
        return f"the grid of step {self.step:g}" + (f" from {self.origin:g}" if self.origin else "")


@dataclass(frozen=True)
class Levels(_Snapping):
    """A declared, ascending list of the only values a column holds (at least two)."""

    levels: tuple[float, ...]

    @property
    def size(self) -> int:
        return len(self.levels)

    def values(self) -> np.ndarray:
        return np.asarray(self.levels, dtype=float)

    def index(self, x: np.ndarray) -> np.ndarray:
        """Each value's nearest level, as an index into :meth:`values` (NaN must be removed first)."""
        v = self.values()
        x = np.asarray(x, dtype=float)
        right = np.clip(np.searchsorted(v, x), 1, len(v) - 1)
        return np.where(np.abs(x - v[right - 1]) <= np.abs(v[right] - x), right - 1, right).astype(np.int64)

    def off(self, x: np.ndarray) -> np.ndarray:
        """Which (finite) values lie further than the tolerance (a share of the smallest gap
        between two levels) from every level."""
        x = np.asarray(x, dtype=float)
        v = self.values()
        return np.abs(x - v[self.index(x)]) > TOLERANCE * float(np.diff(v).min())

    def extent(self) -> tuple[np.ndarray, np.ndarray]:
        """The stretch of the line each level stands for: up to halfway to its neighbours (the
        outer ones as far out as in)."""
        v = self.values()
        mid = (v[1:] + v[:-1]) / 2
        return (np.concatenate([[2 * v[0] - mid[0]], mid]), np.concatenate([mid, [2 * v[-1] - mid[-1]]]))

    def describe(self) -> str:
        return f"the {self.size} values"
