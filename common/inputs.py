"""Reading the small text files a user hands fedsynth: schemas, configs, model cards, sidecars.

Whatever is wrong with such a file (missing, a folder, unreadable, not UTF-8, not JSON, JSON of
the wrong shape) becomes one :class:`FedsynthError` naming the file, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fedsynth.common.errors import FedsynthError

_JSON_TYPES = {list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def read_text(path: str | Path, *, label: str = "", error: type[FedsynthError] = FedsynthError) -> str:
    """The file's text as UTF-8; ``label`` (e.g. ``"--config "``) prefixes the path in messages."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{label}{p}: file not found") from None
    except IsADirectoryError:
        raise error(f"{label}{p}: is a folder, expected a file") from None
    except UnicodeDecodeError as exc:
        raise error(f"{label}{p}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                    "save it with UTF-8 encoding") from None
    except OSError as exc:
        raise error(f"{label}{p}: cannot read ({exc.strerror or exc})") from None


def read_json(path: str | Path, *, label: str = "", error: type[FedsynthError] = FedsynthError) -> Any:
    p = Path(path)
    try:
        return json.loads(read_text(p, label=label, error=error))
    except json.JSONDecodeError as exc:
        raise error(f"{label}{p}: corrupt, not valid JSON ({exc.msg} at line {exc.lineno})") from None


def read_json_object(path: str | Path, *, label: str = "", error: type[FedsynthError] = FedsynthError
                     ) -> dict[str, Any]:
    """A JSON file that must hold an object (``{...}``), as every fedsynth metadata file does."""
    raw = read_json(path, label=label, error=error)
    if not isinstance(raw, dict):
        raise error(f"{label}{path}: expected a JSON object {{...}}, found a JSON "
                    f"{_JSON_TYPES.get(type(raw), type(raw).__name__)}")
    return raw
