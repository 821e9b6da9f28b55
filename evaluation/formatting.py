"""Text formatting shared by the HTML report and its plots: escaping, numbers, percentages."""

from __future__ import annotations

import html
from typing import Any


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def fmt_num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    return f"{x:.{digits}f}"


def fmt_pct(x: Any, digits: int = 1) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:.{digits}f} %"


def fmt_ci(ci: list[float] | None, pct: bool = False) -> str:
    if not ci:
        return ""
    f = fmt_pct if pct else fmt_num
    return f"[{f(ci[0])}, {f(ci[1])}]"


def mpl_text(text: Any) -> str:
    """Text for matplotlib: ``$`` would start mathtext and mis-draw or crash on user strings."""
    return str(text).replace("$", r"\$")


def shorten(text: str, n: int = 28) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
