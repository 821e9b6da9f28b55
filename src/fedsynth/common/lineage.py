"""Provenance for every synthetic file fedsynth writes.

Each table gets a sidecar ``<file>.lineage.json`` (and, for Parquet, the same fields as
key-value metadata) saying it is synthetic, which model made it, under which guarantee, and
the SHA-256 of the file's bytes so that ``fedsynth lineage FILE`` can detect edits.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from fedsynth.common.atomic import atomic_write_text
from fedsynth.common.errors import FedsynthError
from fedsynth.common.inputs import read_json_object
from fedsynth.common.outputs import SYNTHETIC_TABLE
from fedsynth.common.tables import write_table


def sidecar_path(path: Path) -> Path:
    return SYNTHETIC_TABLE.marker_path(path)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def provenance(meta: dict[str, Any], rows: int, conditions: dict[str, Any] | None = None) -> dict[str, Any]:
    """Lineage fields from a model's metadata (as produced by ``Synthesizer.to_state``)."""
    from fedsynth import __version__

    priv = meta.get("privacy", {})
    out = {
        "synthetic": True,
        "generator": "fedsynth",
        "fedsynth_version": __version__,
        "model_id": meta.get("model_id"),
        "model_format": meta.get("format"),
        "schema_hash": meta.get("schema_hash"),
        "rows": rows,
        "conditions": conditions or {},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "round": meta.get("round"),
        "privacy": {
            "epsilon": priv.get("epsilon_spent"),
            "delta": priv.get("delta"),
            "accountant": priv.get("accountant"),
        },
    }
    if "federation" in meta:
        out["federation"] = meta["federation"]
    return out


def write_synthetic(frames: pd.DataFrame | Iterable[pd.DataFrame], path: str | Path, lineage: dict[str, Any],
                    schema=None) -> Path:
    """Write the table (atomically; ``frames`` may be chunks, streamed), then its sidecar with the table's hash."""
    path = Path(path)
    flat = {"fedsynth.lineage": json.dumps(lineage, sort_keys=True)}
    write_table(frames, path, metadata=flat, schema=schema)
    record = dict(lineage, file=path.name, sha256=file_sha256(path))
    atomic_write_text(sidecar_path(path), json.dumps(record, indent=2) + "\n")
    return path


def read_lineage(path: str | Path) -> tuple[dict[str, Any], bool | None]:
    """Return (lineage record, whether the file matches its recorded hash; None if no hash)."""
    path = Path(path)
    if not path.exists():
        raise FedsynthError(f"{path}: file not found")
    side = sidecar_path(path)
    if side.exists():
        record = read_json_object(side, label="lineage sidecar ")
        return record, record.get("sha256") == file_sha256(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        meta = pq.read_schema(path).metadata or {}
        raw = meta.get(b"fedsynth.lineage")
        if raw:
            return json.loads(raw), None  # embedded metadata, but no sidecar hash to check
    raise FedsynthError(f"{path}: no fedsynth lineage found (no {side.name}); not written by fedsynth, or the sidecar was lost")
