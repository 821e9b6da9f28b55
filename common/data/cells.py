"""Cells against their column: text read into typed values, typed values written in the declared form.

Every cell is read as text first so that an error can quote the exact value the user has in
their file. Validation collects *all* violations (up to a cap) rather than stopping at the
first, so an institution can fix its export in one pass. Writing uses the schema's declared
form (boolean tokens, decimals, date format), so a synthetic file reads like the input.
Identifier columns are only checked (present, in their format), never typed: the typed frame
leaves them out, and :func:`with_ids` puts fresh ones back for writing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from fedsynth.common.data.clock import is_hhmm
from fedsynth.common.data.constraints import columns_of, describe
from fedsynth.common.data.identifiers import IdColumn, id_values
from fedsynth.common.data.schema import MISSING_TOKENS, Column, Schema
from fedsynth.common.errors import DataError, Violation

TRUE_TOKENS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_TOKENS = frozenset({"false", "f", "no", "n", "0"})
MAX_REPORTED = 200
MAX_FIELD_CHARS = 10_000


@dataclass
class ValidationReport:
    file: str
    rows: int
    violations: list[Violation]
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return not self.violations

    def raise_if_bad(self) -> None:
        if self.violations:
            shown = "\n  ".join(str(v) for v in self.violations[:20])
            more = len(self.violations) - 20
            tail = f"\n  ... and {more} more" if more > 0 else ""
            if self.truncated:
                tail += f" (stopped counting at {MAX_REPORTED})"
            raise DataError(
                f"{self.file}: {len(self.violations)} schema violation(s):\n  {shown}{tail}",
                self.violations,
            )


def coerce(raw: pd.DataFrame, schema: Schema, file: str = "<table>",
           require_ids: bool = True) -> tuple[pd.DataFrame, ValidationReport]:
    """Turn a raw frame into typed columns, collecting violations instead of raising.

    Id columns are checked and left out of the typed frame. ``require_ids=False`` accepts a frame
    without them (a typed frame, as ``load_table`` returns, holds none).
    """
    violations: list[Violation] = []
    raw = raw.drop(columns=[c for c in schema.drop if c in raw.columns])
    for idc in schema.ids:
        if idc.name in raw.columns:
            violations.extend(check_id(raw[idc.name], idc, file))
        elif require_ids:
            violations.append(Violation(file, idc.name, None, "", "id column missing from the table"))
    raw = raw.drop(columns=[c.name for c in schema.ids if c.name in raw.columns])
    dup = raw.columns[raw.columns.duplicated()].tolist()
    for name in dup:
        violations.append(Violation(file, str(name), None, "", "column appears more than once"))
    raw = raw.loc[:, ~raw.columns.duplicated()]
    for name in raw.columns:
        if name not in schema.names:
            violations.append(Violation(file, str(name), None, "",
                                        "column is not in the schema (add it, or list it under 'drop')"))
    out: dict[str, pd.Series] = {}
    for col in schema.columns:
        if col.name not in raw.columns:
            violations.append(Violation(file, col.name, None, "", "column missing from the table"))
            continue
        series, bad = _coerce_column(raw[col.name], col, file)
        violations.extend(bad)
        out[col.name] = series
        if len(violations) > MAX_REPORTED:
            break
    violations.extend(_broken_constraints(pd.DataFrame(out, index=range(len(raw))), schema, file))
    truncated = len(violations) > MAX_REPORTED
    report = ValidationReport(file, len(raw), violations[:MAX_REPORTED], truncated)
    df = pd.DataFrame(out, index=range(len(raw))) if not violations else pd.DataFrame()
    return df, report


def _broken_constraints(typed: pd.DataFrame, schema: Schema, file: str) -> list[Violation]:
    """Rows breaking a constraint of the schema, for each constraint whose columns were all read."""
    bad: list[Violation] = []
    for c in schema.constraints:
        cols = columns_of(c)
        if not set(cols) <= set(typed.columns):
            continue
        idx = np.flatnonzero(~c.valid(typed))
        for i in idx[: MAX_REPORTED // 4]:
            shown = ", ".join(f"{name}={_shown(typed[name].iloc[i])}" for name in cols)
            bad.append(Violation(file, ", ".join(cols), int(i) + 1, shown, f"breaks the constraint {describe(c)}"))
        if len(idx) > MAX_REPORTED // 4:
            bad.append(Violation(file, ", ".join(cols), None, f"{len(idx)} rows",
                                 f"breaks the constraint {describe(c)} (more rows)"))
    return bad


def check_id(s: pd.Series, col: IdColumn, file: str) -> list[Violation]:
    """An id cell only has to be there, and in the declared ``regex_format`` when there is one."""
    text = as_text(s).reset_index(drop=True)
    bad = _reported(text, text.str.lower().isin(MISSING_TOKENS), col.name, file, "missing id")
    fmt = col.format
    if fmt is not None:
        wrong = ~text.str.lower().isin(MISSING_TOKENS) & ~text.map(fmt.matches)
        bad += _reported(text, wrong, col.name, file, f"does not match the id format {col.regex_format!r}")
    return bad


def with_ids(df: pd.DataFrame, schema: Schema, start: int = 0) -> pd.DataFrame:
    """``df`` (the schema's modelled columns) with each id column put back at its position, holding
    ids ``start, start + 1, ...`` of its format: consecutive chunks get distinct ids."""
    if not schema.ids:
        return df
    fresh = {c.name: pd.Series(id_values(c.format, start, len(df)), index=df.index,
                               dtype="int64" if c.regex_format is None else object) for c in schema.ids}
    return df.assign(**fresh)[schema.table_names]


def _reported(text: pd.Series, mask: np.ndarray | pd.Series, column: str, file: str, problem: str) -> list[Violation]:
    """A violation per flagged row (the value quoted, shortened), up to a quarter of the cap."""
    bad: list[Violation] = []
    idx = np.flatnonzero(np.asarray(mask))
    for i in idx[: MAX_REPORTED // 4]:
        value = text.iloc[i]
        shown = value if len(value) <= 80 else value[:77] + "..."
        bad.append(Violation(file, column, int(i) + 1, repr(shown), problem))
    if len(idx) > MAX_REPORTED // 4:
        bad.append(Violation(file, column, None, f"{len(idx)} rows", problem + " (more rows)"))
    return bad


def _shown(v: object) -> str:
    """A typed cell as its file showed it: integers without '.0', missing as empty."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "(missing)"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _holds_text(s: pd.Series) -> bool:
    """Cells held as text (every CSV column); a Parquet column may hold typed values instead
    (a nullable boolean one arrives as objects: bools and None)."""
    if s.dtype != object:
        return pd.api.types.is_string_dtype(s)
    return bool(s.map(lambda v: isinstance(v, str)).any()) or not s.notna().any()


def as_text(s: pd.Series) -> pd.Series:
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        return s.map(lambda v: "" if _no_value(v) else str(v)).str.strip()
    return s.map(lambda v: "" if pd.isna(v) else str(v))


def _no_value(v: object) -> bool:
    """A cell that holds nothing: None, NaN, or pandas' NA and NaT (a DataFrame's nullable
    columns, given to ``Synthesizer.fit``), which would otherwise read as the text '<NA>'."""
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def _coerce_column(s: pd.Series, col: Column, file: str) -> tuple[pd.Series, list[Violation]]:
    bad: list[Violation] = []
    # the declared tokens and date format are how text spells a value; native typed cells
    # (Parquet booleans and timestamps) are values already
    declared_text = _holds_text(s)
    text = as_text(s).reset_index(drop=True)
    missing = text.str.lower().isin(MISSING_TOKENS)

    def report(mask: np.ndarray | pd.Series, problem: str) -> None:
        bad.extend(_reported(text, mask, col.name, file, problem))

    too_long = text.str.len() > MAX_FIELD_CHARS
    if too_long.any():
        report(too_long, f"field longer than {MAX_FIELD_CHARS} characters")
        text = text.where(~too_long, "")
    if not col.nullable:
        report(missing, "missing value, but the schema does not allow missing values")

    if col.type == "numerical":
        values = pd.to_numeric(text.where(~missing, None), errors="coerce")
        unparsable = values.isna() & ~missing
        report(unparsable, "not a number")
        arr = values.to_numpy(dtype=float)
        infinite = np.isinf(arr)
        report(infinite, "infinite value")
        finite = np.isfinite(arr)
        oob = finite & ((arr < float(col.min)) | (arr > float(col.max)))  # type: ignore[arg-type]
        report(oob, f"outside the public bounds [{col.min}, {col.max}]")
        arr = np.where(infinite, np.nan, arr)
        if col.subtype == "int":
            frac = finite & (np.abs(arr - np.round(arr)) > 1e-9)
            report(frac, "not an integer, but the schema says int")
            arr = np.round(arr)  # accepted values within 1e-9 of an integer are that integer
        if col.decimals is not None:
            # a text with more places parses to a float that rounding moves by far more than an ulp
            extra = finite & ~np.isclose(np.round(arr, col.decimals), arr, rtol=1e-12, atol=0.0)
            report(extra, f"more than {col.decimals} decimal places, but the schema says decimals={col.decimals}")
        if col.clock:
            report(finite & ~oob & ~is_hhmm(np.where(finite, arr, 0.0)),
                   "not a time of day written HHMM (minutes below 60), but the schema says clock HHMM")
        grid = col.grid
        if grid is not None:
            report(finite & ~oob & grid.off(np.where(finite, arr, 0.0)),
                   f"not on {grid.describe()} the schema declares")
        return pd.Series(arr, name=col.name), bad

    if col.type == "categorical":
        cats = set(col.categories or ())
        unknown = ~missing & ~text.isin(cats)
        report(unknown, f"unknown category (allowed: {_short(col.categories)})")
        return pd.Series(text.where(~missing, None).astype(object), name=col.name), bad

    if col.type == "boolean":
        if col.true_token is not None and declared_text:
            is_true, is_false = text == col.true_token, text == col.false_token
            report(~missing & ~is_true & ~is_false,
                   f"not one of the declared tokens {col.true_token!r} / {col.false_token!r}")
        else:
            low = text.str.lower()
            is_true, is_false = low.isin(TRUE_TOKENS), low.isin(FALSE_TOKENS)
            report(~missing & ~is_true & ~is_false, "not a boolean (true/false, yes/no, 1/0)")
        vals = np.where(is_true, True, np.where(is_false, False, None))
        return pd.Series(vals, name=col.name, dtype=object), bad

    # datetime
    fmt = col.datetime_format if col.datetime_format and declared_text else "mixed"
    parsed = pd.to_datetime(text.where(~missing, None), errors="coerce", format=fmt)
    report(parsed.isna() & ~missing,
           "not a date/time" if fmt == "mixed" else f"not a date/time in the declared format {fmt!r}")
    lo, hi = pd.Timestamp(col.min), pd.Timestamp(col.max)
    report(parsed.notna() & ((parsed < lo) | (parsed > hi)), f"outside the public range [{col.min}, {col.max}]")
    return pd.Series(parsed, name=col.name), bad


def _short(cats: tuple[str, ...] | None, n: int = 8) -> str:
    cats = cats or ()
    body = ", ".join(cats[:n])
    return body + (f", ... {len(cats) - n} more" if len(cats) > n else "")


def for_output(df: pd.DataFrame, schema: Schema, text: bool = False) -> pd.DataFrame:
    """A typed table in the schema's declared form, so a written file reads like the input.

    Always: integer columns as nullable integers (files say ``49``, not ``49.0``) and floats
    rounded to their ``decimals``. With ``text`` (CSV), also the declared texts: boolean
    tokens, ``decimals`` places written out (``12.50``), dates in their ``datetime_format``.
    Parquet keeps native booleans and timestamps, its own exact form.
    """
    df = df.copy()
    for col in schema.columns:
        if col.name in df:
            df[col.name] = _output_column(df[col.name], col, text)
    return df


def _output_column(s: pd.Series, col: Column, text: bool) -> pd.Series:
    missing = s.isna().to_numpy()
    if col.type == "numerical" and col.subtype == "int":
        return pd.Series(pd.array(np.round(s.to_numpy(dtype=float, na_value=np.nan)), dtype="Float64")
                         .astype("Int64"), index=s.index, name=s.name)
    if col.type == "numerical" and col.decimals is not None:
        x = np.round(s.to_numpy(dtype=float, na_value=np.nan), col.decimals)
        if not text:
            return pd.Series(x, index=s.index, name=s.name)
        shown = [None if m else f"{v:.{col.decimals}f}" for v, m in zip(x, missing)]
        return pd.Series(shown, index=s.index, name=s.name, dtype=object)
    if text and col.type == "boolean" and col.true_token is not None:
        truth = s.astype(object).map(lambda v: None if v is None or v is pd.NA else _truth(v, col))
        shown = truth.map({True: col.true_token, False: col.false_token})
        return shown.where(~missing, None).astype(object)
    if text and col.type == "datetime" and col.datetime_format is not None:
        return pd.to_datetime(s).dt.strftime(col.datetime_format).where(~missing, None).astype(object)
    return s


def _truth(value: object, col: Column) -> bool | None:
    """A boolean cell as a bool: typed frames hold bools, raw ones may hold any accepted text."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if value in (col.true_token, col.false_token):
        return value == col.true_token
    low = str(value).strip().lower()
    return True if low in TRUE_TOKENS else False if low in FALSE_TOKENS else None
