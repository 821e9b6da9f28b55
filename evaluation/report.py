"""Writing an evaluation result: ``report.json`` for machines, ``report.html`` for people."""

from __future__ import annotations

import json
from pathlib import Path

from fedsynth.common.atomic import atomic_write_text
from fedsynth.evaluation.html_report import render_html
from fedsynth.evaluation.jsonable import JsonObject, to_jsonable


def write_report(result: JsonObject, out_dir: str | Path) -> tuple[Path, Path]:
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
