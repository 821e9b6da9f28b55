"""Per-table and suite means of a benchmark's runs: the summary bench/marginal_fit.py,
bench/marginal_fit_settings.py and bench/drafted_bins.py print after their runs, one row per
table and setting, then the suite's row (every table's runs together)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np


def mean(values: Iterable[float | None]) -> float | None:
    """The mean of the values that are not None; None when there are none (e.g. no strong pairs)."""
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def fmt(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


def cells(runs: list[dict], tables: list[str], key: str, settings: list) -> Iterator[tuple[str, object, list[dict]]]:
    """(table, setting, its runs) for each table and then "suite", each setting (``run[key]``) in turn."""
    for table in [*tables, "suite"]:
        for setting in settings:
            yield table, setting, [r for r in runs if r[key] == setting and table in ("suite", r["table"])]
