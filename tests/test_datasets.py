"""The bundled table suite: every table ships, validates, has a binary task and a licence."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from fedsynth.common.data.schema import Schema
from fedsynth.common.data.tables import validate_file
from fedsynth.common.errors import FedsynthError
from fedsynth.simulations.datasets import (
    BUNDLED,
    Bundled,
    bundled_paths,
    data_dir,
    load_dataset,
)

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
MAX_COMPRESSED_BYTES = 1_500_000


@pytest.fixture(scope="module", params=sorted(BUNDLED))
def bundled(request) -> tuple[Bundled, pd.DataFrame, Schema]:
    df, schema, b = load_dataset(request.param)
    assert b is BUNDLED[request.param]
    return b, df, schema


def test_table_validates_against_its_schema_with_zero_violations(bundled):
    b, _, _ = bundled
    table, schema_path = bundled_paths(b.name)
    report = validate_file(table, Schema.load(schema_path))
    assert report.violations == []
    assert report.rows >= 10_000


def test_table_has_mixed_types_and_stays_small(bundled):
    b, df, schema = bundled
    types = {c.type for c in schema.columns}
    assert "numerical" in types and types & {"categorical", "boolean"}
    assert list(df.columns) == schema.names
    assert (data_dir() / b.table).stat().st_size < MAX_COMPRESSED_BYTES


def test_label_is_binary_with_the_stated_positive_share(bundled):
    b, df, schema = bundled
    col = schema.column(b.label)
    assert col.type == "categorical" and len(col.categories) == 2
    # the ROC AUC of quick_quality scores the last class; it must be the one Bundled names
    assert col.categories[-1] == b.positive
    assert df[b.label].notna().all()
    share = float((df[b.label] == b.positive).mean())
    assert abs(share - b.positive_share) <= 0.0005 + 1e-9


def test_natural_column_splits_into_several_institutions(bundled):
    b, df, schema = bundled
    assert schema.column(b.natural_column).type == "categorical"
    assert df[b.natural_column].nunique() >= 3


def test_a_dirichlet_split_skews_the_label_only_not_the_tables_row_order():
    """flights is sorted by date: a label-skew split must not also give each institution a
    period of its own (it did, before the rows were shuffled: silos of Jan-Mar, Nov-Dec, ...)."""
    from fedsynth.simulations.partition import partition

    df, _, b = load_dataset("flights")
    assert df["date"].is_monotonic_increasing
    silos = partition(df, "dirichlet", 5, label=b.label, alpha=0.5, seed=0)
    shares = [float((s[b.label] == b.positive).mean()) for s in silos]
    assert max(shares) - min(shares) > 0.2  # the label is skewed
    whole = df["date"].quantile([0.25, 0.75])
    for s in silos:
        q = s["date"].quantile([0.25, 0.75])
        assert abs((q - whole).dt.days).max() < 45, (q.tolist(), whole.tolist())  # every silo spans the year


def test_licence_file_names_the_licence_and_the_source(bundled):
    b, _, _ = bundled
    path = data_dir() / b.licence_file
    text = path.read_text(encoding="utf-8")
    assert b.licence in text
    assert b.table in text  # says which bundled file it covers


def test_suite_covers_a_rare_class_and_a_wide_or_dated_table():
    assert len(BUNDLED) >= 3
    assert any(b.positive_share <= 0.15 for b in BUNDLED.values())
    wide_or_dated = []
    for name in BUNDLED:
        schema = Schema.load(bundled_paths(name)[1])
        if len(schema.columns) >= 20 or any(c.type == "datetime" for c in schema.columns):
            wide_or_dated.append(name)
    assert wide_or_dated


def test_every_bundled_file_is_in_the_package_data():
    globs = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]["fedsynth"]
    for b in BUNDLED.values():
        for name in (b.table, b.schema, b.licence_file):
            assert any(fnmatch.fnmatch(f"data/{name}", g) for g in globs), name


def test_unknown_dataset_name_is_refused_with_the_available_names():
    with pytest.raises(FedsynthError, match="flights"):
        bundled_paths("nope")
