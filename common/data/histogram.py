"""A numerical column's public histogram layout, and the map that gives a sample its shape.

The encoder's coarse bins carry a continuous offset that DP-SGD's noise smears:
synthetic ages, hours and weights come out with the right ranks but the wrong shape. A fine
histogram of each numerical column, released once with the category counts (one Gaussian
release, :func:`fedsynth.common.dp.accounting.noisy_counts`; summed across institutions
through SecAgg+), fixes the shape by post-processing: :meth:`NumericHistogram.quantile_map`
moves each synthetic value to the same quantile of the noisy histogram, which keeps the
sample's order within the column (so its relations to the other columns) and replaces its
marginal by the released one. The same release places the encoder's bins
(:meth:`NumericHistogram.bin_edges`).

The layout is public, from the schema alone, so every party counts into the same cells:

* an integer column with at most :data:`MAX_EXACT_VALUES` values, or a column with a declared
  grid or list of values (:mod:`fedsynth.common.data.grid`): one cell per value;
* otherwise a cell per declared point mass plus :data:`FINE_BINS` equal bins on the column's
  scale (linear, or log as the encoder uses it), split at the point masses; a datetime
  column is counted in days between its bounds (a timestamp in two histograms, one of its
  days and one of its times of day: :func:`fedsynth.common.data.units.parts_of`), a ``clock``
  column in minutes since midnight
  (:mod:`fedsynth.common.data.clock`; in bins, not minute by minute: a day's 1,440 cells would
  release the mass of each stretch of the day with the noise of as many cells, docs/benchmarks.md);
* a cell for missing values when the column is nullable (never mapped: the model's missing
  rate stands), so that every block counts each row once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedsynth.common.data.grid import MAX_GRID_VALUES, Grid, Levels
from fedsynth.common.data.schema import Column, Schema
from fedsynth.common.data.units import bounds_in_units, in_units, parts_of, to_units

MAX_EXACT_VALUES = MAX_GRID_VALUES  # ages, hours, minutes of delay, degrees: counted value by value
FINE_BINS = 256  # chosen by the table suite's mean (docs/benchmarks.md)
UNIFORM_SHARE = 0.05  # of the mass measured bins spread evenly (NumericHistogram.bin_edges); 0.25 measured worse (docs/benchmarks.md)


@dataclass(frozen=True)
class NumericHistogram:
    """The cells of one numerical column's released histogram (see the module docstring)."""

    column: str
    atoms: tuple[float, ...]  # exact values with a cell of their own, ascending
    edges: tuple[float, ...]  # bin edges on the column's scale (empty: atoms only)
    lo: float
    hi: float
    log: bool
    integer: bool
    nullable: bool
    datetime: bool = False  # values are days (fedsynth.common.data.days)
    clock: bool = False  # values are minutes since midnight (fedsynth.common.data.clock)
    grid: Grid | Levels | None = None  # the declared grid or values that are the atoms
    part: str = ""  # a timestamp's "day" or "time" of day (fedsynth.common.data.units.PARTS); "": the value

    def atom_extent(self) -> tuple[np.ndarray, np.ndarray]:
        """The stretch of the line each atom stands for: its grid's or levels' (:meth:`Grid.extent`),
        else half a unit either side (an exact integer layout's values; a point mass)."""
        if self.grid is not None:
            return self.grid.extent()
        atoms = np.asarray(self.atoms, dtype=float)
        return atoms - 0.5, atoms + 0.5

    @classmethod
    def for_column(cls, col: Column, part: str = "") -> NumericHistogram:
        """The layout of ``col``'s histogram, or of its ``part``'s (a timestamp's, :func:`parts_of`)."""
        lo, hi = bounds_in_units(col, part)
        if col.type == "datetime":
            edges = tuple(np.linspace(lo, hi, FINE_BINS + 1))
            # a timestamp's days are whole: mapped into a bin, a day is rounded as an integer's value is
            return cls(col.name, (), edges, lo, hi, False, part == "day", col.nullable, datetime=True, part=part)
        integer, log = col.subtype == "int", col.scale == "log"
        masses = to_units(col, col.point_masses)
        if col.grid is not None:  # the schema bounds its size by MAX_GRID_VALUES
            return cls(col.name, tuple(col.grid.values()), (), lo, hi, log, integer, col.nullable, grid=col.grid)
        if integer and not col.clock and np.floor(hi) - np.ceil(lo) + 1 <= MAX_EXACT_VALUES:
            # (a clock, an int column in minutes, is binned: docs/benchmarks.md, "Times of day")
            return cls(col.name, tuple(np.arange(np.ceil(lo), np.floor(hi) + 1)), (), lo, hi, log, integer,
                       col.nullable)
        atoms = tuple(sorted({float(p) for p in masses if lo <= p <= hi}))
        t = _scale(np.array([lo, hi]), lo, log)
        edges = np.union1d(np.linspace(t[0], t[1], FINE_BINS + 1), _scale(np.array(atoms), lo, log))
        return cls(col.name, atoms, tuple(edges), lo, hi, log, integer, col.nullable, clock=bool(col.clock))

    @property
    def bins(self) -> int:
        return max(0, len(self.edges) - 1)

    @property
    def size(self) -> int:
        return len(self.atoms) + self.bins + int(self.nullable)

    @property
    def ordered(self) -> slice:
        """The cells in value order whose mass the noisy counts spread (see
        :func:`fedsynth.common.dp.accounting.halving_split`): the bins, after the atoms; an exact
        integer layout's values, which are all atoms."""
        if self.bins == 0:
            return slice(0, len(self.atoms))
        return slice(len(self.atoms), len(self.atoms) + self.bins)

    def values(self, column: pd.Series) -> np.ndarray:
        """A typed column as the floats the cells are laid out on (days for datetimes, whole days or
        minutes since midnight for a timestamp's parts, minutes for a ``clock`` column; NaN = missing)."""
        return in_units(column, datetime=self.datetime, clock=self.clock, part=self.part)

    def counts(self, values: pd.Series) -> np.ndarray:
        """Exact counts of ``values`` (typed, within bounds) in the layout's cells: atoms, bins, missing."""
        x = self.values(values)
        missing = np.isnan(x)
        out = np.zeros(self.size)
        atom = np.full(len(x), -1)
        if self.grid is not None:  # read as on the grid up to the texts' rounding (cells.coerce)
            atom[~missing] = self.grid.index(x[~missing])
        else:
            for j, a in enumerate(self.atoms):
                atom[~missing & (x == a)] = j
        out[: len(self.atoms)] = np.bincount(atom[atom >= 0], minlength=len(self.atoms))
        rest = ~missing & (atom < 0)
        if self.bins:
            b = np.searchsorted(np.asarray(self.edges), _scale(np.clip(x[rest], self.lo, self.hi), self.lo, self.log),
                                side="right") - 1
            out[len(self.atoms) : len(self.atoms) + self.bins] = np.bincount(np.clip(b, 0, self.bins - 1),
                                                                             minlength=self.bins)
        if self.nullable:
            out[-1] = missing.sum()
        return out

    def quantile_map(self, values: np.ndarray, freqs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``values`` (NaN = missing, left alone) moved to the same quantiles of ``freqs`` (this
        layout's cells, nonnegative). Ties are broken at random, so a value repeated by the
        model (a point mass) can spread over neighbouring cells when the histogram says so."""
        x = np.asarray(values, dtype=float).copy()
        present = ~np.isnan(x)
        m = int(present.sum())
        mass = np.clip(np.asarray(freqs, dtype=float)[: len(self.atoms) + self.bins], 0.0, None)
        if m == 0 or mass.sum() <= 0:
            return x
        # cells in value order: an atom sits on a bin edge and comes before the bin it starts;
        # an atom's left and right are its value, a bin's its edges on the column's scale
        t_edges = np.asarray(self.edges)
        atoms = np.asarray(self.atoms, dtype=float)
        position = np.concatenate([_scale(atoms, self.lo, self.log), t_edges[:-1]])
        is_bin = np.concatenate([np.zeros(len(atoms), dtype=bool), np.ones(self.bins, dtype=bool)])
        order = np.lexsort((is_bin, position))
        left = np.concatenate([atoms, t_edges[:-1]])[order]
        right = np.concatenate([atoms, t_edges[1:]])[order]
        is_bin = is_bin[order]
        cum = np.concatenate([[0.0], np.cumsum(mass[order])]) / mass.sum()
        ranks = np.empty(m)
        ranks[np.lexsort((rng.random(m), x[present]))] = (np.arange(m) + 0.5) / m
        k = np.clip(np.searchsorted(cum, ranks, side="right") - 1, 0, len(order) - 1)
        frac = np.clip((ranks - cum[k]) / np.maximum(cum[k + 1] - cum[k], 1e-12), 0.0, 1.0)
        inside = _unscale(left[k] + frac * (right[k] - left[k]), self.lo, self.log)  # within the bin, on its scale
        out = np.where(is_bin[k], np.round(inside) if self.integer else inside, left[k])
        x[present] = np.clip(out, self.lo, self.hi)
        return x

    def bin_edges(self, freqs: np.ndarray, k: int, separate: tuple[float, ...] = ()) -> np.ndarray:
        """``k + 1`` increasing edges on the column's scale between its bounds that split the
        released mass ``freqs`` (this layout's cells) into ``k`` bins of nearly equal mass: the
        encoder's measured bins (:class:`fedsynth.common.data.encoding.TableEncoder`).

        Values in ``separate`` (the encoder's point masses, tokens of their own) are left out;
        an atom of an exact integer, grid or levels layout spreads over its :meth:`atom_extent`, a bin over its width.
        A :data:`UNIFORM_SHARE` of the mass is spread evenly over the range, so that edges never
        coincide and an empty stretch of the range still gets some resolution. Pure
        post-processing of the release: every party holding ``freqs`` derives the same edges."""
        t_lo, t_hi = _scale(np.array([self.lo, self.hi]), self.lo, self.log)
        atoms = np.asarray(self.atoms, dtype=float)
        mass = np.clip(np.asarray(freqs, dtype=float)[: len(atoms) + self.bins], 0.0, None).copy()
        mass[: len(atoms)][np.isin(atoms, np.asarray(separate, dtype=float))] = 0.0
        a_left, a_right = (_scale(np.clip(a, self.lo, self.hi), self.lo, self.log) for a in self.atom_extent())
        t_edges = np.asarray(self.edges, dtype=float)
        left = np.concatenate([a_left, t_edges[:-1]])
        right = np.concatenate([a_right, t_edges[1:]])
        # the cumulative mass at every cell boundary, each cell's mass spread evenly over its extent
        points = np.union1d(np.concatenate([left, right]), [t_lo, t_hi])
        cdf = np.zeros(len(points))
        for m, a, b in zip(mass, left, right):
            if m > 0:
                cdf += m * (np.clip((points - a) / (b - a), 0.0, 1.0) if b > a else (points >= a))
        uniform = (points - t_lo) / (t_hi - t_lo)
        cdf = (1.0 - UNIFORM_SHARE) * cdf / cdf[-1] + UNIFORM_SHARE * uniform if cdf[-1] > 0 else uniform
        edges = np.interp(np.linspace(0.0, 1.0, k + 1), cdf, points)
        edges[0], edges[-1] = t_lo, t_hi
        return edges


def _scale(x: np.ndarray, lo: float, log: bool) -> np.ndarray:
    return np.log1p(x - lo) if log else x  # the encoder's transform: log(x - lo + 1)


def _unscale(t: np.ndarray, lo: float, log: bool) -> np.ndarray:
    return np.expm1(t) + lo if log else t


def histograms_for(schema: Schema) -> list[NumericHistogram]:
    """The released histograms of every numerical and datetime column, in schema order (a
    timestamp's day, then its time of day)."""
    return [NumericHistogram.for_column(c, part) for c in schema.columns if c.type in ("numerical", "datetime")
            for part in parts_of(c)]
