"""Constraints between columns: rules every row must keep, named as SDV names them.

A schema may carry a ``constraints`` list in SDV's own spelling::

    {"constraint_class": "Inequality",
     "constraint_parameters": {"low_column_name": "start", "high_column_name": "end"}}

Like bounds and category lists, constraints are *public* metadata agreed up front, never
learned from private rows. ``FixedCombinations`` therefore carries its allowed
combinations explicitly (``"combinations": [["Bachelors", 13], ...]``).

Every constraint checks a typed frame (as read by the tables module or decoded by the
encoder): :func:`check` gives the rows that keep them all. Missing cells keep a comparison
(as in SDV); for ``FixedCombinations`` a missing cell is a value like any other (JSON
``null`` in a combination). Sampling repairs ``FixedCombinations`` by construction
(:func:`repair`) and redraws rows that break the rest.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from fedsynth.common.errors import SchemaError


class Column(Protocol):
    """What a constraint reads of a schema column (``fedsynth.common.data.schema.Column``; the
    schema imports this module, so it is described here rather than imported)."""

    name: str
    type: str
    subtype: str | None
    min: float | str | None
    max: float | str | None
    categories: tuple[str, ...] | None
    nullable: bool

RELATIONS: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
MAX_COMBINATIONS = 10_000  # a public table of allowed tuples, not a copy of the data


@dataclass(frozen=True)
class FixedCombinations:
    """Only the listed tuples of values may appear together in ``column_names`` (SDV's name).

    Columns: categorical, boolean or integer numerical. ``combinations`` holds the values in
    the columns' typed form (str, bool, float; None for missing).
    """

    column_names: tuple[str, ...]
    combinations: tuple[tuple[Any, ...], ...]

    def valid(self, df: pd.DataFrame) -> np.ndarray:
        allowed = set(self.combinations)
        return np.fromiter((row in allowed for row in _rows(df, self.column_names)), dtype=bool, count=len(df))

    def repair(self, df: pd.DataFrame) -> pd.DataFrame:
        """Each row outside the table becomes the allowed combination agreeing with it most,
        earlier columns first: with a complete 1:1 table the first column is kept and the
        others set from it, so the first column's distribution is untouched."""
        rows = list(_rows(df, self.column_names))
        allowed = set(self.combinations)
        bad = [i for i, row in enumerate(rows) if row not in allowed]
        if not bad:
            return df
        by_first: dict[Any, list[tuple[Any, ...]]] = {}
        for combo in self.combinations:
            by_first.setdefault(combo[0], []).append(combo)
        nearest: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for i in bad:
            row = rows[i]
            if row not in nearest:  # max keeps the first of equals: the table's own order breaks ties
                nearest[row] = max(by_first.get(row[0]) or self.combinations,
                                   key=lambda combo, row=row: tuple(a == b for a, b in zip(row, combo)))
        df = df.copy()
        for j, name in enumerate(self.column_names):
            col = df[name].astype(object)
            col.iloc[bad] = [nearest[rows[i]][j] for i in bad]
            df[name] = _same_dtype(col, df[name])
        return df

    def to_json(self) -> dict[str, Any]:
        return {"constraint_class": "FixedCombinations",
                "constraint_parameters": {"column_names": list(self.column_names),
                                          "combinations": [[_json_value(v) for v in c] for c in self.combinations]}}


@dataclass(frozen=True)
class Inequality:
    """``low_column_name`` <= ``high_column_name`` (< with ``strict_boundaries``) in every row."""

    low_column_name: str
    high_column_name: str
    strict_boundaries: bool = False

    def valid(self, df: pd.DataFrame) -> np.ndarray:
        return _holds(_numbers(df[self.low_column_name]), _numbers(df[self.high_column_name]), self.strict_boundaries)

    def to_json(self) -> dict[str, Any]:
        return {"constraint_class": "Inequality",
                "constraint_parameters": {"low_column_name": self.low_column_name,
                                          "high_column_name": self.high_column_name,
                                          "strict_boundaries": self.strict_boundaries}}


@dataclass(frozen=True)
class Range:
    """``low`` <= ``middle`` <= ``high`` in every row (< with ``strict_boundaries``, SDV's default)."""

    low_column_name: str
    middle_column_name: str
    high_column_name: str
    strict_boundaries: bool = True

    def valid(self, df: pd.DataFrame) -> np.ndarray:
        mid = _numbers(df[self.middle_column_name])
        return (_holds(_numbers(df[self.low_column_name]), mid, self.strict_boundaries)
                & _holds(mid, _numbers(df[self.high_column_name]), self.strict_boundaries))

    def to_json(self) -> dict[str, Any]:
        return {"constraint_class": "Range",
                "constraint_parameters": {"low_column_name": self.low_column_name,
                                          "middle_column_name": self.middle_column_name,
                                          "high_column_name": self.high_column_name,
                                          "strict_boundaries": self.strict_boundaries}}


@dataclass(frozen=True)
class ScalarInequality:
    """``column_name`` ``relation`` ``value`` in every row; ``Positive`` and ``Negative`` are
    this against 0 and keep their own SDV name in the JSON (``spelled``)."""

    column_name: str
    relation: str
    value: float | str
    spelled: str = "ScalarInequality"

    @property
    def limit(self) -> float:
        """The value as a number (a date as days since 1970, as :func:`_numbers` reads the column)."""
        return _bound(self.value)

    def valid(self, df: pd.DataFrame) -> np.ndarray:
        x = _numbers(df[self.column_name])
        with np.errstate(invalid="ignore"):
            return np.isnan(x) | RELATIONS[self.relation](x, self.limit)

    def to_json(self) -> dict[str, Any]:
        if self.spelled != "ScalarInequality":
            return {"constraint_class": self.spelled,
                    "constraint_parameters": {"column_name": self.column_name,
                                              "strict_boundaries": len(self.relation) == 1}}
        return {"constraint_class": "ScalarInequality",
                "constraint_parameters": {"column_name": self.column_name, "relation": self.relation,
                                          "value": self.value}}


Constraint = FixedCombinations | Inequality | Range | ScalarInequality


def columns_of(c: Constraint) -> tuple[str, ...]:
    """The columns a constraint ties together, in its own order."""
    params = c.to_json()["constraint_parameters"]
    return tuple(params.get("column_names", [v for k, v in params.items() if k.endswith("column_name")]))


def describe(c: Constraint) -> str:
    """A constraint as a user reads it in an error: class and columns (and the relation)."""
    name = c.to_json()["constraint_class"]
    if isinstance(c, ScalarInequality):
        return f"{name}({c.column_name} {c.relation} {c.value})"
    return f"{name}({', '.join(columns_of(c))})"


def check(constraints: Sequence[Constraint], df: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the rows of a typed frame that keep every constraint."""
    ok = np.ones(len(df), dtype=bool)
    for c in constraints:
        ok &= c.valid(df)
    return ok


def repair(constraints: Sequence[Constraint], df: pd.DataFrame) -> pd.DataFrame:
    """Rows set onto their nearest allowed combination for every ``FixedCombinations``."""
    for c in constraints:
        if isinstance(c, FixedCombinations):
            df = c.repair(df)
    return df


@dataclass
class Rejections:
    """Rows each constraint refused while sampling, to say which one a failure is due to."""

    counts: dict[str, int]

    @classmethod
    def empty(cls) -> Rejections:
        return cls({})

    def keep_valid(self, constraints: Sequence[Constraint], df: pd.DataFrame) -> np.ndarray:
        """The mask of :func:`check`, counting for each constraint the rows it refused."""
        ok = np.ones(len(df), dtype=bool)
        for c in constraints:
            v = c.valid(df)
            self.counts[describe(c)] = self.counts.get(describe(c), 0) + int((~v).sum())
            ok &= v
        return ok

    def worst(self) -> str:
        if not any(self.counts.values()):
            return ""
        name, n = max(self.counts.items(), key=lambda kv: kv[1])
        return f"; the constraint rejecting most rows is {name} ({n} rows)"


# --------------------------------------------------------------------------- parsing
def parse_constraints(raw: Any, columns: Mapping[str, Column], source: str) -> tuple[Constraint, ...]:
    """The schema's ``constraints`` list, checked against its columns."""
    if not isinstance(raw, list):
        raise SchemaError(f"{source}: 'constraints' must be a list of constraint objects")
    return tuple(_parse_one(item, columns, f"{source}: constraint #{i}") for i, item in enumerate(raw))


_PARAMETERS: dict[str, tuple[set[str], set[str]]] = {  # class: (required, optional)
    "FixedCombinations": ({"column_names", "combinations"}, set()),
    "Inequality": ({"low_column_name", "high_column_name"}, {"strict_boundaries"}),
    "Range": ({"low_column_name", "middle_column_name", "high_column_name"}, {"strict_boundaries"}),
    "ScalarInequality": ({"column_name", "relation", "value"}, set()),
    "Positive": ({"column_name"}, {"strict_boundaries"}),
    "Negative": ({"column_name"}, {"strict_boundaries"}),
}


def _parse_one(item: Any, columns: Mapping[str, Column], where: str) -> Constraint:
    if not isinstance(item, dict) or set(item) - {"constraint_class", "constraint_parameters"}:
        raise SchemaError(f"{where}: must be an object with 'constraint_class' and 'constraint_parameters'")
    kind, params = item.get("constraint_class"), item.get("constraint_parameters")
    if kind not in _PARAMETERS:
        raise SchemaError(f"{where}: constraint_class {kind!r} is not one of {sorted(_PARAMETERS)}")
    where = f"{where} ({kind})"
    if not isinstance(params, dict):
        raise SchemaError(f"{where}: 'constraint_parameters' must be an object")
    required, optional = _PARAMETERS[kind]
    if required - set(params) or set(params) - required - optional:
        raise SchemaError(f"{where}: needs parameters {sorted(required)}"
                          + (f" (optional: {sorted(optional)})" if optional else "") + f", got {sorted(params)}")
    strict = params.get("strict_boundaries", kind == "Range")
    if not isinstance(strict, bool):
        raise SchemaError(f"{where}: 'strict_boundaries' must be true or false, got {strict!r}")
    if kind == "FixedCombinations":
        return _fixed_combinations(params, columns, where)
    if kind in ("Inequality", "Range"):
        names = [params[k] for k in ("low_column_name", "middle_column_name", "high_column_name") if k in params]
        ordered = [_ordered_column(n, columns, where) for n in names]
        if len({c.type for c in ordered}) > 1:
            raise SchemaError(f"{where}: columns {names} mix numerical and datetime columns")
        if kind == "Inequality":
            return Inequality(names[0], names[1], strict)
        return Range(names[0], names[1], names[2], strict)
    col = _ordered_column(params["column_name"], columns, where)
    if kind in ("Positive", "Negative"):
        if col.type != "numerical":
            raise SchemaError(f"{where}: column {col.name!r} must be numerical, not {col.type}")
        relation = (">" if kind == "Positive" else "<") + ("" if strict else "=")
        c = ScalarInequality(col.name, relation, 0.0, spelled=kind)
    else:
        relation, value = params["relation"], params["value"]
        if relation not in RELATIONS:
            raise SchemaError(f"{where}: relation {relation!r} is not one of {sorted(RELATIONS)}")
        if col.type == "datetime":
            if not isinstance(value, str) or _days(value) is None:
                raise SchemaError(f"{where}: 'value' must be an ISO date for datetime column {col.name!r}, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SchemaError(f"{where}: 'value' must be a finite number, got {value!r}")
        c = ScalarInequality(col.name, relation, value)
    lo, hi = _bound(col.min), _bound(col.max)
    if not (RELATIONS[c.relation](lo, c.limit) or RELATIONS[c.relation](hi, c.limit)):
        raise SchemaError(f"{where}: no value of column {col.name!r} within its bounds [{col.min}, {col.max}] "
                          f"is {c.relation} {c.value}")
    return c


def _fixed_combinations(params: dict[str, Any], columns: Mapping[str, Column], where: str) -> FixedCombinations:
    names = params["column_names"]
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) for n in names):
        raise SchemaError(f"{where}: 'column_names' must list at least two column names, got {names!r}")
    if len(set(names)) != len(names):
        raise SchemaError(f"{where}: 'column_names' repeats a column: {names}")
    cols = [_column(n, columns, where) for n in names]
    for col in cols:
        if not (col.type in ("categorical", "boolean") or (col.type == "numerical" and col.subtype == "int")):
            raise SchemaError(f"{where}: column {col.name!r} must be categorical, boolean or an integer numerical")
    combos = params["combinations"]
    if not isinstance(combos, list) or not combos or len(combos) > MAX_COMBINATIONS:
        raise SchemaError(f"{where}: 'combinations' must be a non-empty list (at most {MAX_COMBINATIONS}) of the "
                          "public allowed value tuples, one value per column in 'column_names'")
    parsed = []
    for combo in combos:
        if not isinstance(combo, list) or len(combo) != len(cols):
            raise SchemaError(f"{where}: combination {combo!r} must list {len(cols)} values, one per column {names}")
        parsed.append(tuple(_combination_value(v, col, where) for v, col in zip(combo, cols)))
    if len(set(parsed)) != len(parsed):
        raise SchemaError(f"{where}: a combination is listed twice")
    return FixedCombinations(tuple(names), tuple(parsed))


def _combination_value(v: Any, col: Column, where: str) -> Any:
    if v is None:
        if not col.nullable:
            raise SchemaError(f"{where}: null in a combination, but column {col.name!r} is not nullable")
        return None
    if col.type == "categorical":
        if str(v) not in (col.categories or ()):
            raise SchemaError(f"{where}: {v!r} is not a category of column {col.name!r}")
        return str(v)
    if col.type == "boolean":
        if not isinstance(v, bool):
            raise SchemaError(f"{where}: column {col.name!r} is boolean; write true or false, got {v!r}")
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or not col.min <= v <= col.max:
        raise SchemaError(f"{where}: {v!r} is not an integer within the bounds [{col.min}, {col.max}] "
                          f"of column {col.name!r}")
    return float(v)


def _column(name: Any, columns: Mapping[str, Column], where: str) -> Column:
    if not isinstance(name, str) or name not in columns:
        raise SchemaError(f"{where}: column {name!r} is not in the schema (id columns take no part in constraints)")
    return columns[name]


def _ordered_column(name: Any, columns: Mapping[str, Column], where: str) -> Column:
    col = _column(name, columns, where)
    if col.type not in ("numerical", "datetime"):
        raise SchemaError(f"{where}: column {name!r} is {col.type}; only numerical and datetime columns compare")
    return col


# --------------------------------------------------------------------------- values
def _rows(df: pd.DataFrame, names: Sequence[str]):
    """Each row's cells in the typed form combinations are held in (str, bool, float, None)."""
    return zip(*(df[n].map(_cell).tolist() for n in names))


def _cell(v: Any) -> Any:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    return str(v)


def _same_dtype(new: pd.Series, old: pd.Series) -> pd.Series:
    """Repaired cells back in the column's own dtype (int64 stays int64, Int64 stays Int64)."""
    if old.dtype == object:
        return new
    return new.astype(old.dtype)


def _json_value(v: Any) -> Any:
    return int(v) if isinstance(v, float) and v == int(v) else v


def _numbers(s: pd.Series) -> np.ndarray:
    """Numbers as floats, datetimes as days since 1970; missing as NaN (it keeps every comparison)."""
    if pd.api.types.is_datetime64_any_dtype(s):
        return ((s - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)).to_numpy(dtype=float, na_value=np.nan)
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _holds(low: np.ndarray, high: np.ndarray, strict: bool) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isnan(low) | np.isnan(high) | (low < high if strict else low <= high)


def _days(value: str) -> float | None:
    try:
        return float((pd.Timestamp(value) - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1))
    except (TypeError, ValueError):
        return None


def _bound(v: float | str | None) -> float:
    return _days(v) if isinstance(v, str) else float(v)  # type: ignore[arg-type,return-value]
