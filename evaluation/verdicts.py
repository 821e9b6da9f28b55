"""The report's badges: rules of thumb that label a privacy number as fine, notable or worrying."""

from __future__ import annotations

from fedsynth.evaluation.formatting import esc
from fedsynth.evaluation.jsonable import JsonObject

OK, NOTE, WARN = "ok", "note", "warn"


def badge(level: str, text: str) -> str:
    """An inline badge; ``level`` is OK, NOTE or WARN (a CSS class of the report)."""
    return f'<span class="badge {level}">{esc(text)}</span>'


def privacy_level(result: JsonObject) -> tuple[str, str]:
    """Level and words for the strongest membership attack."""
    mia = result["privacy"]["membership_inference"]
    if "strongest" not in mia:
        return NOTE, "no attack run"
    s = mia["strongest"]
    if s["auc_ci95"][0] <= 0.5:
        return OK, "no attack beat chance"
    if s["auc"] < 0.6:
        return NOTE, "attacks slightly better than chance"
    return WARN, "attacks identify training rows"


def copy_level(exact: JsonObject) -> tuple[str, str]:
    """Level and words for exact copies, against the holdout's chance level."""
    if exact["exact_copy_rate_equal_size"] > 1.5 * exact["exact_match_rate_holdout"] + 0.001:
        return WARN, "more copies than chance"
    return OK, "at chance level"


def dcr_level(share: float) -> tuple[str, str]:
    """Level and words for the share of synthetic rows closer to a training row (50 % = no signal)."""
    if share > 0.6:
        return WARN, "synthetic rows sit close to training rows"
    if share > 0.53:
        return NOTE, "slightly closer to training rows"
    return OK, "no memorisation signal"


def detection_level(auc: float | None) -> tuple[str, str]:
    """Level and words for the real-vs-synthetic detection AUC (0.5 = cannot be told apart)."""
    if auc is None:
        return NOTE, "not measured"
    if auc < 0.6:
        return OK, "hard to tell from real rows"
    if auc < 0.8:
        return NOTE, "partly told apart from real rows"
    return WARN, "easily told apart from real rows"
