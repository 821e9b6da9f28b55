"""The client's per-process table cache: read once, read again when the file changes, never keep a failure."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fedsynth.client.table_cache import TableCache, encoder_key
from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.data.tables import load_table, write_table
from fedsynth.common.errors import DataError


class CountingLoader:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, path, schema):
        self.calls.append(str(path))
        return load_table(path, schema)


@pytest.fixture()
def silo(tmp_path, adult):
    path = tmp_path / "silo.csv"
    write_table(adult.sample(200, random_state=1), path)
    return path


def test_a_table_is_read_once_then_again_only_when_its_file_changes(silo, adult, adult_schema):
    loader = CountingLoader()
    cache = TableCache(loader=loader)
    first = cache.table(silo, adult_schema)
    assert cache.table(silo, adult_schema) is first and len(loader.calls) == 1
    # the institution replaces its table: the new rows are read (and validated) again
    write_table(adult.sample(150, random_state=2), silo)
    st = silo.stat()
    os.utime(silo, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a coarse clock could tie
    assert len(cache.table(silo, adult_schema)) == 150 and len(loader.calls) == 2


def test_a_table_that_fails_validation_is_not_kept(silo, adult_schema):
    loader = CountingLoader()
    cache = TableCache(loader=loader)
    good = silo.read_text()
    lines = good.splitlines()
    silo.write_text("\n".join([lines[0], "abc" + lines[1][lines[1].index(","):], *lines[2:]]) + "\n")
    for _ in range(2):  # asked twice, refused twice: each time from the file
        with pytest.raises(DataError, match="abc"):
            cache.table(silo, adult_schema)
    assert len(loader.calls) == 2
    with pytest.raises(DataError, match="nowhere.csv"):  # a missing file gets the loader's own error
        cache.table(silo.with_name("nowhere.csv"), adult_schema)


def test_least_recently_used_tables_go_first_beyond_the_row_limit(tmp_path, adult, adult_schema):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"silo-{i}.csv")
        write_table(adult.sample(100, random_state=i), paths[-1])
    loader = CountingLoader()
    cache = TableCache(max_rows=250, loader=loader)
    cache.table(paths[0], adult_schema)
    cache.table(paths[1], adult_schema)
    cache.table(paths[0], adult_schema)  # 0 is now the most recent
    cache.table(paths[2], adult_schema)  # 300 rows > 250: 1 goes
    assert len(loader.calls) == 3
    cache.table(paths[0], adult_schema)
    assert len(loader.calls) == 3
    cache.table(paths[1], adult_schema)
    assert loader.calls[-1] == str(paths[1]) and len(loader.calls) == 4
    one = TableCache(max_rows=10, loader=loader)  # a table larger than the limit is still kept alone
    assert one.table(paths[0], adult_schema) is one.table(paths[0], adult_schema)


def test_encodings_are_kept_per_bin_edges(silo, adult_schema):
    cache = TableCache()
    plain = TableEncoder(adult_schema)
    x = cache.encoded(silo, adult_schema, plain, encoder_key(None))
    np.testing.assert_array_equal(x, plain.encode(load_table(silo, adult_schema)))
    assert cache.encoded(silo, adult_schema, plain, encoder_key(None)) is x
    edges = {"age": [float(e) for e in np.linspace(17, 90, 13) ** 1.0]}  # 12 bins, as the schema's
    edges["age"][1] = 20.0  # unequal: not the schema's own bins
    other = TableEncoder(adult_schema, edges)
    y = cache.encoded(silo, adult_schema, other, encoder_key(edges))
    np.testing.assert_array_equal(y, other.encode(load_table(silo, adult_schema)))
    assert encoder_key(edges) != encoder_key(None) and not np.array_equal(x, y)
