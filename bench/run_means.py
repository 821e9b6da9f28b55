"""A settings benchmark's options, settings, scores, runs and their per-table and suite means: what
bench/marginal_fit.py, binning.py, drafted_bins.py, exact_ints.py and model_settings.py share
(bench/marginal_fit_settings.py its options, settings and means), one row per table and setting, then
the suite's row (every table's runs together)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedsynth.common.data.schema import Schema
from fedsynth.common.synthesizer import Synthesizer
from fedsynth.simulations.datasets import BUNDLED
from fedsynth.simulations.quality import QUICK_DETECTION_ROWS, quick_quality

SCORES = ("tstr_auc", "tvd_1way", "tvd_2way", "detection_auc", "tvd_1way_max")  # scores() keys, then kept


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


def paired_differences(runs: list[dict], key: str, reference: object, cell: list[dict],
                       measures: Sequence[str]) -> list[float | None]:
    """Each measure's mean difference of ``cell``'s runs from the run of the ``reference`` setting
    (``run[key]``) on the same table and seed: the paired comparison the settings benchmarks print."""
    ref = {(r["table"], r["seed"]): r for r in runs if r[key] == reference}
    return [mean(None if r[m] is None else r[m] - ref[(r["table"], r["seed"])][m] for r in cell) for m in measures]


def parse_setting(text: str) -> dict[str, Any]:
    """``loss=kl,lr=0.01`` -> {"loss": "kl", "lr": 0.01}: numbers as numbers, the rest as text."""
    out: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        try:
            out[key] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            out[key] = value
    return out


def scores(synth: Synthesizer, train: pd.DataFrame, holdout: pd.DataFrame, schema: Schema, table: str,
           seed: int, detection_rows: int = QUICK_DETECTION_ROWS) -> dict:
    """A fitted synthesizer's :data:`SCORES` on as many rows as ``train``, the share of strong real
    pairs it keeps (None without any) and its worst column; detection on ``detection_rows`` a side."""
    q = quick_quality(train, holdout, synth.sample(len(train), seed=seed), schema, BUNDLED[table].label, seed,
                      detection_rows=detection_rows)
    kept = q["strong_pairs_kept"] / q["strong_pairs"] if q.get("strong_pairs") else None
    return {**{m: q.get(m) for m in SCORES}, "kept": kept, "worst_column": q.get("worst_column")}


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


def run_and_report(one_run: Callable[[str, object, int], dict], args: argparse.Namespace, key: str,
                   settings: Sequence, measures: Sequence[str], labels: Sequence[str] | None = None) -> None:
    """:func:`interleaved` over ``args.tables`` and ``args.repeats``, :func:`print_means`, and every
    run written to ``args.json`` when given (:func:`add_run_options`)."""
    runs = interleaved(one_run, args.tables, settings, args.repeats)
    print_means(runs, args.tables, key, settings, measures, labels)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")
