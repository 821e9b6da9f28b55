"""Provenance for every synthetic file fedsynth writes.

Each table gets a sidecar ``<file>.lineage.json`` (and, for Parquet, the same fields as
key-value metadata) saying it is synthetic, which model made it, under which guarantee, and
the SHA-256 of the file's bytes so that ``fedsynth lineage FILE`` can detect edits.

The sidecar's own claims are hashed too: ``digests`` maps every claim (by dotted path, e.g.
``privacy.epsilon``, ``model_id``, ``sha256``) to the SHA-256 of its canonical JSON, so an edited
guarantee or model identity fails verification and is named. Like every unkeyed hash, this
detects hand edits and accidents, not someone who recomputes the digests; a sidecar without
``digests`` was written before claims were hashed, and only its file hash can be checked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from fedsynth.common.atomic import atomic_write_text
from fedsynth.common.digest import as_stored, json_sha256
from fedsynth.common.errors import FedsynthError
from fedsynth.common.inputs import read_json_object
from fedsynth.common.outputs import SYNTHETIC_TABLE
from fedsynth.common.data.tables import write_table
from fedsynth.common.timestamps import utc_now
from fedsynth.common.version import __version__

DIGESTS = "digests"


def sidecar_path(path: Path) -> Path:
    return SYNTHETIC_TABLE.marker_path(path)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def provenance(meta: dict[str, Any], rows: int, conditions: dict[str, Any] | None = None) -> dict[str, Any]:
    """Lineage fields from a model's ``synthesizer.json`` object (:func:`fedsynth.common.artifact.model_state`)."""

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
        "created": utc_now(),
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
    """Write the table (atomically; ``frames`` may be chunks, streamed), then its sidecar with the
    table's hash and its claims' digests."""
    path = Path(path)
    flat = {"fedsynth.lineage": json.dumps(lineage, sort_keys=True)}
    write_table(frames, path, metadata=flat, schema=schema)
    record = as_stored(dict(lineage, file=path.name, sha256=file_sha256(path)))
    record[DIGESTS] = {claim: json_sha256(value) for claim, value in _claims(record).items()}
    atomic_write_text(sidecar_path(path), json.dumps(record, indent=2) + "\n")
    return path


@dataclass(frozen=True)
class LineageCheck:
    """What ``fedsynth lineage`` found: the record and how much of it could be verified."""

    record: dict[str, Any]  # the claims, without their digests
    file_ok: bool | None  # the file's bytes match the recorded sha256; None: no hash (Parquet metadata only)
    claims_hashed: bool  # False: no sidecar digests (older fedsynth, or embedded metadata only)
    edited: list[str] = field(default_factory=list)  # claims that differ from what fedsynth wrote

    @property
    def ok(self) -> bool:
        return self.file_ok is not False and not self.edited


def read_lineage(path: str | Path) -> LineageCheck:
    """Read a synthetic file's lineage and check the file's hash and the sidecar's claims."""
    path = Path(path)
    if not path.exists():
        raise FedsynthError(f"{path}: file not found")
    side = sidecar_path(path)
    if side.exists():
        record = read_json_object(side, label="lineage sidecar ")
        digests = record.pop(DIGESTS, None)
        file_ok = record.get("sha256") == file_sha256(path)
        if not isinstance(digests, dict):
            return LineageCheck(record, file_ok, claims_hashed=False)
        return LineageCheck(record, file_ok, claims_hashed=True, edited=_edited_claims(record, digests))
    if path.suffix.lower() in (".parquet", ".pq"):
        meta = pq.read_schema(path).metadata or {}
        raw = meta.get(b"fedsynth.lineage")
        if raw:  # embedded metadata, but no sidecar hash to check
            return LineageCheck(json.loads(raw), file_ok=None, claims_hashed=False)
    raise FedsynthError(f"{path}: no fedsynth lineage found (no {side.name}); not written by fedsynth, or the sidecar was lost")


def _claims(record: dict[str, Any]) -> dict[str, Any]:
    """Every claim of ``record`` by dotted path (nested objects are walked, lists are one claim)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            out[prefix] = value

    walk("", {k: v for k, v in record.items() if k != DIGESTS})
    return out


def _edited_claims(record: dict[str, Any], digests: dict[str, Any]) -> list[str]:
    """Claims changed, added or removed since their digests were written, sorted by path."""
    claims = _claims(record)
    changed = {c for c, v in claims.items() if digests.get(c) != json_sha256(v)}
    removed = set(digests) - set(claims)
    return sorted(changed | removed)
