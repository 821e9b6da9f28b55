"""Constraints a draft suggests from the owner's own rows, for the owner to review.

Conservative on purpose: only rules every row keeps *and* that are not trivially true.

* ``FixedCombinations`` for two discrete columns (categorical, boolean, integer) whose values
  pair one-to-one (education and education-num), each with 2 to :data:`MAX_PAIRS` values,
  every pair seen at least :data:`MIN_ROWS_PER_PAIR` times;
* ``Inequality`` for two numerical (or two datetime) columns where one is never above the
  other although the columns' own values would often break the rule if paired at random (a
  start and an end date; at least :data:`MIN_BREAKING_SHARE` of random pairings), on at least
  :data:`MIN_ROWS` rows. A rule that holds only because the two ranges lie (almost) apart,
  such as a temperature below a flight's distance, is not suggested.

The combinations are read off private rows: the draft's warnings say so, constraint by
constraint, so the owner keeps only rules that are public knowledge.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from fedsynth.common.data.constraints import Constraint, FixedCombinations, Inequality
from fedsynth.common.data.schema import Column, Schema

MAX_PAIRS = 50
MIN_ROWS_PER_PAIR = 5
MIN_ROWS = 30
MIN_BREAKING_SHARE = 0.01


def suggest_constraints(typed: pd.DataFrame, schema: Schema) -> tuple[tuple[Constraint, ...], list[str]]:
    """(constraints the rows show, one warning for each) for a typed table of ``schema``'s columns."""
    found: list[Constraint] = []
    discrete = [c for c in schema.columns if _discrete(c)]
    for a, b in combinations(discrete, 2):
        fixed = _one_to_one(typed, a, b)
        if fixed is not None:
            found.append(fixed)
    for kind in ("numerical", "datetime"):
        ordered = [c for c in schema.columns if c.type == kind]
        for a, b in combinations(ordered, 2):
            ineq = _never_above(typed, a.name, b.name)
            if ineq is not None:
                found.append(ineq)
    notes = [f"suggested constraint {_said(c)}, read off private rows: keep it only if it is a public rule "
             "(documentation, a code list), and review the combinations before sharing" for c in found]
    return tuple(found), notes


def _discrete(col: Column) -> bool:
    return col.type in ("categorical", "boolean") or (col.type == "numerical" and col.subtype == "int")


def _one_to_one(typed: pd.DataFrame, a: Column, b: Column) -> FixedCombinations | None:
    pairs = typed[[a.name, b.name]].dropna()
    if len(pairs) < len(typed) or pairs[a.name].nunique() > MAX_PAIRS:  # missing cells: no suggestion
        return None
    counts = pairs.value_counts()
    if not (2 <= len(counts) <= MAX_PAIRS) or counts.min() < MIN_ROWS_PER_PAIR:
        return None
    if len(counts) != pairs[a.name].nunique() or len(counts) != pairs[b.name].nunique():
        return None
    combos = sorted(((_public(x, a), _public(y, b)) for x, y in counts.index), key=str)
    return FixedCombinations((a.name, b.name), tuple(combos))


def _public(value: object, col: Column) -> object:
    """A cell as the combination holds it (float for integers, bool, str)."""
    if col.type == "numerical":
        return float(value)  # type: ignore[arg-type]
    if col.type == "boolean":
        return bool(value)
    return str(value)


def _never_above(typed: pd.DataFrame, a: str, b: str) -> Inequality | None:
    both = typed[[a, b]].dropna()
    if len(both) < MIN_ROWS:
        return None
    x, y = _as_float(both[a]), _as_float(both[b])
    for low, high, lo_name, hi_name in ((x, y, a, b), (y, x, b, a)):
        if (low <= high).all() and (low < high).any() and _breaking_share(low, high) >= MIN_BREAKING_SHARE:
            return Inequality(lo_name, hi_name, strict_boundaries=bool((low < high).all()))
    return None


def _breaking_share(low: np.ndarray, high: np.ndarray) -> float:
    """Share of all (low value, high value) pairings, the columns paired at random, in which the
    low one is above: near 0 when the rule follows from the columns' ranges alone."""
    ordered = np.sort(high)
    return float(np.searchsorted(ordered, low, side="left").mean() / len(ordered))


def _as_float(s: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.astype("int64").to_numpy(dtype=float)
    return s.to_numpy(dtype=float)


def _said(c: Constraint) -> str:
    if isinstance(c, FixedCombinations):
        return f"FixedCombinations({', '.join(c.column_names)}) with {len(c.combinations)} combinations"
    return f"Inequality({c.low_column_name} {'<' if c.strict_boundaries else '<='} {c.high_column_name})"
