"""Public tables bundled with fedsynth (offline), each with a schema written from its
documentation rather than read off its rows."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd
from fedsynth.common.data.schema import Schema
from fedsynth.common.data.tables import load_table
from fedsynth.common.errors import FedsynthError


@dataclass(frozen=True)
class Bundled:
    """One bundled table: its files, its prediction task and where its licence is stated.

    Attributes:
        name: the ``--data`` name.
        table, schema: file names in ``fedsynth/data``.
        label: the binary prediction target (TSTR, Dirichlet skew).
        positive: the label's positive class, listed last in the schema's categories (the
            class ROC AUC scores).
        positive_share: share of ``positive`` in the bundled rows, rounded to 3 places.
        natural_column: the column a natural partition splits institutions by.
        licence: the licence's name, as ``LICENSE-<name>.md`` states it.
        description: one line for help texts and docs.
    """

    name: str
    table: str
    schema: str
    label: str
    positive: str
    positive_share: float
    natural_column: str
    licence: str
    description: str

    @property
    def licence_file(self) -> str:
        return f"LICENSE-{self.name}.md"


# The benchmark suite (bench/suite.py): every default is chosen by its mean over these tables.
BUNDLED = {
    "adult": Bundled("adult", "adult.csv.gz", "adult.schema.json", "income", ">50K", 0.241, "race",
                     "CC BY 4.0", "UCI Adult / Census Income (CC BY 4.0), 32,560 rows x 15 columns"),
    "flights": Bundled("flights", "flights.csv.gz", "flights.schema.json", "late", "yes", 0.264, "origin",
                       "CC0 1.0", "NYC flights 2013 with the weather at departure (nycflights13, CC0), "
                       "50,000 of 336,776 rows x 18 columns, a date column; label: arrived 15+ min late "
                       "or cancelled"),
    "taxi": Bundled("taxi", "taxi.csv.gz", "taxi.schema.json", "tip", "no", 0.079, "company",
                    "MIT", "Chicago taxi trips 2022 (modeldata, MIT), 10,000 rows x 7 columns; "
                    "label: no tip (rare, 7.9%)"),
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
