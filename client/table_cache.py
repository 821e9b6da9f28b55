"""The institution's table, read, validated and encoded once per process, not once per message.

In simulation one process answers many messages for several institutions (each of Flower's
actors serves every simulated client in turn), and reading, validating and encoding a table
was most of a shared-noise round's client time (docs/federated.md). Entries are keyed by the
file's identity (resolved path, device, inode, size, modification time) and the schema's hash,
so an edited or replaced file is read and validated again. The cache holds at most
``max_rows`` rows in all, least recently used out first (the newest entry always stays), and
lives only in this process's memory: nothing is written anywhere.

Callers must treat what it returns as read-only: the same objects are handed out again.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.data.schema import Schema
from fedsynth.common.data.tables import load_table

# Rows kept over all entries: a simulation's silos together, with room to spare, in tens of MiB.
DEFAULT_MAX_ROWS = 2_000_000


def encoder_key(edges: Mapping[str, Sequence[float]] | None) -> str:
    """What tells two encoders of one schema apart: their bin edges (none: the schema's bins)."""
    canonical = json.dumps({k: [float(e) for e in v] for k, v in (edges or {}).items()}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class _Entry:
    table: pd.DataFrame
    encoded: dict[str, np.ndarray] = field(default_factory=dict)


class TableCache:
    """Validated tables and their encodings by file identity and schema, in this process only."""

    def __init__(self, max_rows: int = DEFAULT_MAX_ROWS,
                 loader: Callable[[Path, Schema], pd.DataFrame] = load_table) -> None:
        self.max_rows = max_rows
        self._load = loader
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()

    def table(self, path: str | Path, schema: Schema) -> pd.DataFrame:
        """The validated table at ``path`` (raises as :func:`load_table` does; a failure is not kept)."""
        return self._entry(Path(path), schema).table

    def encoded(self, path: str | Path, schema: Schema, encoder: TableEncoder, key: str) -> np.ndarray:
        """``encoder.encode`` of the table at ``path``; ``key`` is :func:`encoder_key` of its edges."""
        entry = self._entry(Path(path), schema)
        if key not in entry.encoded:
            entry.encoded[key] = encoder.encode(entry.table)
        return entry.encoded[key]

    def _entry(self, path: Path, schema: Schema) -> _Entry:
        try:
            st = path.stat()
        except OSError:
            return _Entry(self._load(path, schema))  # the loader says what is wrong with the path
        key = (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, schema.hash())
        entry = self._entries.get(key)
        if entry is None:
            entry = _Entry(self._load(path, schema))
            self._entries[key] = entry
            self._evict()
        self._entries.move_to_end(key)
        return entry

    def _evict(self) -> None:
        rows = sum(len(e.table) for e in self._entries.values())
        while len(self._entries) > 1 and rows > self.max_rows:
            _, old = self._entries.popitem(last=False)
            rows -= len(old.table)
