"""Draft a schema from a local table, for its owner to review before sharing.

Everything read here comes from private rows, so the draft is a starting point for a human,
never something to send as is: bounds are rounded outward to round numbers (or to a well-known
public range such as 1..31 for a day of month), category lists are flagged, and every column
whose public description must be checked gets a warning.

Drafting never fails on a table pandas can read: a column that cannot be described (free text,
identifiers, values the validator would refuse) is listed under ``drop`` with a warning saying
why, and each drafted column is checked against the same rows with the validator, so the draft
always passes ``fedsynth schema validate`` on the table it was drafted from.

Identifier columns (SDV's ``sdtype: "id"``, a column named like an id whose values are all
distinct, or integers rising by one down the file, as an exported row index) are drafted as id
columns: regenerated on sampling, never learned from. A guess is noted, since a real attribute
taken for an id is lost from the synthetic data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedsynth.common.data.cells import FALSE_TOKENS, MAX_FIELD_CHARS, TRUE_TOKENS, as_text, check_id, coerce
from fedsynth.common.data.clock import is_hhmm
from fedsynth.common.data.constraint_draft import suggest_constraints
from fedsynth.common.data.grid import MAX_GRID_VALUES
from fedsynth.common.data.identifiers import IdColumn, infer_format
from fedsynth.common.data.schema import MAX_DECIMALS, MISSING_TOKENS, Column, Schema
from fedsynth.common.data.tables import read_raw
from fedsynth.common.errors import SchemaError
from fedsynth.common.inputs import read_json_object

MAX_CATEGORIES = 100
POINT_MASS_SHARE = 0.2  # a single value holding this share of the rows is declared a point mass
MAX_POINT_MASSES = 3
# A continuous reading (floats on no grid) never repeats one value this often by chance: such a
# value (a plan's deductible, a standard dose) is a point mass too, else its rows are smeared over a
# fine histogram cell.
READING_MASS_SHARE = 0.05
MAX_READING_MASSES = 6
MIN_GRID_VALUES = 5  # distinct values before a grid is drafted (fewer look like codes, not readings)
# A numerical on no grid with at most this many distinct values, each seen this many times on
# average, is drafted with them as its 'values': codes or levels, not readings of a continuum.
MAX_DRAFT_LEVELS = 64
ROWS_PER_LEVEL = 20
# An integer column whose values all read as HHMM times of day (minutes below 60) is drafted as a
# clock when it has at least this many distinct values over at least MIN_CLOCK_HOURS hours: a
# column of other numbers that large keeps clear of x60..x99 with a chance of 0.6 ** 24 (about 5e-6).
MIN_CLOCK_VALUES = 24
MIN_CLOCK_HOURS = 4
MAX_EXACT_FLOAT_INT = 2**53  # larger integers lose precision in float64, the validator's and encoder's type
# Public bins of a drafted numerical or datetime column: the relations the model learns between such a
# column and the others are between its bins. Chosen by the suite's mean over drafted schemas
# (bench/drafted_bins.py, docs/benchmarks.md); 12, the schema's own default, hid a delay's relation to lateness.
DRAFT_BINS = 24

# Well-known public integer ranges: a column inside one of them that covers most of it is drafted
# with exactly that range (a day-of-month column as [1, 31], not [0, 40]).
PUBLIC_INT_RANGES: tuple[tuple[int, int, str], ...] = (
    (0, 6, "days of the week"), (1, 7, "days of the week"), (1, 12, "months"), (0, 23, "hours of the day"),
    (1, 31, "days of the month"), (1, 53, "weeks of the year"), (0, 59, "minutes or seconds"),
    (1, 366, "days of the year"),
)
PUBLIC_RANGE_COVER = 0.75  # the data must span this share of a public range to be snapped to it

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# Only strings with a date part are dates: "10:30", "may" or "3.5" are not.
_DATE_RE = re.compile(
    r"\d{4}[-/.]\d{1,2}"                          # 2020-01-31, 2020/1, 2020.01.31
    r"|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}"           # 31/01/2020, 1-31-20
    r"|\d{1,2}[-\s]*[A-Za-z]{3,9}\.?,?[-\s]*\d{2,4}"  # 31 Jan 2020, 31-jan-2020
    r"|[A-Za-z]{3,9}\.?\s+\d{1,2}(st|nd|rd|th)?,?\s+\d{4}"  # January 31, 2020
    r"|[A-Za-z]{3,9}\.?\s+\d{4}"                  # Jan 2020
)
# Date formats a draft may declare (SDV's ``datetime_format``); a column must fit exactly one.
# ISO 8601 in UTC (``2017-01-01T06:00:42Z``, as APIs and open-data portals export) reads as that
# UTC time and is written back with its Z.
DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M",
                "%Y/%m/%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%m-%d-%Y")
_FIXED_POINT_RE = r"[+-]?(?:\d+\.?\d*|\.\d+)"
# id, user_id, ID, userId, uuid, idNum, id_no, ID-card; not mid, paid, idle, Idaho
_ID_NAME_RE = re.compile(r"(?i:(?:^|[_\s.-])id|^[ug]uid)$|[a-z]Id$|^id(?=[A-Z_\s.-])|^ID(?=[_\s.-])")
ROW_NUMBER_MIN_ROWS = 20  # fewer rows rising by one say little about a row index
ROW_NUMBER_UNIT_STEPS = 0.9  # share of steps of exactly one (an index of a filtered table skips some)
_UNITS_RE = re.compile(r"[$€£¥%\s,]")


@dataclass
class Draft:
    schema: Schema
    warnings: list[str]


class _Skip(Exception):
    """A column that cannot be drafted; the message says why (it becomes a warning)."""


def draft_file(path: str | Path, name: str = "table", sdv: str | Path | None = None) -> Draft:
    """Read a local CSV or Parquet file and draft its schema; errors name the file.

    ``sdv``: an SDV single-table metadata file whose column types (sdtype, computer_representation,
    datetime_format, id columns) the draft follows; only the bounds and categories come from the
    rows. The SDV file is read, never written: it stays valid in SDV.
    """
    return draft_schema(read_raw(path), name=name, source=str(path),
                        sdv=sdv_columns(sdv) if sdv is not None else None)


def sdv_columns(path: str | Path) -> dict[str, dict[str, Any]]:
    """The ``columns`` of an SDV single-table metadata file (optionally inside ``tables``)."""
    raw = read_json_object(path, error=SchemaError)
    if "tables" in raw:
        if len(raw["tables"]) != 1:
            raise SchemaError(f"{path}: SDV metadata with {len(raw['tables'])} tables; only single-table is supported")
        raw = next(iter(raw["tables"].values()))
    columns = raw.get("columns")
    if not isinstance(columns, dict) or not all(isinstance(v, dict) for v in columns.values()):
        raise SchemaError(f"{path}: not SDV metadata: no 'columns' object of column objects")
    return {str(k): v for k, v in columns.items()}


def draft_schema(raw: pd.DataFrame, name: str = "table", source: str = "table",
                 sdv: dict[str, dict[str, Any]] | None = None) -> Draft:
    """Draft one column at a time; a column that cannot be drafted is dropped with a warning.

    With ``sdv`` (column name -> SDV column metadata) each column takes the type SDV declares.
    Raises SchemaError (naming ``source``) only when no column at all can be drafted.
    """
    warnings: list[str] = [(
        "This schema was read off private rows. Before sharing it, replace bounds and "
        "category lists with public knowledge (documentation, code lists, regulations)."
    )]
    raw = raw.rename(columns=str)
    if len(raw.columns) == 1 and any(d in raw.columns[0] for d in ";\t|"):
        warnings.append(f"the header {raw.columns[0]!r} looks split by another delimiter than commas; "
                        "fedsynth reads comma-separated files")
    cols: list[Column] = []
    ids: list[IdColumn] = []
    drop: list[str] = []
    if sdv is not None:
        warnings.extend(f"column {c!r}: in the SDV metadata but not in the table; left out"
                        for c in sdv if c not in raw.columns)
    for cname in raw.columns:
        notes: list[str] = []
        try:
            spec = sdv.get(cname) if sdv is not None else None
            if sdv is not None and spec is None:
                notes.append("not in the SDV metadata; drafted from the rows")
            if spec is None:
                col = _draft_column(cname, raw[cname], notes)
            else:
                col = _draft_as_sdv(cname, raw[cname], spec, notes)
            if isinstance(col, IdColumn):
                col = replace(col, position=len(cols) + len(ids))
            _check_against_rows(col, raw[[cname]], source)
        except _Skip as why:
            col = None
            notes.append(f"{why}; dropped")
        except Exception as exc:  # noqa: BLE001 - the contract: an odd column is a warning, never a traceback
            col = None
            notes.append(f"could not be drafted ({type(exc).__name__}: {exc}); dropped, describe it by hand")
        warnings.extend(f"column {cname!r}: {n}" for n in notes)
        if col is None:
            drop.append(cname)
        elif isinstance(col, IdColumn):
            ids.append(col)
        else:
            cols.append(col)
    if not cols:
        reasons = "; ".join(w for w in warnings[1:])
        raise SchemaError(f"{source}: no column could be drafted ({reasons})")
    schema = Schema(columns=tuple(cols), drop=tuple(drop), name=name, source=source, ids=tuple(ids))
    return Draft(_with_constraints(schema, raw, warnings), warnings)


def _with_constraints(schema: Schema, raw: pd.DataFrame, warnings: list[str]) -> Schema:
    """The draft with the constraints its rows suggest (see constraint_draft), each one warned about."""
    try:
        typed, report = coerce(raw.loc[:, ~raw.columns.duplicated()][schema.names], schema, require_ids=False)
        if not report.ok:
            return schema
        found, notes = suggest_constraints(typed, schema)
        warnings.extend(notes)
        return replace(schema, constraints=found)
    except Exception as exc:  # noqa: BLE001 - the contract: an odd table is a warning, never a traceback
        warnings.append(f"no constraints suggested ({type(exc).__name__}: {exc})")
        return schema


def _check_against_rows(col: Column | IdColumn, rows: pd.DataFrame, source: str) -> None:
    """The draft must pass the validator on the rows it came from; otherwise the column is skipped."""
    if isinstance(col, IdColumn):
        bad = check_id(rows[col.name], col, source)
        if bad:
            raise _Skip(f"the drafted id description would not validate ({bad[0]})")
        return
    _, report = coerce(rows, Schema(columns=(col,), source=source), source)
    if not report.ok:
        raise _Skip(f"the drafted {col.type} description would not validate ({report.violations[0]})")


def _present(series: pd.Series) -> tuple[pd.Series, bool]:
    """A column's non-missing texts and whether any were missing; a column with none is skipped."""
    text = as_text(series).reset_index(drop=True)
    missing = text.str.lower().isin(MISSING_TOKENS)
    if missing.all():
        raise _Skip("no values")
    return text[~missing], bool(missing.any())


def _draft_column(cname: str, series: pd.Series, notes: list[str]) -> Column | IdColumn:
    present, nullable = _present(series)
    if (present.str.len() > MAX_FIELD_CHARS).any():
        raise _Skip(f"values longer than {MAX_FIELD_CHARS} characters, looks like free text")
    if _ID_NAME_RE.search(cname) and not nullable and present.is_unique:
        col = _draft_id(cname, present, None, notes)
        notes.append("named like an identifier and every value distinct: drafted as an id column, regenerated "
                     "on sampling and never learned from; if it is a real attribute, declare its type, or it is lost")
        return col
    low = present.str.lower()
    if low.isin(TRUE_TOKENS | FALSE_TOKENS).all() and low.nunique() <= 2:
        if not low.isin({"0", "1"}).all():
            return _boolean(cname, present, nullable, notes)
        if low.nunique() == 2:  # a 0/1 flag: a condition for the model and a class for TSTR, not a number
            notes.append("0 and 1 only: drafted as a boolean (if it is a count, declare it numerical)")
            return _boolean(cname, present, nullable, notes)
    nums = pd.to_numeric(present, errors="coerce")
    if nums.notna().all() and np.isfinite(nums.to_numpy(dtype=float)).all():
        x = nums.to_numpy(dtype=float)
        if not nullable and _is_row_number(x):
            col = _draft_id(cname, present, None, notes)
            notes.append("integers rising by one down the file, as a row number or an exported index (R's "
                         "rownames, pandas' 'Unnamed: 0'): drafted as an id column, numbered 0, 1, ... in samples "
                         "and never learned from; if it is a real attribute, declare it numerical")
            return col
        if _reads_as_clock(x):
            notes.append("every value reads as a time of day written HHMM (517 = 05:17): drafted with clock "
                         "'HHMM' over the whole day, so synthetic values are real times; if these are plain "
                         "numbers, remove 'clock'")
            return Column(cname, "numerical", subtype="int", min=0, max=2359, nullable=nullable, bins=DRAFT_BINS,
                          clock="HHMM")
        return _with_value_set(_with_decimals(_numerical(cname, x, nullable, notes), present, notes), x, notes)
    calendar = _calendar_categories(present)
    if calendar is not None:
        notes.append(f"calendar names, drafted as {len(calendar)} categories in calendar order")
        return Column(cname, "categorical", categories=calendar, nullable=nullable)
    if present.map(lambda v: _DATE_RE.search(v) is not None).all():
        fmt = _date_format(present, notes)
        try:  # in the one format they all fit, as the reader will parse them (a trailing Z: UTC, written back)
            dates = pd.to_datetime(present, errors="coerce", format=fmt or "mixed")
        except ValueError:  # pandas refuses mixed UTC offsets in one column
            raise _Skip("dates with mixed time zones or offsets are not supported; convert them to one zone") from None
        if dates.notna().all():
            if fmt is not None and fmt.endswith("Z"):
                notes.append("times written in UTC (a trailing 'Z'): modelled and written back as UTC times")
            return replace(_datetime(cname, dates, nullable, notes), datetime_format=fmt)
    _note_near_numbers(present, nums, notes)
    return _categorical(cname, present, nullable, notes)


def _draft_as_sdv(cname: str, series: pd.Series, spec: dict[str, Any], notes: list[str]) -> Column | IdColumn:
    """A column of the type its SDV metadata declares; bounds and categories drafted from the rows."""
    sdtype = spec.get("sdtype")
    if sdtype == "id":
        fmt = spec.get("regex_format")
        return _draft_id(cname, _present(series)[0], fmt if fmt is None else str(fmt), notes)
    if spec.get("pii"):  # see schema._from_sdv: fedsynth has no fake-value generator for personal data
        raise _Skip("SDV declares it pii: personal data is neither modelled nor faked")
    present, nullable = _present(series)
    if sdtype == "numerical":
        nums = pd.to_numeric(present, errors="coerce")
        if nums.isna().any() or not np.isfinite(nums.to_numpy(dtype=float)).all():
            bad = present[nums.isna()].iloc[0] if nums.isna().any() else "inf"
            raise _Skip(f"SDV declares it numerical, but {bad!r} is not a number")
        col = _with_decimals(_numerical(cname, nums.to_numpy(dtype=float), nullable, notes), present, notes)
        rep = spec.get("computer_representation")
        if rep is not None:
            is_int = str(rep).lower().startswith(("int", "uint"))
            if is_int and col.subtype != "int":
                raise _Skip(f"SDV's computer_representation {rep!r} is an integer type, but the rows hold fractions")
            col = replace(col, subtype="int" if is_int else "float", decimals=None if is_int else col.decimals)
        return _with_value_set(col, nums.to_numpy(dtype=float), notes)
    if sdtype == "categorical":
        return _categorical(cname, present, nullable, notes)
    if sdtype == "boolean":
        low = present.str.lower()
        if not (low.isin(TRUE_TOKENS | FALSE_TOKENS).all() and low.nunique() <= 2):
            raise _Skip("SDV declares it boolean, but its values are not two true/false spellings")
        return _boolean(cname, present, nullable, notes)
    if sdtype == "datetime":
        fmt = spec.get("datetime_format")
        dates = pd.to_datetime(present, format=fmt, errors="coerce") if fmt else \
            pd.to_datetime(present, format="mixed", errors="coerce")
        if dates.isna().any():
            bad = present[dates.isna()].iloc[0]
            raise _Skip(f"{bad!r} is not a date" + (f" in SDV's datetime_format {fmt!r}" if fmt else ""))
        return replace(_datetime(cname, dates, nullable, notes), datetime_format=fmt or _date_format(present, notes))
    notes.append(f"SDV sdtype {sdtype!r} has no fedsynth type; drafted from the rows")
    return _draft_column(cname, series, notes)


def _draft_id(cname: str, present: pd.Series, regex_format: str | None, notes: list[str]) -> IdColumn:
    """An id column in ``regex_format`` (SDV's), else numeric for integer ids, else the format the
    values share (:func:`~fedsynth.common.data.identifiers.infer_format`). Its position is set by the caller."""
    if regex_format is None and not present.str.fullmatch(r"\d+").all():
        regex_format = infer_format(present)
        if regex_format is None:
            raise _Skip("an identifier with no regex_format, and its values share no format fedsynth can write")
        notes.append(f"id format {regex_format!r} read off the values; confirm it")
    col = IdColumn(cname, position=0, regex_format=regex_format)
    try:
        col.format
    except ValueError as exc:
        raise _Skip(f"its regex_format {regex_format!r} is not supported ({exc})") from None
    return col


def _boolean(cname: str, present: pd.Series, nullable: bool, notes: list[str]) -> Column:
    """A boolean column; with the file's own two spellings as its tokens when it uses exactly two."""
    col = Column(cname, "boolean", nullable=nullable)
    spellings = list(present.unique())
    true = [s for s in spellings if s.lower() in TRUE_TOKENS]
    false = [s for s in spellings if s.lower() in FALSE_TOKENS]
    if len(spellings) != 2 or len(true) != 1 or len(false) != 1:
        return col
    notes.append(f"written as {true[0]!r} / {false[0]!r}; synthetic files use the same tokens")
    return replace(col, true_token=true[0], false_token=false[0])


def _is_row_number(x: np.ndarray) -> bool:
    """Whole numbers rising down the file, almost always by exactly one: a row index, not an attribute."""
    if x.size < ROW_NUMBER_MIN_ROWS or not np.all(x == np.round(x)):
        return False
    steps = np.diff(x)
    return bool(np.all(steps > 0) and np.mean(steps == 1) >= ROW_NUMBER_UNIT_STEPS)


def _reads_as_clock(nums: np.ndarray) -> bool:
    """Whether a numeric column looks like HHMM times of day (see :data:`MIN_CLOCK_VALUES`)."""
    values = np.unique(nums)
    return (len(values) >= MIN_CLOCK_VALUES and bool(is_hhmm(values).all())
            and len(np.unique(values // 100)) >= MIN_CLOCK_HOURS)


def _with_decimals(col: Column, present: pd.Series, notes: list[str]) -> Column:
    """A float column kept at the most decimal places its plain (fixed-point) texts show."""
    if col.subtype != "float" or not present.str.fullmatch(_FIXED_POINT_RE).all():
        return col
    places = int(present.str.extract(r"\.(\d*)$")[0].fillna("").str.len().max())
    if places > MAX_DECIMALS:
        return col
    notes.append(f"kept at {places} decimal place(s), as written")
    return replace(col, decimals=places)


def _with_value_set(col: Column, nums: np.ndarray, notes: list[str]) -> Column:
    """A drafted numerical with what its rows show of the values it can hold: a grid, else a short
    list of values, else (floats) the values a reading repeats too often to be chance."""
    return _with_reading_masses(_with_levels(_with_grid(col, nums, notes), nums, notes), nums, notes)


def _with_grid(col: Column, nums: np.ndarray, notes: list[str]) -> Column:
    """A numerical whose values all lie on a grid coarser than its texts' precision (a direction in
    tens of degrees, wind in whole knots written in mph to 3 places, tenths of a degree Celsius in
    Fahrenheit) with that grid as its ``step`` and ``step_origin``; else the column unchanged.

    Integers: the greatest common divisor of the gaps. Decimals: the smallest gap, refined by a
    least-squares line through the values' grid indices (3-place texts of 1.150779448 x k give
    gaps of 1.150 and 1.151), kept when every value lies within its texts' rounding of the line."""
    values = np.unique(nums)
    if col.type != "numerical" or len(values) < MIN_GRID_VALUES:
        return col
    if col.subtype == "int":
        step = float(np.gcd.reduce(np.diff(values).astype(np.int64)))
        if step <= 1:  # every integer: the column's own values, no coarser grid
            return col
        origin = float(values[0] % step)
    elif col.decimals is not None:
        resolution = 10.0 ** -col.decimals
        step = float(np.diff(values).min())
        if step < 1.5 * resolution:  # values at the texts' own precision: no coarser grid
            return col
        k = np.rint((values - values[0]) / step)
        step, origin = np.polyfit(k, values, 1) if k[-1] > 0 else (step, values[0])
        exact = np.allclose(round(step, col.decimals) * k + values[0], values, rtol=0, atol=resolution * 1e-3)
        if exact:  # the texts' own decimals hold the grid: a step such as 0.18 stays 0.18
            step, origin = round(step, col.decimals), float(values[0])
        elif np.abs(values - (origin + step * k)).max() > 0.6 * resolution:
            return col
        origin = origin % step
        if min(origin, step - origin) < 0.6 * resolution:  # a grid through 0: the middle of the steps
            origin, k = 0.0, np.rint(values / step)  # that every text rounds from (0 is only on it)
            lo, hi = ((values[k > 0] + side * resolution / 2) / k[k > 0] for side in (-1, 1))
            step = (lo.max() + hi.min()) / 2 if lo.max() <= hi.min() else step
        step, origin = float(f"{step:.9g}"), float(f"{origin:.9g}")
    else:
        return col
    drafted = replace(col, step=step, step_origin=origin or None)
    grid = drafted.grid
    if grid is None or not 2 <= grid.size <= MAX_GRID_VALUES or grid.off(values).any() \
            or grid.off(col.point_masses).any():
        return col
    where = f"{_fmt(step)}" + (f" from {_fmt(origin)}" if origin else "")
    notes.append(f"every value lies on a grid of step {where} (read off the rows): confirm it is the column's "
                 "public reporting unit, or remove 'step'")
    return drafted


def _with_levels(col: Column, nums: np.ndarray, notes: list[str]) -> Column:
    """A numerical whose few values lie on no grid (codes, a form's answers, logs of a few rates)
    with those values declared; else the column unchanged. Integers only when they are sparse in
    their range: a run of whole numbers is exact already (and 'values' would add nothing)."""
    values = np.unique(nums)
    if (col.type != "numerical" or col.grid is not None or col.is_discrete_int
            or not 2 <= len(values) <= MAX_DRAFT_LEVELS or len(nums) < ROWS_PER_LEVEL * len(values)):
        return col
    if col.subtype == "int" and len(values) > (values[-1] - values[0] + 1) / 2:
        return col
    drafted = replace(col, values=tuple(float(v) for v in values))
    notes.append(f"only {len(values)} distinct values, on no regular grid: declared as its 'values' (read off the "
                 "rows; confirm they are the column's public codes or levels, or remove 'values')")
    return drafted


def _with_reading_masses(col: Column, nums: np.ndarray, notes: list[str]) -> Column:
    """A float column on no grid and with no declared values, with every value that holds at least
    :data:`READING_MASS_SHARE` of its rows among its point masses (at most :data:`MAX_READING_MASSES`)."""
    if col.type != "numerical" or col.subtype != "float" or col.grid is not None:
        return col
    values, counts = np.unique(nums, return_counts=True)
    share = dict(zip(values.tolist(), (counts / len(nums)).tolist()))
    heavy = [v for v in sorted(share, key=lambda v: -share[v])[:MAX_READING_MASSES]
             if share[v] >= READING_MASS_SHARE and v not in col.point_masses]
    if not heavy or len(values) <= 2:
        return col
    shown = ", ".join(f"{_fmt(v)} ({share[v]:.0%})" for v in sorted(heavy))
    notes.append(f"declared point masses {shown}: values a continuous reading would not repeat so often; "
                 "confirm these are public codes or common values")
    return replace(col, point_masses=tuple(sorted({*col.point_masses, *heavy})))


def _date_format(present: pd.Series, notes: list[str]) -> str | None:
    """The one format of :data:`DATE_FORMATS` every text fits, or None (and why, if several fit)."""
    fits = [f for f in DATE_FORMATS if pd.to_datetime(present, format=f, errors="coerce").notna().all()]
    if len(fits) > 1:
        notes.append(f"dates fit several formats ({', '.join(fits)}); declare the right one as 'datetime_format'")
    return fits[0] if len(fits) == 1 else None


def _numerical(cname: str, nums: np.ndarray, nullable: bool, notes: list[str]) -> Column:
    is_int = bool((nums == np.round(nums)).all())
    if is_int and float(np.abs(nums).max()) > MAX_EXACT_FLOAT_INT:
        raise _Skip("integers beyond 2**53 (not exact as floats), looks like an identifier or a code")
    values, counts = np.unique(nums, return_counts=True)
    share = dict(zip(values.tolist(), (counts / len(nums)).tolist()))
    heavy = sorted((v for v in share if share[v] > POINT_MASS_SHARE), key=lambda v: -share[v])
    masses = sorted(heavy[:MAX_POINT_MASSES]) if len(values) > 2 else []
    rest = nums[~np.isin(nums, masses)]
    # A point mass outside the other values' range is a code (-1 = not applicable, 0 = none,
    # 999 = unknown): keep it exactly as a bound instead of rounding the range out around it.
    sentinels = [m for m in masses if len(rest) and (m < rest.min() or m > rest.max())]
    core = rest if sentinels else nums
    lo, hi, known = _plausible_bounds(float(core.min()), float(core.max()), is_int)
    lo, hi = min([lo, *sentinels]), max([hi, *sentinels])
    if is_int:
        lo, hi = int(lo), int(hi)
    positive = nums[nums > 0]
    skewed = lo >= 0 and len(positive) > 10 and float(positive.max()) > 20 * float(np.median(positive))
    col = Column(cname, "numerical", subtype="int" if is_int else "float", min=lo, max=hi,
                 nullable=nullable, scale="log" if skewed else "linear", bins=DRAFT_BINS)
    why = f" (the public range of {known})" if known else ""
    notes.append(f"bounds [{lo}, {hi}] widened from the data{why}; confirm them from public knowledge")
    if len(values) == 1:
        notes.append("a single distinct value")
    if masses and not col.is_discrete_int:  # exactly encoded columns model every value already
        col = replace(col, point_masses=tuple(masses))
        shown = ", ".join(f"{_fmt(m)} ({share[m]:.0%})" for m in masses)
        notes.append(f"declared point masses {shown}; confirm these are public codes or common values")
    return col


def _plausible_bounds(lo: float, hi: float, is_int: bool) -> tuple[float, float, str]:
    """[lo, hi] rounded outward: to a well-known public range, else to a round step (~1/10 of the span)."""
    if is_int:
        fits = [(b - a, a, b, label) for a, b, label in PUBLIC_INT_RANGES
                if a <= lo and hi <= b and hi - lo >= PUBLIC_RANGE_COVER * (b - a)]
        if fits:
            _, a, b, label = min(fits)
            return float(a), float(b), label
    span = hi - lo
    if not math.isfinite(span):
        raise _Skip("values too large to bound")
    if span > 0:
        step, digits = _nice_step(span / 10)
    else:
        step, digits = _nice_step(abs(hi) or 1.0)
    if is_int and step < 1:
        step, digits = 1.0, 0
    out_lo = round(math.floor(lo / step) * step, digits)
    out_hi = round(math.ceil(hi / step) * step, digits)
    if is_int and lo == 1:  # codes and counts that start at 1 keep their public origin
        out_lo = 1.0
    if out_lo > lo:  # guard against float rounding of the multiple
        out_lo = round(out_lo - step, digits)
    if out_hi < hi:
        out_hi = round(out_hi + step, digits)
    if not out_lo < out_hi:  # a single value on a multiple of the step
        out_hi = round(out_lo + step, digits)
    if not out_lo < out_hi:  # the step vanishes next to the magnitude
        raise _Skip("values too close together for their magnitude to bound")
    return out_lo, out_hi, ""


def _nice_step(raw: float) -> tuple[float, int]:
    """The smallest 1, 2 or 5 times a power of ten at or above ``raw``, with the decimals it needs."""
    exp = math.floor(math.log10(raw))
    for mult in (1, 2, 5, 10):
        if mult * 10.0**exp >= raw * (1 - 1e-12):
            break
    exp += mult == 10
    mult = 1 if mult == 10 else mult
    return mult * 10.0**exp, max(0, -exp)


def _calendar_categories(present: pd.Series) -> tuple[str, ...] | None:
    """Month or weekday names in calendar order, or None. The full public list when the tokens
    share one style (``jan``, ``January``, ``MON``...), else the observed tokens only."""
    tokens = list(dict.fromkeys(present))
    for names in (MONTHS, WEEKDAYS):
        index = {t: _calendar_index(t, names) for t in tokens}
        if None in index.values():
            continue
        observed = tuple(sorted(tokens, key=lambda t: (index[t], t)))
        cases = {_case(t) for t in tokens}
        # "may" is both short and full; the other tokens say which style the column uses
        lengths = {len(t.rstrip(".")) == 3 for t in tokens if len(names[index[t]]) > 3} or {True}
        if len(cases) != 1 or len(lengths) != 1 or cases == {"mixed"}:
            return observed
        case, short = cases.pop(), lengths.pop()
        full = tuple(_styled(n[:3] if short else n, case) for n in names)
        return full if set(tokens) <= set(full) else observed
    return None


def _calendar_index(token: str, names: tuple[str, ...]) -> int | None:
    t = token.lower().rstrip(".")
    for i, n in enumerate(names):
        if t == n or (len(t) >= 3 and n.startswith(t) and len(t) <= 4):
            return i
    return None


def _styled(name: str, case: str) -> str:
    return name.upper() if case == "upper" else name.title() if case == "title" else name


def _case(token: str) -> str:
    return "upper" if token.isupper() else "title" if token.istitle() else "lower" if token.islower() else "mixed"


def _datetime(cname: str, dates: pd.Series, nullable: bool, notes: list[str]) -> Column:
    if not pd.api.types.is_datetime64_dtype(dates.dtype):
        raise _Skip("dates with time zones or mixed offsets are not supported; convert them to one zone")
    lo_year, hi_year = int(dates.min().year), int(dates.max().year)
    with_time = bool((dates != dates.dt.normalize()).any())
    hi = f"{hi_year}-12-31T23:59:59" if with_time else f"{hi_year}-12-31"
    notes.append("date range widened from the data to whole years; confirm it")
    return Column(cname, "datetime", min=f"{lo_year:04d}-01-01", max=hi, nullable=nullable, bins=DRAFT_BINS)


def _note_near_numbers(present: pd.Series, nums: pd.Series, notes: list[str]) -> None:
    """Say why a column that looks numeric is not drafted as a number."""
    with_units = present.str.contains(_UNITS_RE)
    stripped = pd.to_numeric(present.str.replace(_UNITS_RE, "", regex=True), errors="coerce")
    if with_units.any() and np.isfinite(stripped.to_numpy(dtype=float)).all():
        notes.append(f"numbers written with units or separators (e.g. {present[with_units].iloc[0]!r}); "
                     "export plain numbers to model it as a number")
    elif 0.9 <= (numeric := np.isfinite(nums.to_numpy(dtype=float))).mean() < 1:
        odd = present[~numeric].iloc[0]
        notes.append(f"mostly numbers, but some values are not (e.g. {odd!r}); treated as text")


def _categorical(cname: str, present: pd.Series, nullable: bool, notes: list[str]) -> Column:
    uniq = present.unique()
    if len(uniq) > MAX_CATEGORIES or len(uniq) > 0.5 * len(present):
        raise _Skip(f"{len(uniq)} distinct values, looks like an identifier or free text")
    cats = tuple(sorted(map(str, uniq)))
    notes.append(f"category list read off the data ({len(cats)} values). Rare values identify people: "
                 "replace it with the full public code list")
    return Column(cname, "categorical", categories=cats, nullable=nullable)


def _fmt(v: float) -> str:
    return str(int(v)) if v == int(v) else str(v)
