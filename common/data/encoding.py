"""Reversible encoding of a table into model space, laid out from the public schema alone.

No statistic of private rows is fitted here: the layout depends only on the schema, so every
party derives the identical encoder and a model trained on one silo's encoding is valid on
every other. Where the bins of a numerical column lie is the schema's (equal-width), or, by
default, measured: split at equal masses of the column's released DP histogram
(:meth:`TableEncoder.measured`), post-processing that every holder of the release repeats
exactly. This is the DP analogue of CTGAN's mode-specific normalisation:

* categoricals and booleans: one-hot (plus a "missing" slot when the column is nullable);
* small integer domains (``max - min < 32``, e.g. education-num): one-hot over every value,
  decoded exactly;
* other numericals (datetimes as days, ``clock`` times of day as minutes since midnight): a *token* chosen among missing / declared
  point masses / ``bins`` bins on the column's scale (linear or log),
  plus a continuous offset in [-1, 1] locating the value inside its bin. Decoding maps the
  offset back inside the bin, so values look like real values (``capital-gain`` gets its
  exact zeros and a continuous, log-shaped tail), never bin midpoints;
* timestamps (a datetime whose format writes a time of day): that layout twice, once for the
  day and once for the time of day (:func:`fedsynth.common.data.units.parts_of`), so that the
  model can learn the hours of the day and their relations to the other columns.

Decoding always respects bounds, integer subtypes and category lists exactly, and returns
the column's declared form in Python: integer columns as ``int64`` (``Int64`` when nullable,
whether or not a given sample has a gap), floats rounded to their ``decimals``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from fedsynth.common.data.clock import from_minutes
from fedsynth.common.data.days import from_days, is_date_only
from fedsynth.common.data.histogram import histograms_for
from fedsynth.common.data.schema import Column, Schema
from fedsynth.common.data.units import bounds_in_units, from_parts, part_label, parts_of, to_units

MISSING = "__missing__"
_EPS = 1e-9


@dataclass(frozen=True)
class Segment:
    """A slice of the encoded vector and how a model should produce it.

    ``softmax`` segments are one-hot targets (trained with cross-entropy, sampled from a
    categorical). ``offset`` segments are a single value in [-1, 1] that only matters when
    the token of the preceding softmax segment is a bin (index >= ``bins_from``).
    """

    column: str
    kind: Literal["softmax", "offset"]
    start: int
    end: int
    bins_from: int = 0  # for offset segments: first token index (in the parent) that is a bin
    conditionable: bool = False  # categorical/boolean softmax: usable as a sampling condition
    part: str = ""  # a timestamp's "day" or "time" of day (fedsynth.common.data.units.PARTS)

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def label(self) -> str:
        """The column's name, with the part it lays out: ``stop (time of day)``."""
        return part_label(self.column, self.part)


class _ColumnCodec:
    """Encode/decode one column; subclasses per layout."""

    column: Column
    tokens: list[object]

    def width(self) -> int:
        raise NotImplementedError

    def segments(self, start: int) -> list[Segment]:
        raise NotImplementedError

    def encode(self, s: pd.Series) -> np.ndarray:
        raise NotImplementedError

    def decode(self, block: np.ndarray, rng: np.random.Generator) -> pd.Series:
        raise NotImplementedError


class _OneHot(_ColumnCodec):
    """Categorical, boolean and small-integer columns."""

    def __init__(self, column: Column) -> None:
        self.column = column
        if column.type == "categorical":
            values: list[object] = list(column.categories or ())
        elif column.type == "boolean":
            values = [False, True]
        else:  # small integer domain
            values = list(range(int(column.min), int(column.max) + 1))  # type: ignore[arg-type]
        self.values = values
        self.tokens = values + ([MISSING] if column.nullable else [])

    def width(self) -> int:
        return len(self.tokens)

    def segments(self, start: int) -> list[Segment]:
        cond = self.column.type in ("categorical", "boolean")
        return [Segment(self.column.name, "softmax", start, start + self.width(), conditionable=cond)]

    def index_of(self, s: pd.Series) -> np.ndarray:
        missing = s.isna().to_numpy()
        idx = np.zeros(len(s), dtype=np.int64)
        if self.column.type == "categorical":
            lookup = {v: i for i, v in enumerate(self.values)}
            idx[~missing] = s[~missing].map(lookup).to_numpy(dtype=np.int64)
        elif self.column.type == "boolean":
            idx[~missing] = s[~missing].astype(bool).to_numpy().astype(np.int64)
        else:
            idx[~missing] = np.round(s[~missing].to_numpy(dtype=float)).astype(np.int64) - int(self.column.min)  # type: ignore[arg-type]
        idx[missing] = len(self.values)
        return idx

    def encode(self, s: pd.Series) -> np.ndarray:
        out = np.zeros((len(s), self.width()), dtype=np.float32)
        out[np.arange(len(s)), self.index_of(s)] = 1.0
        return out

    def decode(self, block: np.ndarray, rng: np.random.Generator) -> pd.Series:
        idx = block.argmax(axis=1)
        if self.column.type == "numerical":
            vals = np.array([np.nan if i >= len(self.values) else float(self.values[i]) for i in idx])
            return as_declared(vals, self.column)
        decoded = [None if i >= len(self.values) else self.values[i] for i in idx]
        return pd.Series(decoded, name=self.column.name, dtype=object)


class _Binned(_ColumnCodec):
    """Continuous numericals and datetimes: token (missing / point mass / bin) + offset.

    ``part``: a timestamp's day or time of day alone (:class:`_Timestamp`); its
    :meth:`encode` and :meth:`decode_units` work on that part's values (whole days, minutes)."""

    def __init__(self, column: Column, edges: Sequence[float] | np.ndarray | None = None, part: str = "") -> None:
        self.column, self.part = column, part
        self.lo, self.hi = bounds_in_units(column, part)
        self.log = column.type != "datetime" and column.scale == "log"
        # a timestamp's declared point masses are days; its time of day has none, and no missing
        # token either (the day's stands for the whole value)
        self.point_masses = [] if part == "time" else [float(p) for p in to_units(column, column.point_masses, part)]
        self.nullable = column.nullable and part != "time"
        self.k = column.bins
        t0, t1 = self._t(np.array([self.lo, self.hi]))
        self.edges = np.linspace(t0, t1, self.k + 1) if edges is None else _checked_edges(column, edges, t0, t1)
        self.widths = np.diff(self.edges)
        self.tokens = ([MISSING] if self.nullable else []) + self.point_masses + [f"bin{i}" for i in range(self.k)]
        self.bins_from = len(self.tokens) - self.k

    @property
    def parts(self) -> tuple[_Binned, ...]:
        """The binned parts of this column: itself (a :class:`_Timestamp` has two)."""
        return (self,)

    # scale transform: log(x - lo + 1) keeps the lower bound at 0 and works for lo <= 0
    def _t(self, x: np.ndarray) -> np.ndarray:
        return np.log1p(x - self.lo) if self.log else x

    def _t_inv(self, t: np.ndarray) -> np.ndarray:
        return np.expm1(t) + self.lo if self.log else t

    def width(self) -> int:
        return len(self.tokens) + 1

    def segments(self, start: int) -> list[Segment]:
        n = len(self.tokens)
        return [
            Segment(self.column.name, "softmax", start, start + n, part=self.part),
            Segment(self.column.name, "offset", start + n, start + n + 1, bins_from=self.bins_from, part=self.part),
        ]

    def encode(self, s: pd.Series) -> np.ndarray:
        return self.encode_units(to_units(self.column, s, self.part))

    def encode_units(self, x: np.ndarray) -> np.ndarray:
        """Values in the column's (or part's) units, NaN = missing, -> this codec's block."""
        n = len(x)
        out = np.zeros((n, self.width()), dtype=np.float32)
        token = np.full(n, -1, dtype=np.int64)
        missing = np.isnan(x)
        if self.nullable:
            token[missing] = 0
        offset_base = 1 if self.nullable else 0
        for j, pm in enumerate(self.point_masses):
            hit = (token < 0) & ~missing & (np.abs(x - pm) < _EPS)
            token[hit] = offset_base + j
        cont = token < 0
        t = self._t(np.clip(np.where(cont, x, self.lo), self.lo, self.hi))
        b = np.clip(np.searchsorted(self.edges, t, side="right") - 1, 0, self.k - 1)
        frac = np.clip((t - self.edges[b]) / np.maximum(self.widths[b], _EPS), 0.0, 1.0)
        token[cont] = self.bins_from + b[cont]
        out[np.arange(n), token] = 1.0
        out[:, -1] = np.where(cont, 2.0 * frac - 1.0, 0.0)
        return out

    def decode(self, block: np.ndarray, rng: np.random.Generator) -> pd.Series:
        return as_declared(self.decode_units(block), self.column)

    def decode_units(self, block: np.ndarray) -> np.ndarray:
        """This codec's block -> values in the column's (or part's) units, NaN = missing."""
        token = block[:, :-1].argmax(axis=1)
        offset = np.clip(block[:, -1], -1.0, 1.0)
        b = np.clip(token - self.bins_from, 0, self.k - 1)
        t = self.edges[b] + (offset + 1.0) / 2.0 * self.widths[b]
        x = np.clip(self._t_inv(t), self.lo, self.hi)
        offset_base = 1 if self.nullable else 0
        for j, pm in enumerate(self.point_masses):
            x = np.where(token == offset_base + j, pm, x)
        if self.nullable:
            x = np.where(token == 0, np.nan, x)
        if self.column.subtype == "int":
            x = np.where(np.isnan(x), np.nan, np.clip(np.round(x), np.ceil(self.lo), np.floor(self.hi)))
        return x


class _Timestamp(_ColumnCodec):
    """A datetime that writes a time of day: its day and its time of day, each binned as a
    :class:`_Binned` (the day's codec holds the missing token). Its bin edges travel as one
    sequence, the day's then the time's, so that a mapping of column -> edges stays one entry
    per column on the wire and on disk."""

    def __init__(self, column: Column, edges: Sequence[float] | np.ndarray | None = None) -> None:
        self.column = column
        day_edges = time_edges = None
        if edges is not None:
            e = np.asarray(edges, dtype=float)
            if e.shape != (2 * (column.bins + 1),):
                raise ValueError(f"column {column.name!r}: a timestamp's bin edges are {column.bins + 1} for its days "
                                 f"then {column.bins + 1} for its times of day, got {e.size} values")
            day_edges, time_edges = e[: column.bins + 1], e[column.bins + 1 :]
        self.parts = (_Binned(column, day_edges, "day"), _Binned(column, time_edges, "time"))
        self.tokens = self.parts[0].tokens + self.parts[1].tokens

    @property
    def edges(self) -> np.ndarray:
        return np.concatenate([p.edges for p in self.parts])

    def width(self) -> int:
        return sum(p.width() for p in self.parts)

    def segments(self, start: int) -> list[Segment]:
        day, time = self.parts
        return day.segments(start) + time.segments(start + day.width())

    def encode(self, s: pd.Series) -> np.ndarray:
        day, time = (to_units(self.column, s, p.part) for p in self.parts)
        # a missing value's time of day is never decoded (the day's token says missing): midnight
        return np.concatenate([self.parts[0].encode_units(day),
                               self.parts[1].encode_units(np.where(np.isnan(time), 0.0, time))], axis=1)

    def decode(self, block: np.ndarray, rng: np.random.Generator) -> pd.Series:
        w = self.parts[0].width()
        # from_parts rounds the day: whole days, up to the offset's float32
        days = from_parts(self.column, self.parts[0].decode_units(block[:, :w]), self.parts[1].decode_units(block[:, w:]))
        return as_declared(days, self.column)


def _checked_edges(column: Column, edges: Sequence[float] | np.ndarray, t0: float, t1: float) -> np.ndarray:
    """Measured edges for ``column``, refused unless they are ``bins + 1`` increasing values from
    its lower to its upper bound on its scale: an encoding every party can rebuild, or none."""
    e = np.asarray(edges, dtype=float)
    if (e.shape != (column.bins + 1,) or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0)
            or not np.isclose(e[0], t0) or not np.isclose(e[-1], t1)):
        raise ValueError(f"column {column.name!r}: bin edges must be {column.bins + 1} increasing values from "
                         f"{t0:g} to {t1:g} on its scale, got {e.tolist()[:4]}... ({e.size} values)")
    return e


def as_declared(x: np.ndarray, column: Column) -> pd.Series:
    """Decoded numbers in the column's declared form: timestamps for datetimes (days since the
    epoch; whole days when the format writes no time of day), HHMM times for a ``clock`` column
    (minutes since midnight), values on a declared grid, an integer dtype for ints, rounded
    decimals. Both the decoder and calibrated sampling's quantile map end here."""
    if column.type == "datetime":
        if is_date_only(column.datetime_format):  # as the table writes them
            x = np.floor(x)
        return pd.Series(from_days(x), name=column.name)
    if column.clock:
        x = from_minutes(x)
    if column.grid is not None:  # the uncalibrated decoder's values too (calibrated ones are on it)
        x = column.grid.snap(x)
    if column.subtype == "int":
        dtype = "Int64" if column.nullable else "int64"
        return pd.Series(pd.array(x, dtype="Float64").astype(dtype), name=column.name)
    if column.decimals is not None:
        # rounding may step past a bound held at more places: clip to the bounds at this precision
        # (the scaled bound is rounded first so that float noise, 0.1 * 100 = 10.000000000000002, is not a step)
        scale = 10.0**column.decimals
        lo = np.ceil(np.round(float(column.min) * scale, 6)) / scale  # type: ignore[arg-type]
        hi = np.floor(np.round(float(column.max) * scale, 6)) / scale  # type: ignore[arg-type]
        x = np.clip(np.round(x, column.decimals), lo, hi)
    return pd.Series(x, name=column.name)


@dataclass(frozen=True)
class CountsLayout:
    """The one-off counts release's blocks as :class:`TableEncoder` lays them out: each block's
    cells, and per block the cells that lie in value order (a histogram's bins; None for a
    column's categories), which ``frequencies_from_counts(..., ordered=)`` spreads by halving.

    One object, so that whoever unpacks counts gets both: passed the sizes alone, a caller
    could forget the order, and the histograms would silently fall back to projection."""

    sizes: tuple[int, ...]
    ordered: tuple[slice | None, ...]

    def __post_init__(self) -> None:
        if len(self.sizes) != len(self.ordered):
            raise ValueError(f"{len(self.sizes)} block sizes but {len(self.ordered)} orderings")

    @classmethod
    def unordered(cls, sizes: list[int] | tuple[int, ...]) -> CountsLayout:
        """Blocks without value order (categories only)."""
        return cls(tuple(int(k) for k in sizes), (None,) * len(sizes))

    @property
    def total(self) -> int:
        """Cells over all blocks: the length of the flat counts vector."""
        return int(sum(self.sizes))

    def split(self, flat: np.ndarray) -> list[np.ndarray]:
        """A flat vector of :attr:`total` counts -> one array per block."""
        return np.split(np.asarray(flat), np.cumsum(self.sizes)[:-1]) if self.sizes else []


class TableEncoder:
    """Encodes a typed table (as returned by :func:`fedsynth.common.data.tables.load_table`).

    ``edges`` maps binned columns to their bin edges on the column's scale (see
    :meth:`measured`); the others get the schema's equal-width bins. The layout (every
    segment's size) is the schema's either way, so a model's shape never depends on them."""

    def __init__(self, schema: Schema, edges: Mapping[str, Sequence[float] | np.ndarray] | None = None) -> None:
        self.schema = schema
        self.binning = "measured" if edges else "schema"  # ModelConfig.binning's values
        self.codecs: list[_ColumnCodec] = []
        edges = dict(edges or {})
        for col in schema.columns:
            if col.type in ("categorical", "boolean") or col.is_discrete_int:
                self.codecs.append(_OneHot(col))
            elif parts_of(col) != ("",):
                self.codecs.append(_Timestamp(col, edges.pop(col.name, None)))
            else:
                self.codecs.append(_Binned(col, edges.pop(col.name, None)))
        if edges:
            raise ValueError(f"bin edges given for columns the encoder does not bin: {sorted(edges)}")
        self.segments: list[Segment] = []
        self._blocks: list[tuple[int, int]] = []
        pos = 0
        for codec in self.codecs:
            self.segments.extend(codec.segments(pos))
            self._blocks.append((pos, pos + codec.width()))
            pos += codec.width()
        self.dim = pos
        self.histograms = histograms_for(schema)  # released with the category counts (histogram.py)

    @classmethod
    def measured(cls, schema: Schema, marginals: list[np.ndarray]) -> TableEncoder:
        """The encoder whose bins split each binned column's released histogram (``marginals``, one
        per :attr:`histograms` entry) into nearly equal masses (:meth:`NumericHistogram.bin_edges`):
        a skewed column's tokens then each hold a similar share of rows instead of most rows
        sharing one or two equal-width bins. Post-processing of the counts release only."""
        plain = TableEncoder(schema)
        binned = {(b.column.name, b.part): b for c in plain.codecs if isinstance(c, (_Binned, _Timestamp))
                  for b in c.parts}
        hists = plain.histograms
        if len(marginals) != len(hists):
            raise ValueError(f"{len(marginals)} released histograms for the schema's {len(hists)}")
        edges: dict[str, list[np.ndarray]] = {}
        for h, f in zip(hists, marginals):  # a timestamp's day comes before its time of day
            b = binned.get((h.column, h.part))
            if b is not None:
                edges.setdefault(h.column, []).append(h.bin_edges(f, b.k, tuple(b.point_masses)))
        return cls(schema, {name: np.concatenate(e) for name, e in edges.items()})

    @property
    def bin_edges(self) -> dict[str, np.ndarray]:
        """Each binned column's edges on its scale (a timestamp's days', then its times of day's)."""
        return {c.column.name: c.edges.copy() for c in self.codecs if isinstance(c, (_Binned, _Timestamp))}

    @property
    def conditionable(self) -> list[Segment]:
        return [s for s in self.segments if s.conditionable]

    @property
    def count_sizes(self) -> list[int]:
        """Cells of each block of the one-off counts release: every conditionable column's
        categories, then every numerical and datetime column's histogram."""
        return [s.size for s in self.conditionable] + [h.size for h in self.histograms]

    @property
    def counts_layout(self) -> CountsLayout:
        """:attr:`count_sizes` with each block's cells in value order (a histogram's bins), or None."""
        return CountsLayout(tuple(self.count_sizes),
                            (None,) * len(self.conditionable) + tuple(h.ordered for h in self.histograms))

    def split_counts(self, blocks: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Blocks laid out as :attr:`count_sizes` -> (one per conditionable column, one per histogram)."""
        n = len(self.conditionable)
        return list(blocks[:n]), list(blocks[n:])

    def count_blocks(self, df: pd.DataFrame, x: np.ndarray) -> list[np.ndarray]:
        """What the counts release sums, block by block (:attr:`count_sizes`): the one-hot rows of
        each conditionable column (from the encoded ``x``), then each histogram's counts (from ``df``)."""
        return ([x[:, s.start : s.end] for s in self.conditionable]
                + [h.counts(df[h.column]) for h in self.histograms])

    def encode(self, df: pd.DataFrame) -> np.ndarray:
        return np.concatenate([c.encode(df[c.column.name]) for c in self.codecs], axis=1).astype(np.float32)

    def decode(self, x: np.ndarray, seed: int | None = None) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        cols = {c.column.name: c.decode(x[:, a:b], rng).reset_index(drop=True)
                for c, (a, b) in zip(self.codecs, self._blocks)}
        return pd.DataFrame(cols)

    def condition_index(self, column: str, value: object) -> tuple[Segment, int]:
        """Locate the one-hot slot for ``column == value``; raise with the allowed values."""
        for codec, seg in zip(self.codecs, self._first_segments()):
            if codec.column.name != column:
                continue
            if not isinstance(codec, _OneHot):
                raise ValueError(f"column {column!r} is numerical; conditions need a categorical or boolean column")
            for i, v in enumerate(codec.tokens):
                if str(v) == str(value) or (codec.column.type == "boolean" and str(v).lower() == str(value).lower()):
                    return seg, i
            raise ValueError(f"value {value!r} is not a category of column {column!r} (allowed: {codec.tokens})")
        raise ValueError(f"column {column!r} is not in the schema")

    def _first_segments(self) -> list[Segment]:
        return [next(s for s in self.segments if s.column == c.column.name) for c in self.codecs]
