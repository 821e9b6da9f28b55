"""The units a numerical or datetime column is counted in: one place for the encoder and the histograms.

The encoder's bins (:mod:`fedsynth.common.data.encoding`) and the released histograms
(:mod:`fedsynth.common.data.histogram`) lay a column out on the same line: days since 1970-01-01
for a datetime (:mod:`fedsynth.common.data.days`), minutes since midnight for a ``clock`` column
(:mod:`fedsynth.common.data.clock`), the values themselves otherwise. The encoder places its bins
at the histogram's released quantiles, so the two must never disagree on that line; both convert
here. The way back is :func:`fedsynth.common.data.encoding.as_declared`, which also
applies grids, integer types and decimals.

A datetime whose format writes a time of day (a timestamp) is laid out as two *parts*
(:data:`PARTS`): its ``"day"`` (whole days since 1970-01-01, as a date column is) and its
``"time"`` of day (minutes since midnight, as a ``clock`` is). On one line of days, a bin over
two years spans days, and the hours inside it come out flat: stops, admissions and trades lose
their daily rhythm. :func:`join_part` puts a part's values back into the column's days.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fedsynth.common.data.clock import to_minutes
from fedsynth.common.data.days import is_date_only, to_days
from fedsynth.common.data.schema import Column

#: the parts a timestamp is laid out in: whole days, and minutes since midnight
PARTS: tuple[str, ...] = ("day", "time")
MINUTES_PER_DAY = 1440.0


def parts_of(column: Column) -> tuple[str, ...]:
    """The parts ``column`` is laid out in: :data:`PARTS` for a datetime whose format writes a time
    of day (or declares none: pandas then reads times too), ``("",)`` (the whole value) otherwise."""
    if column.type == "datetime" and not is_date_only(column.datetime_format):
        return PARTS
    return ("",)


def in_units(values: pd.Series | np.ndarray | Sequence, *, datetime: bool = False, clock: bool = False,
             part: str = "") -> np.ndarray:
    """``values`` as floats in their column's units (days for a ``datetime``, minutes for a
    ``clock``, themselves otherwise), or in a datetime ``part``'s (whole days, minutes since
    midnight); missing -> NaN."""
    if datetime:
        days = to_days(pd.Series(values))
        if part == "day":
            return np.floor(days)
        if part == "time":
            return (days - np.floor(days)) * MINUTES_PER_DAY
        return days
    x = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return to_minutes(x) if clock else x


def to_units(column: Column, values: pd.Series | np.ndarray | Sequence, part: str = "") -> np.ndarray:
    """``values`` of ``column`` (typed, as read; or its bounds and point masses as the schema
    writes them) in the column's units, or in its ``part``'s."""
    return in_units(values, datetime=column.type == "datetime", clock=bool(column.clock), part=part)


def bounds_in_units(column: Column, part: str = "") -> tuple[float, float]:
    """The column's public bounds (``min``, ``max``) in its units, or its ``part``'s: a timestamp's
    days run from its first bound's day to its last's, its times over the whole day.

    A datetime's bounds are parsed one by one: a draft writes ``2017-01-01`` and
    ``2018-12-31T23:59:59``, and pandas parses a column of texts in the first one's format."""
    if part == "time":
        return 0.0, MINUTES_PER_DAY
    bounds = [column.min, column.max]
    if column.type == "datetime":
        bounds = [pd.Timestamp(b) for b in bounds]
    lo, hi = to_units(column, bounds, part)
    return float(lo), float(hi)


def part_label(column: str, part: str) -> str:
    """How a part is named where it stands beside whole columns (the marginal fit's pairs, the
    report's columns): ``stopped (time of day)``; the day, or a whole value, is the column."""
    return f"{column} (time of day)" if part == "time" else column


def from_parts(column: Column, day: np.ndarray, minutes: np.ndarray) -> np.ndarray:
    """A timestamp's days from its parts: ``day`` rounded to a whole day, ``minutes`` kept inside
    that day (up to 23:59:59), the sum inside the column's bounds; NaN where either is missing."""
    minutes = np.clip(np.asarray(minutes, dtype=float), 0.0, MINUTES_PER_DAY - 1.0 / 60.0)
    return np.clip(np.round(day) + minutes / MINUTES_PER_DAY, *bounds_in_units(column))


def join_part(column: Column, values: pd.Series | np.ndarray | Sequence, part: str,
              part_values: np.ndarray) -> np.ndarray:
    """``values`` of ``column`` in its units with their ``part`` replaced by ``part_values``: a day
    keeps its time of day, a time of day its day (:func:`from_parts`). ``""``: the part is the
    whole value."""
    part_values = np.asarray(part_values, dtype=float)
    if part == "day":
        return from_parts(column, part_values, to_units(column, values, "time"))
    if part == "time":
        return from_parts(column, to_units(column, values, "day"), part_values)
    return part_values
