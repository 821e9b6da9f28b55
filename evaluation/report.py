"""Writing an evaluation result: ``report.json`` for machines, ``report.html`` for people."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from fedsynth.common.atomic import atomic_write_text
from fedsynth.evaluation.html_report import render_html


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types only: numpy scalars/arrays unwrapped, NaN and infinities become null."""
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


def write_report(result: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir`` atomically; return their paths.

    Both are fully rendered in memory before either file is replaced, so a failure while
    drawing leaves any previous report untouched rather than a new JSON next to an old HTML.
    """
    out = Path(out_dir)
    clean = to_jsonable(result)
    json_text = json.dumps(clean, indent=2, allow_nan=False) + "\n"
    html_text = render_html(clean)
    json_path, html_path = out / "report.json", out / "report.html"
    atomic_write_text(json_path, json_text)
    atomic_write_text(html_path, html_text)
    return json_path, html_path
