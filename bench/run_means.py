"""A settings benchmark's options, runs and their per-table and suite means: what bench/marginal_fit.py,
bench/binning.py and bench/drafted_bins.py share (bench/marginal_fit_settings.py its options and means),
one row per table and setting, then the suite's row (every table's runs together)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from fedsynth.simulations.datasets import BUNDLED


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


def add_run_options(ap: argparse.ArgumentParser, repeats: int) -> None:
    """The options every settings benchmark takes: which tables, how many runs, torch threads, JSON out."""
    ap.add_argument("--tables", nargs="+", default=sorted(BUNDLED), choices=sorted(BUNDLED))
    ap.add_argument("--repeats", type=int, default=repeats)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="write every run here")


def interleaved(one_run: Callable[[str, object, int], dict], tables: Sequence[str], settings: Sequence,
                repeats: int) -> list[dict]:
    """``one_run(table, setting, repeat)`` for every table and setting, ``repeats`` times, the
    settings interleaved so that machine noise hits them alike; each run printed as JSON as it ends."""
    runs = []
    for r in range(repeats):
        for table in tables:
            for setting in settings:
                runs.append(one_run(table, setting, r))
                print(json.dumps(runs[-1]), flush=True)
    return runs


def print_means(runs: list[dict], tables: Sequence[str], key: str, settings: Sequence, measures: Sequence[str],
                labels: Sequence[str] | None = None) -> None:
    """Each measure's mean per table and setting (``run[key]``), then over the suite."""
    print(f"\n{'table':8} {key:>9} " + " ".join(f"{m:>6}" for m in (labels or measures)))
    for table, setting, cell in cells(runs, list(tables), key, list(settings)):
        print(f"{table:8} {str(setting):>9} " + " ".join(fmt(mean(r[m] for r in cell)) for m in measures))
