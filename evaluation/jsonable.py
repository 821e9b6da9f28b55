"""Plain JSON values from what the metrics return (dataclasses, numpy scalars and arrays, NaN, paths).

The metrics return dataclasses; ``report.json`` is their fields in declaration order. A field
declared with ``metadata=OMIT_IF_NONE`` is left out when it is None: the sections of the report
have variants (a column without quantile bins, attacks that were skipped), and a key a variant
does not have is absent from the file, not null.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

JsonObject = dict[str, Any]
"""A JSON object of ``report.json`` (the file format): what ``evaluate`` returns, the HTML is drawn from."""

_OMIT = "omit_if_none"
OMIT_IF_NONE: Mapping[str, bool] = MappingProxyType({_OMIT: True})
"""Field metadata: ``field(default=None, metadata=OMIT_IF_NONE)`` leaves the key out when None."""


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types only: dataclasses as dicts of their fields, numpy scalars/arrays unwrapped,
    NaN and infinities null."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in fields(obj)
                if not (f.metadata.get(_OMIT) and getattr(obj, f.name) is None)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)
