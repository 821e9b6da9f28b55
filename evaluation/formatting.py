"""Text formatting shared by the HTML report and its plots: escaping, numbers, percentages."""

from __future__ import annotations

import html
from typing import Any


def esc(text: Any) -> str:
    """HTML-escaped text (quotes too, so it is safe inside attributes)."""
    return html.escape(str(text), quote=True)


def fmt_num(x: Any, digits: int = 3) -> str:
    """A number with fixed decimals, ``n/a`` for a metric that was not computed (null)."""
    if x is None:
        return "n/a"
    return f"{x:.{digits}f}"


def fmt_pct(x: Any, digits: int = 1) -> str:
    """A share as a percentage, ``n/a`` for null."""
    if x is None:
        return "n/a"
    return f"{100 * x:.{digits}f} %"


def fmt_ci(ci: list[float] | None, pct: bool = False) -> str:
    """A confidence interval as ``[lo, hi]``; empty when there is none."""
    if not ci:
        return ""
    f = fmt_pct if pct else fmt_num
    return f"[{f(ci[0])}, {f(ci[1])}]"


def mpl_text(text: Any) -> str:
    """Text for matplotlib: ``$`` would start mathtext and mis-draw or crash on user strings."""
    return str(text).replace("$", r"\$")


def shorten(text: str, n: int = 28) -> str:
    """``text`` cut to ``n`` characters with an ellipsis, for plot labels."""
    return text if len(text) <= n else text[: n - 1] + "…"
