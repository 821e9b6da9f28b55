"""SHA-256 of JSON data in one canonical spelling, for records that must detect their own edits.

The canonical form (sorted keys, no whitespace, ASCII) does not depend on how a file was
indented or in which order its keys were written, so a record re-read from disk hashes to
the same value it had when it was written. Python floats survive a JSON round trip exactly
(``repr`` is shortest-round-trip), so numbers do too.

These digests are unkeyed: anyone who can edit a record can recompute them. They detect
accidental and naive edits (a value changed by hand, an entry dropped), not a forger.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def json_sha256(obj: Any) -> str:
    """Hex SHA-256 of ``obj``'s canonical JSON."""
    return hashlib.sha256(canonical_json(obj).encode("ascii")).hexdigest()


def as_stored(obj: Any) -> Any:
    """``obj`` as it reads back from a JSON file (tuples become lists, ...), so its digest is stable."""
    return json.loads(json.dumps(obj))


def arrays_digest(arrays: list[np.ndarray]) -> str:
    """SHA-256 over dtype, shape and bytes of each array: coordinator and client compute it identically."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()
