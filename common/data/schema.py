"""The public schema: column types, bounds and categories that every party agrees on.

The schema is *public metadata*. Everything the encoder needs (bounds, category lists,
point masses, scales) comes from here and never from private rows, so sharing an encoder
or a model built from it leaks nothing about any institution's table beyond what the DP
training itself releases.

Two input formats are accepted:

* fedsynth's own JSON (``{"name": ..., "columns": [...], "drop": [...]}``), and
* SDV's single-table metadata JSON (``{"columns": {"age": {"sdtype": "numerical"}}}``,
  optionally wrapped in ``{"tables": {...}}``), so SDV users can bring what they have.
  SDV metadata carries no bounds or category lists, so those must be added
  (``fedsynth schema validate`` says which are missing).

Identifier columns (``"type": "id"``; SDV's ``sdtype: "id"``) are declared but never modelled:
see :class:`IdColumn`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fedsynth.common.atomic import atomic_write_text
from fedsynth.common.data.identifiers import ID_TYPE, IdColumn, id_from_json, id_problem
from fedsynth.common.errors import SchemaError
from fedsynth.common.inputs import read_json

if TYPE_CHECKING:
    from fedsynth.common.data.constraints import Constraint
    from fedsynth.common.data.grid import Grid, Levels

ColumnType = Literal["numerical", "categorical", "boolean", "datetime"]
# Cell texts read as missing (case-insensitive) in every table; a declared token may not be one.
MISSING_TOKENS = frozenset({"", "?", "na", "n/a", "nan", "null", "none"})
MAX_DECIMALS = 15  # beyond this a float64 holds no more decimal digits
COLUMN_TYPES: tuple[str, ...] = ("numerical", "categorical", "boolean", "datetime")
SCALES: tuple[str, ...] = ("linear", "log")


@dataclass(frozen=True)
class Column:
    """One column of the shared table.

    Attributes:
        name: column name as it appears in every party's table.
        type: ``numerical``, ``categorical``, ``boolean`` or ``datetime``.
        subtype: for numericals, ``int`` or ``float``.
        min, max: public bounds for numericals (for datetimes: ISO dates).
        categories: the complete public category list for categoricals.
        nullable: whether missing values are allowed (they are then modelled explicitly).
        point_masses: values that carry a lump of probability mass (e.g. capital-gain = 0,
            a 40-hour week). Public domain knowledge, never read off the rows.
        scale: ``linear`` or ``log``: the scale the encoder uses between the bounds.
            ``log`` suits heavy right tails (incomes, sampling weights).
        bins: number of public bins the encoder splits the range into.
        description: free text, e.g. where the bounds come from.
        true_token, false_token: for booleans, the exact texts the table uses (``yes``/``no``,
            ``Y``/``N``, ...): reading accepts only these, writing uses them. Unset: any of
            true/false, yes/no, 1/0, t/f, y/n is read, and ``True``/``False`` is written.
        decimals: for float numericals, the number of decimal places the column is kept at
            (values with more are refused on reading; synthetic values are rounded to it).
        step, step_origin: for numericals, the public grid ``step_origin + k * step`` that every
            value lies on (wind in whole knots written in mph: ``step`` 1.150779448; tenths of a
            degree Celsius in Fahrenheit: ``step`` 0.18, ``step_origin`` 32). Values off it are
            refused on reading; synthetic values are grid values (:mod:`fedsynth.common.data.grid`).
        values: for numericals, the only values the column holds when they lie on no regular
            grid (codes, a form's answers, visibility in 1/4, 1/2, 1, 2 ... miles), ascending.
            Values not among them are refused on reading; synthetic values are among them.
        clock: for int numericals, ``"HHMM"`` when the values are times of day written hours * 100 +
            minutes (517 = 05:17): bounds and point masses are HHMM times, values that are none
            are refused on reading, and the encoder counts in minutes since midnight, so synthetic
            values are real times (:mod:`fedsynth.common.data.clock`).
        datetime_format: for datetimes, the ``strftime`` format of the table's texts
            (SDV's ``datetime_format``, e.g. ``%d/%m/%Y``): reading accepts only it, writing
            uses it. Unset: any date pandas parses is read, and ISO is written.

    The format and grid fields default to ``None`` and are left out of the JSON when unset, so
    a schema that does not use them keeps its hash.
    """

    name: str
    type: ColumnType
    subtype: Literal["int", "float"] | None = None
    min: float | str | None = None
    max: float | str | None = None
    categories: tuple[str, ...] | None = None
    nullable: bool = False
    point_masses: tuple[float, ...] = ()
    scale: Literal["linear", "log"] = "linear"
    bins: int = 12
    description: str = ""
    true_token: str | None = None
    false_token: str | None = None
    decimals: int | None = None
    datetime_format: str | None = None
    step: float | None = None
    step_origin: float | None = None
    values: tuple[float, ...] | None = None
    clock: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.type == "numerical":
            out.update(subtype=self.subtype, min=self.min, max=self.max, scale=self.scale,
                       bins=self.bins)
            if self.point_masses:
                out["point_masses"] = list(self.point_masses)
        elif self.type == "datetime":
            out.update(min=self.min, max=self.max, bins=self.bins)
        elif self.type == "categorical":
            out["categories"] = list(self.categories or ())
        out["nullable"] = self.nullable
        if self.description:
            out["description"] = self.description
        for key in _OPTIONAL_KEYS:  # only when set: an existing schema's hash must not change
            if getattr(self, key) is not None:
                out[key] = list(self.values) if key == "values" else getattr(self, key)  # type: ignore[arg-type]
        return out

    @property
    def grid(self) -> Grid | Levels | None:
        """The values a numerical with a ``step`` (between its bounds) or declared ``values`` can
        hold (None without either)."""
        if self.type != "numerical" or (self.step is None and self.values is None):
            return None
        from fedsynth.common.data.grid import Grid, Levels  # lazy: numpy, which the CLI does not load at start

        if self.values is not None:
            return Levels(self.values)
        assert self.step is not None
        return Grid.within(float(self.step), float(self.step_origin or 0.0), float(self.min), float(self.max))  # type: ignore[arg-type]

    @property
    def is_discrete_int(self) -> bool:
        """Small integer domains (e.g. education-num 1..16) are encoded exactly, one-hot."""
        return (
            self.type == "numerical"
            and self.subtype == "int"
            and isinstance(self.min, (int, float))
            and isinstance(self.max, (int, float))
            and (self.max - self.min) < MAX_EXACT_INT_LEVELS
            and self.clock is None
        )


MAX_EXACT_INT_LEVELS = 32


@dataclass(frozen=True)
class Schema:
    """An ordered list of columns plus identifier columns to drop before anything else.

    ``columns`` are the modelled ones; ``ids`` (:class:`IdColumn`) are regenerated on sampling
    and put back at their positions; ``drop`` columns are removed on reading and never written.
    ``constraints`` (:mod:`fedsynth.common.data.constraints`) are rules between columns that
    every row keeps; left out of the JSON when there are none, so such a schema keeps its hash.
    """

    columns: tuple[Column, ...]
    drop: tuple[str, ...] = ()
    name: str = "table"
    source: str = field(default="", compare=False)
    constraints: tuple[Constraint, ...] = ()
    ids: tuple[IdColumn, ...] = ()

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns] + [c.name for c in self.ids]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SchemaError(f"{self.source or 'schema'}: duplicate column names {dupes}")
        if not self.columns:
            raise SchemaError(f"{self.source or 'schema'}: no columns")
        problems = []  # every column's problem at once: a file is fixed in one pass, not one run per key
        for col in self.columns:
            try:
                _check_column(col, self.source or "schema")
            except SchemaError as exc:
                problems.append(str(exc))
        width = len(self.columns) + len(self.ids)
        problems.extend(id_problem(c, width, self.source or "schema") for c in self.ids)
        problems = [p for p in problems if p]
        if len({c.position for c in self.ids}) < len(self.ids):
            problems.append(f"{self.source or 'schema'}: two id columns at one position")
        if len(problems) == 1:
            raise SchemaError(problems[0])
        if problems:
            raise SchemaError(f"{self.source or 'schema'}: {len(problems)} columns need fixing:\n  "
                              + "\n  ".join(problems))
        if self.constraints:  # built in Python: checked against the columns as the JSON would be
            _constraints([c.to_json() for c in self.constraints], self.columns, self.source or "schema")

    # ----------------------------------------------------------------- accessors
    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def table_names(self) -> list[str]:
        """Every column of the table in order, id columns included (what a sample holds)."""
        return [c.name for c in self.layout]

    @property
    def layout(self) -> list[Column | IdColumn]:
        out: list[Column | IdColumn] = list(self.columns)
        for idc in sorted(self.ids, key=lambda c: c.position):
            out.insert(idc.position, idc)
        return out

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"column {name!r} is not in the schema (columns: {self.names})")

    # ------------------------------------------------------------- serialisation
    def to_json(self) -> dict[str, Any]:
        out = {
            "format": "fedsynth-schema/1",
            "name": self.name,
            "columns": [c.to_json() for c in self.layout],
            "drop": list(self.drop),
        }
        if self.constraints:  # only when set: an existing schema's hash must not change
            out["constraints"] = [c.to_json() for c in self.constraints]
        return out

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def hash(self) -> str:
        """Content hash of the canonical JSON: parties compare it before federating."""
        canon = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), self.dumps() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Schema":
        path = Path(path)
        return cls.from_json(read_json(path, label="schema ", error=SchemaError), source=str(path))

    @classmethod
    def from_json(cls, raw: Any, source: str = "schema") -> "Schema":
        try:
            return cls._from_json(raw, source)
        except SchemaError:
            raise
        except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a value of the wrong JSON type
            raise SchemaError(f"{source}: malformed schema ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _from_json(cls, raw: Any, source: str) -> Schema:
        if not isinstance(raw, dict):
            raise SchemaError(f"{source}: the schema must be a JSON object")
        if "tables" in raw or isinstance(raw.get("columns"), dict):
            return _from_sdv(raw, source)
        cols_raw = raw.get("columns")
        if not isinstance(cols_raw, list):
            raise SchemaError(f"{source}: 'columns' must be a list of column objects")
        is_id = [isinstance(c, dict) and c.get("type") == ID_TYPE for c in cols_raw]
        columns = tuple(_column_from_json(c, source, i) for i, c in enumerate(cols_raw) if not is_id[i])
        ids = tuple(id_from_json(c, source, i) for i, c in enumerate(cols_raw) if is_id[i])
        drop = tuple(str(d) for d in raw.get("drop", []))
        return cls(columns=columns, drop=drop, name=str(raw.get("name", "table")), source=source,
                   constraints=_constraints(raw.get("constraints"), columns, source), ids=ids)


def _constraints(raw: Any, columns: tuple[Column, ...], source: str) -> tuple[Constraint, ...]:
    if not raw:
        return ()
    # lazy: constraints need numpy and pandas; the CLI imports Schema at start and most schemas have none
    from fedsynth.common.data.constraints import parse_constraints

    return parse_constraints(raw, {c.name: c for c in columns}, source)


# --------------------------------------------------------------------------- parsing
_OPTIONAL_KEYS = ("true_token", "false_token", "decimals", "datetime_format", "step", "step_origin", "values",
                  "clock")
_KNOWN_KEYS = {"name", "type", "subtype", "min", "max", "categories", "nullable",
               "point_masses", "scale", "bins", "description", *_OPTIONAL_KEYS}


def _column_from_json(raw: Any, source: str, index: int) -> Column:
    where = f"{source}: column #{index}"
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: must be an object, got {raw!r}")
    unknown = set(raw) - _KNOWN_KEYS
    if unknown:
        raise SchemaError(f"{where} ({raw.get('name')!r}): unknown keys {sorted(unknown)}")
    if "name" not in raw or "type" not in raw:
        raise SchemaError(f"{where}: needs 'name' and 'type'")
    if not isinstance(raw["name"], str) or not raw["name"].strip():
        raise SchemaError(f"{where}: 'name' must be a non-empty string, got {raw['name']!r}")
    where = f"{source}: column {raw['name']!r}"
    kwargs = dict(raw)
    for key, kinds in (("nullable", bool), ("bins", int), ("description", str), ("scale", str), ("subtype", str),
                       ("true_token", str), ("false_token", str), ("decimals", int), ("datetime_format", str),
                       ("clock", str)):
        v = kwargs.get(key)
        if v is not None and (not isinstance(v, kinds) or (kinds is int and isinstance(v, bool))):
            raise SchemaError(f"{where}: '{key}' must be a {kinds.__name__}, got {v!r}")
    for key in ("step", "step_origin"):
        v = kwargs.get(key)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)):
            raise SchemaError(f"{where}: '{key}' must be a finite number, got {v!r}")
    if "nullable" in kwargs and kwargs["nullable"] is None:
        del kwargs["nullable"]
    if kwargs.get("categories") is not None:
        cats = kwargs["categories"]
        if not isinstance(cats, list) or not all(isinstance(c, (str, int, float, bool)) for c in cats):
            raise SchemaError(f"{where}: 'categories' must be a list of values, got {cats!r}")
        kwargs["categories"] = tuple(str(c) for c in cats)
    masses = kwargs.get("point_masses") or []
    if not isinstance(masses, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in masses):
        raise SchemaError(f"{where}: 'point_masses' must be a list of numbers, got {masses!r}")
    kwargs["point_masses"] = tuple(float(v) for v in masses)
    if kwargs.get("values") is not None:
        levels = kwargs["values"]
        if not isinstance(levels, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   and math.isfinite(v) for v in levels):
            raise SchemaError(f"{where}: 'values' must be a list of finite numbers, got {levels!r}")
        kwargs["values"] = tuple(float(v) for v in levels)
    if kwargs["type"] == "numerical" and kwargs.get("subtype") is None:
        kwargs["subtype"] = "float"
    return Column(**kwargs)


def _check_column(col: Column, source: str) -> None:
    where = f"{source}: column {col.name!r}"
    if col.type not in COLUMN_TYPES:
        raise SchemaError(f"{where}: type {col.type!r} is not one of {(*COLUMN_TYPES, ID_TYPE)}")
    if col.type == "numerical":
        if col.subtype not in ("int", "float"):
            raise SchemaError(f"{where}: subtype must be 'int' or 'float', got {col.subtype!r}")
        bad = [k for k in ("min", "max") if not isinstance(getattr(col, k), (int, float))
               or isinstance(getattr(col, k), bool) or not math.isfinite(getattr(col, k))]
        if bad:
            got = ", ".join(f"{k}={getattr(col, k)!r}" for k in bad)
            raise SchemaError(
                f"{where}: needs finite public {' and '.join(repr(k) for k in bad)} bound(s) (got {got}); "
                "bounds must come from public knowledge, not from the private rows"
            )
        if not col.min < col.max:  # type: ignore[operator]
            raise SchemaError(f"{where}: min {col.min} must be below max {col.max}")
        if col.scale not in SCALES:
            raise SchemaError(f"{where}: scale must be one of {SCALES}, got {col.scale!r}")
        for pm in col.point_masses:
            if not col.min <= pm <= col.max:  # type: ignore[operator]
                raise SchemaError(f"{where}: point mass {pm} lies outside [{col.min}, {col.max}]")
        _check_grid(col, where)
        _check_clock(col, where)
    if col.type == "datetime":
        import pandas as pd  # lazy: only datetime bounds need pandas; the CLI imports Schema at start

        bad = []
        for key in ("min", "max"):
            v = getattr(col, key)
            try:
                pd.Timestamp(v)
            except (TypeError, ValueError):
                raise SchemaError(f"{where}: '{key}' must be an ISO date, got {v!r}") from None
            if v is None:
                bad.append(key)
        if bad:
            raise SchemaError(f"{where}: needs public {' and '.join(repr(k) for k in bad)} date(s)")
        if not pd.Timestamp(col.min) < pd.Timestamp(col.max):
            raise SchemaError(f"{where}: min {col.min} must be before max {col.max}")
    if col.type == "categorical":
        if not col.categories:
            raise SchemaError(
                f"{where}: needs a non-empty public 'categories' list (the complete list of "
                "values any party may hold)"
            )
        if len(set(col.categories)) != len(col.categories):
            raise SchemaError(f"{where}: duplicate categories")
    if not isinstance(col.bins, int) or col.bins < 1:
        raise SchemaError(f"{where}: bins must be a positive integer, got {col.bins!r}")
    _check_formats(col, where)


def _check_grid(col: Column, where: str) -> None:
    """A declared grid: a positive step, at least two and at most MAX_GRID_VALUES values between
    the bounds, every point mass on it. Declared values: the same, ascending, within the bounds."""
    if col.values is not None:
        _check_values(col, where)
        return
    if col.step is None:
        if col.step_origin is not None:
            raise SchemaError(f"{where}: 'step_origin' needs a 'step'")
        return
    if not col.step > 0:
        raise SchemaError(f"{where}: 'step' must be positive, got {col.step!r}")
    from fedsynth.common.data.grid import MAX_GRID_VALUES  # lazy, as in Column.grid

    grid = col.grid
    assert grid is not None
    if grid.size < 2:
        raise SchemaError(f"{where}: the grid of step {col.step} from {col.step_origin or 0} has fewer than two "
                          f"values between the bounds [{col.min}, {col.max}]")
    if grid.size > MAX_GRID_VALUES:
        raise SchemaError(f"{where}: the grid of step {col.step} has {grid.size} values between the bounds "
                          f"[{col.min}, {col.max}], more than {MAX_GRID_VALUES}: declare a coarser step or none")
    if col.subtype == "int" and not (float(col.step).is_integer() and float(col.step_origin or 0).is_integer()):
        raise SchemaError(f"{where}: an int column's 'step' and 'step_origin' must be whole numbers")
    off = [pm for pm, bad in zip(col.point_masses, grid.off(col.point_masses)) if bad]
    if off:
        raise SchemaError(f"{where}: point mass {off[0]} is not on the grid of step {col.step} "
                          f"from {col.step_origin or 0}")


def _check_clock(col: Column, where: str) -> None:
    """A ``clock`` column: an int with HHMM bounds and point masses, on no other grid or scale."""
    if col.clock is None:
        return
    from fedsynth.common.data.clock import CLOCKS, is_hhmm  # lazy: numpy, which the CLI does not load at start

    if col.clock not in CLOCKS:
        raise SchemaError(f"{where}: 'clock' must be one of {list(CLOCKS)}, got {col.clock!r}")
    if col.subtype != "int":
        raise SchemaError(f"{where}: 'clock' applies to int numerical columns only")
    if col.step is not None or col.values is not None or col.scale != "linear":
        raise SchemaError(f"{where}: a 'clock' column counts minutes on a linear scale: no 'step', 'values' or log scale")
    for what, v in (("min", col.min), ("max", col.max), *(("point mass", p) for p in col.point_masses)):
        if not is_hhmm([v])[0]:
            raise SchemaError(f"{where}: {what} {v} is not a time of day written HHMM (0 to 2359, minutes below 60)")


def _check_values(col: Column, where: str) -> None:
    from fedsynth.common.data.grid import MAX_GRID_VALUES  # lazy, as in Column.grid

    levels = col.values or ()
    if col.step is not None:
        raise SchemaError(f"{where}: declare either 'step' or 'values', not both")
    if not 2 <= len(levels) <= MAX_GRID_VALUES:
        raise SchemaError(f"{where}: 'values' needs from 2 to {MAX_GRID_VALUES} values, got {len(levels)}")
    if any(b <= a for a, b in zip(levels, levels[1:])):
        raise SchemaError(f"{where}: 'values' must be ascending and distinct")
    outside = [v for v in levels if not col.min <= v <= col.max]  # type: ignore[operator]
    if outside:
        raise SchemaError(f"{where}: value {outside[0]:g} lies outside [{col.min}, {col.max}]")
    if col.subtype == "int" and not all(float(v).is_integer() for v in levels):
        raise SchemaError(f"{where}: an int column's 'values' must be whole numbers")
    missing = [pm for pm in col.point_masses if pm not in levels]
    if missing:
        raise SchemaError(f"{where}: point mass {missing[0]:g} is not one of its 'values'")


def _check_formats(col: Column, where: str) -> None:
    """The format fields: each only on its own type, and each one a table could really hold."""
    for key in ("step", "step_origin", "values", "clock"):
        if getattr(col, key) is not None and col.type != "numerical":
            raise SchemaError(f"{where}: '{key}' applies to numerical columns only, not {col.type}")
    for key, kind in (("true_token", "boolean"), ("false_token", "boolean"), ("datetime_format", "datetime")):
        if getattr(col, key) is not None and col.type != kind:
            raise SchemaError(f"{where}: '{key}' applies to {kind} columns only, not {col.type}")
    if col.decimals is not None and (col.type != "numerical" or col.subtype != "float"):
        raise SchemaError(f"{where}: 'decimals' applies to float numerical columns only")
    if col.decimals is not None and not (isinstance(col.decimals, int) and not isinstance(col.decimals, bool)
                                         and 0 <= col.decimals <= MAX_DECIMALS):
        raise SchemaError(f"{where}: 'decimals' must be an integer from 0 to {MAX_DECIMALS}, got {col.decimals!r}")
    tokens = (col.true_token, col.false_token)
    if any(t is not None for t in tokens):
        if any(t is None for t in tokens):
            raise SchemaError(f"{where}: give both 'true_token' and 'false_token', or neither")
        for token in tokens:
            if not isinstance(token, str) or token != token.strip() or token.lower() in MISSING_TOKENS:
                raise SchemaError(f"{where}: boolean token {token!r} must be a non-empty text without surrounding "
                                  f"spaces that does not read as missing ({sorted(MISSING_TOKENS)})")
        if col.true_token == col.false_token:
            raise SchemaError(f"{where}: 'true_token' and 'false_token' are both {col.true_token!r}")
    if col.datetime_format is not None:
        _check_datetime_format(col, where)


def _check_datetime_format(col: Column, where: str) -> None:
    import pandas as pd  # lazy: only datetime columns need pandas; the CLI imports Schema at start

    fmt = col.datetime_format
    if not isinstance(fmt, str) or "%" not in fmt:
        raise SchemaError(f"{where}: 'datetime_format' must be a strftime format such as '%d/%m/%Y', got {fmt!r}")
    for bound in (col.min, col.max):  # the bounds written in the format must read back
        try:
            pd.to_datetime(pd.Timestamp(bound).strftime(fmt), format=fmt)
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"{where}: 'datetime_format' {fmt!r} cannot write and read back a date ({exc})") from None


def _from_sdv(raw: dict[str, Any], source: str) -> Schema:
    """Translate SDV single-table metadata. SDV has no bounds, so they must be supplied.

    fedsynth reads the extra keys (``min``, ``max``, ``categories``, ``point_masses``,
    ``scale``) when they are present on an SDV column; otherwise the column is refused with
    a message saying what to add.

    ``sdtype: "id"`` columns become :class:`IdColumn` (with their ``regex_format``). Other
    ``pii: true`` columns are dropped: SDV replaces them with realistic fakes (names, emails)
    from Faker, which fedsynth does not carry, and an opaque token in their place would pass
    for data it is not; the real values, being personal data, are never modelled either.
    """
    if "tables" in raw:
        tables = raw["tables"]
        if len(tables) != 1:
            raise SchemaError(f"{source}: SDV metadata with {len(tables)} tables; only single-table is supported")
        name, raw = next(iter(tables.items()))
    else:
        name = raw.get("name", "table")
    cols: list[Column] = []
    ids: list[IdColumn] = []
    drop: list[str] = []
    for cname, spec in raw.get("columns", {}).items():
        sdtype = spec.get("sdtype")
        extra = {k: spec[k] for k in ("min", "max", "point_masses", "scale", "bins", "nullable",
                                      "description", *_OPTIONAL_KEYS) if k in spec}
        if "point_masses" in extra:
            extra["point_masses"] = tuple(float(v) for v in extra["point_masses"])
        if sdtype == ID_TYPE:
            fmt = spec.get("regex_format")
            ids.append(IdColumn(name=cname, position=len(cols) + len(ids),
                                regex_format=fmt if fmt is None else str(fmt)))
        elif spec.get("pii"):
            drop.append(cname)
        elif sdtype == "numerical":
            rep = str(spec.get("computer_representation", "Float"))
            cols.append(Column(name=cname, type="numerical",
                               subtype="int" if rep.lower().startswith(("int", "uint")) else "float",
                               **extra))
        elif sdtype == "categorical":
            cats = spec.get("categories")
            cols.append(Column(name=cname, type="categorical",
                               categories=tuple(str(c) for c in cats) if cats else None, **extra))
        elif sdtype == "boolean":
            cols.append(Column(name=cname, type="boolean", **extra))
        elif sdtype == "datetime":
            cols.append(Column(name=cname, type="datetime", **extra))
        else:
            raise SchemaError(f"{source}: column {cname!r}: SDV sdtype {sdtype!r} is not supported")
    try:
        return Schema(columns=tuple(cols), drop=tuple(drop), name=str(name), source=source,
                      constraints=_constraints(raw.get("constraints"), tuple(cols), source), ids=tuple(ids))
    except SchemaError as exc:
        raise SchemaError(f"{exc}\n(SDV metadata holds no bounds or category lists, and SDV refuses extra keys in "
                          f"its own file: `fedsynth schema draft DATA --from-sdv {source}` writes a fedsynth "
                          "schema with them instead, leaving the SDV file as it is)") from None

