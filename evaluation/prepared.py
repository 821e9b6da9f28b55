"""The schema-typed view of a table (:class:`PreparedTable`), the common input of every metric.

Fidelity, utility and privacy code all read the three tables (training, holdout, synthetic)
through this one conversion, so that they read them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fedsynth.common.data.schema import Column, Schema
from fedsynth.common.data.cells import FALSE_TOKENS, TRUE_TOKENS
from fedsynth.common.data.units import PARTS, part_label, parts_of

MISSING_LABEL = "(missing)"
OTHER_LABEL = "(not in schema)"
_EPOCH = pd.Timestamp("1970-01-01")


def measured_schema(schema: Schema) -> Schema:
    """The columns the metrics compare: the schema's, each timestamp (a datetime whose format writes
    a time of day) followed by its time of day in hours since midnight, a numerical column of its
    own. As days alone, a synthetic table whose stops all fall at noon would match the real one
    (docs/benchmarks.md, "A timestamp's time of day"); :func:`prepare` derives the column."""
    columns = []
    for col in schema.columns:
        columns.append(col.to_json())
        name = part_label(col.name, "time")  # as the marginal fit names it among its pairs
        if parts_of(col) == PARTS and name not in schema.names:
            columns.append({"name": name, "type": "numerical", "min": 0, "max": 24, "nullable": col.nullable,
                            "description": f"hours since midnight of {col.name!r} (derived for the metrics)"})
    if len(columns) == len(schema.columns):
        return schema
    return Schema.from_json({**schema.to_json(), "columns": columns}, source=f"{schema.name} (as measured)")


def _derived(schema: Schema) -> dict[str, str]:
    """The measured schema's time-of-day columns -> the timestamp each is read from."""
    return {part_label(c.name, "time"): c.name for c in schema.columns
            if parts_of(c) == PARTS and part_label(c.name, "time") in schema.names}


def is_discrete(col: Column) -> bool:
    """Categoricals and booleans are compared as categories; the rest as numbers."""
    return col.type in ("categorical", "boolean")


def levels(col: Column) -> tuple[str, ...]:
    """The public category list of a discrete column (booleans: ``False``, ``True``)."""
    if col.type == "boolean":
        return ("False", "True")
    return tuple(col.categories or ())


def n_codes(col: Column) -> int:
    """Codes of a discrete column: one per category, then *missing*, then *not in schema*."""
    return len(levels(col)) + 2


def code_labels(col: Column) -> list[str]:
    """The label of every code of a discrete column, in code order."""
    return [*levels(col), MISSING_LABEL, OTHER_LABEL]


def numeric_bounds(col: Column) -> tuple[float, float]:
    """Public bounds of a numerical column (datetimes: as days since 1970-01-01)."""
    if col.type == "datetime":
        return (_days(pd.Timestamp(str(col.min))), _days(pd.Timestamp(str(col.max))))
    return (float(col.min), float(col.max))  # type: ignore[arg-type]


def _days(ts: pd.Timestamp) -> float:
    if ts.tzinfo is not None:
        ts = ts.tz_convert(None)
    return float((ts - _EPOCH) / pd.Timedelta(days=1))


@dataclass(frozen=True)
class PreparedTable:
    """One table as schema-typed arrays, the common currency of every metric.

    Numericals and datetimes (as days) are float arrays with NaN for missing; categoricals
    and booleans are integer codes over :func:`code_labels`. Converting once means the three
    tables are read identically by fidelity, utility and privacy code, whatever dtype
    (object, pandas ``str``, nullable boolean) the caller's frames happen to use.
    """

    columns: dict[str, np.ndarray]
    n_rows: int

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def take(self, index: np.ndarray) -> PreparedTable:
        """The rows at ``index`` (used for subsampling with a fixed seed)."""
        return PreparedTable({k: v[index] for k, v in self.columns.items()}, len(index))

    def independent_columns(self, seed: int = 0) -> PreparedTable:
        """Every column permuted separately (seeded): the same 1-way marginals, no relation between
        columns. The report's no-relations baseline: what a synthesizer keeping no relation scores."""
        rng = np.random.default_rng(seed)
        return PreparedTable({k: v[rng.permutation(self.n_rows)] for k, v in self.columns.items()}, self.n_rows)


def prepare(df: pd.DataFrame, schema: Schema, label: str) -> PreparedTable:
    """Convert a typed frame (as from ``load_table``) into a :class:`PreparedTable`; given a
    :func:`measured_schema`, with each timestamp's time of day.

    Raises ValueError naming the table when it is empty or lacks schema columns, because a
    metric silently computed on the wrong columns would be worse than no metric.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"the {label} table must be a pandas DataFrame, got {type(df).__name__}")  # noqa: TRY004 (documented)
    derived = _derived(schema)
    absent = [c for c in schema.names if c not in df.columns and c not in derived]
    if absent:
        raise ValueError(f"the {label} table lacks schema column(s) {absent}")
    if len(df) == 0:
        raise ValueError(f"the {label} table has no rows")
    out: dict[str, np.ndarray] = {}
    for col in schema.columns:
        if col.name in derived and col.name not in df.columns:  # a timestamp's time of day, in hours
            days = out[derived[col.name]]
            out[col.name] = (days - np.floor(days)) * 24.0
            continue
        series = df[col.name].reset_index(drop=True)
        out[col.name] = _discrete_codes(series, col) if is_discrete(col) else _continuous(series, col)
    return PreparedTable(out, len(df))


def _continuous(series: pd.Series, col: Column) -> np.ndarray:
    if col.type == "datetime":
        if pd.api.types.is_datetime64_any_dtype(series):
            ts = series
        else:
            ts = pd.to_datetime(series, errors="coerce", format="mixed")
        if getattr(ts.dt, "tz", None) is not None:
            ts = ts.dt.tz_convert(None)
        return ((ts - _EPOCH) / pd.Timedelta(days=1)).to_numpy(dtype=float, na_value=np.nan)
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return np.where(np.isinf(values), np.nan, values)


def _bool_label(value: Any) -> str | None:
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    text = str(value).strip().lower()
    if text in TRUE_TOKENS:
        return "True"
    if text in FALSE_TOKENS:
        return "False"
    return text


def _discrete_codes(series: pd.Series, col: Column) -> np.ndarray:
    lv = levels(col)
    missing = series.isna().to_numpy()
    obj = series.astype(object)
    if col.type == "boolean":
        text = obj.map(lambda v: None if v is None or v is pd.NA else _bool_label(v))
    else:
        text = obj.map(lambda v: v if isinstance(v, str) else str(v))
    values = text.where(~missing, None).to_numpy(dtype=object)
    codes = pd.Categorical(values, categories=list(lv)).codes.astype(np.int64)
    codes[(codes < 0) & ~missing] = len(lv) + 1
    codes[missing] = len(lv)
    return codes
