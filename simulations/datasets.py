"""Public tables bundled with fedsynth (offline), each with a schema written from its
documentation rather than read off its rows."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from fedsynth.common.errors import FedsynthError
from fedsynth.common.data.schema import Schema
from fedsynth.common.data.tables import load_table


@dataclass(frozen=True)
class Bundled:
    name: str
    table: str
    schema: str
    label: str
    natural_column: str
    description: str


BUNDLED = {
    "adult": Bundled("adult", "adult.csv.gz", "adult.schema.json", "income", "race",
                     "UCI Adult / Census Income (CC BY 4.0), 32,560 rows x 15 columns"),
}


def data_dir() -> Path:
    return Path(str(resources.files("fedsynth") / "data"))


def bundled_paths(name: str) -> tuple[Path, Path]:
    if name not in BUNDLED:
        raise FedsynthError(f"unknown bundled dataset {name!r}; available: {sorted(BUNDLED)}")
    b = BUNDLED[name]
    return data_dir() / b.table, data_dir() / b.schema


def load_dataset(data: str, schema_path: str | Path | None = None) -> tuple[pd.DataFrame, Schema, Bundled | None]:
    """``data`` is a bundled name or a CSV/Parquet path (then ``schema_path`` is required)."""
    if data in BUNDLED:
        table, sch = bundled_paths(data)
        schema = Schema.load(schema_path or sch)
        return load_table(table, schema), schema, BUNDLED[data]
    if schema_path is None:
        raise FedsynthError(f"{data}: not a bundled dataset ({sorted(BUNDLED)}); give --schema for a CSV/Parquet file")
    schema = Schema.load(schema_path)
    return load_table(data, schema), schema, None
