"""The report's badges: rules of thumb that label a privacy number as fine, notable or worrying."""

from __future__ import annotations

from typing import Any

from fedsynth.evaluation.formatting import _e

_OK, _NOTE, _WARN = "ok", "note", "warn"


def _badge(level: str, text: str) -> str:
    return f'<span class="badge {level}">{_e(text)}</span>'


def _privacy_level(result: dict[str, Any]) -> tuple[str, str]:
    mia = result["privacy"]["membership_inference"]
    if "strongest" not in mia:
        return _NOTE, "no attack run"
    s = mia["strongest"]
    if s["auc_ci95"][0] <= 0.5:
        return _OK, "no attack beat chance"
    if s["auc"] < 0.6:
        return _NOTE, "attacks slightly better than chance"
    return _WARN, "attacks identify training rows"


def _copy_level(exact: dict[str, Any]) -> tuple[str, str]:
    if exact["exact_copy_rate_equal_size"] > 1.5 * exact["exact_match_rate_holdout"] + 0.001:
        return _WARN, "more copies than chance"
    return _OK, "at chance level"


def _dcr_level(share: float) -> tuple[str, str]:
    if share > 0.6:
        return _WARN, "synthetic rows sit close to training rows"
    if share > 0.53:
        return _NOTE, "slightly closer to training rows"
    return _OK, "no memorisation signal"
