"""Draft a schema from a local table, for its owner to review before sharing.

Everything read here comes from private rows, so the draft is a starting point for a human,
never something to send as is: bounds are widened to round numbers, category lists are
flagged, and every column whose public description must be checked gets a warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedsynth.common.data.schema import Column, Schema
from fedsynth.common.data.tables import FALSE_TOKENS, MISSING_TOKENS, TRUE_TOKENS

MAX_CATEGORIES = 100


@dataclass
class Draft:
    schema: Schema
    warnings: list[str]


def _round_out(lo: float, hi: float) -> tuple[float, float]:
    """Widen [lo, hi] to round numbers so the exact private extremes are not published."""
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    step = 10 ** math.floor(math.log10(span)) if span > 0 else 1.0
    return math.floor(lo / step) * step, math.ceil(hi / step) * step + (step if math.ceil(hi / step) * step == hi else 0)


def draft_schema(raw: pd.DataFrame, name: str = "table") -> Draft:
    warnings: list[str] = [
        "This schema was read off private rows. Before sharing it, replace bounds and "
        "category lists with public knowledge (documentation, code lists, regulations)."
    ]
    cols: list[Column] = []
    drop: list[str] = []
    for cname in raw.columns:
        text = raw[cname].astype(str).str.strip()
        missing = text.str.lower().isin(MISSING_TOKENS)
        nullable = bool(missing.any())
        present = text[~missing]
        if present.empty:
            warnings.append(f"column {cname!r}: no values; dropped")
            drop.append(cname)
            continue
        low = present.str.lower()
        if low.isin(TRUE_TOKENS | FALSE_TOKENS).all() and low.nunique() <= 2 and not low.isin({"0", "1"}).all():
            cols.append(Column(cname, "boolean", nullable=nullable))
            continue
        nums = pd.to_numeric(present, errors="coerce")
        if nums.notna().all() and np.isfinite(nums).all():
            is_int = bool((nums == np.round(nums)).all())
            lo, hi = _round_out(float(nums.min()), float(nums.max()))
            if is_int:
                lo, hi = int(lo), int(hi)
            zero_share = float((nums == 0).mean())
            pm = (0.0,) if zero_share > 0.2 and lo <= 0 <= hi else ()
            positive = nums[nums > 0]
            skewed = lo >= 0 and len(positive) > 10 and float(positive.max()) > 20 * float(positive.median())
            cols.append(Column(cname, "numerical", subtype="int" if is_int else "float", min=lo, max=hi,
                               nullable=nullable, point_masses=pm, scale="log" if skewed else "linear",
                               bins=12))
            warnings.append(f"column {cname!r}: bounds [{lo}, {hi}] widened from the data; confirm them from public knowledge")
            if pm:
                warnings.append(f"column {cname!r}: {zero_share:.0%} zeros, declared 0 as a point mass")
            continue
        dates = pd.to_datetime(present, errors="coerce", format="mixed")
        if dates.notna().all():
            lo_d = dates.min().normalize() - pd.DateOffset(years=1)
            hi_d = dates.max().normalize() + pd.DateOffset(years=1)
            cols.append(Column(cname, "datetime", min=str(lo_d.date().replace(month=1, day=1)),
                               max=str(hi_d.date().replace(month=12, day=31)), nullable=nullable))
            warnings.append(f"column {cname!r}: date range widened from the data; confirm it")
            continue
        uniq = present.unique()
        if len(uniq) > MAX_CATEGORIES or len(uniq) > 0.5 * len(present):
            drop.append(cname)
            warnings.append(f"column {cname!r}: {len(uniq)} distinct values, looks like an identifier or free text; dropped")
            continue
        cats = tuple(sorted(map(str, uniq)))
        cols.append(Column(cname, "categorical", categories=cats, nullable=nullable))
        warnings.append(
            f"column {cname!r}: category list read off the data ({len(cats)} values). Rare values "
            "identify people: replace it with the full public code list"
        )
    return Draft(Schema(columns=tuple(cols), drop=tuple(drop), name=name), warnings)
