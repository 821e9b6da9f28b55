"""Exact row matching, and the check that the holdout does not repeat training rows.

Every privacy metric needs a holdout the synthesizer never saw: a holdout that repeats training
rows makes members look like non-members and the attacks look like chance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedsynth.common.errors import DataError
from fedsynth.evaluation.prepared import PreparedTable

OVERLAP_MARGIN = 0.01  # share of the holdout that may repeat training rows beyond natural duplicates


def row_hashes(table: PreparedTable) -> np.ndarray:
    """One hash per row over all columns: equal rows (as typed by the schema) hash equal."""
    frame = pd.DataFrame(table.columns)
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


class OverlappingHoldout(DataError):
    """The holdout repeats training rows: the membership attacks would measure nothing."""


@dataclass(frozen=True)
class HoldoutOverlap:
    """Holdout rows that also occur, exactly, among the training rows.

    A proper split of a table with natural duplicates (Adult has a few dozen) shares some
    rows by chance: a holdout row has an identical training row about as often as a training
    row has an identical twin among the other training rows. ``expected`` is that twin rate
    times the holdout size. More than ``expected`` plus 1 % of the holdout (or three standard
    deviations of the chance count, if larger) means the files overlap, and is refused. In a
    table where nearly every row repeats, overlap cannot be told from chance this way; the
    count is still reported.
    """

    shared_rows: int
    holdout_rows: int
    expected: float
    allowed: float

    @property
    def refused(self) -> bool:
        return self.shared_rows > self.allowed

    @property
    def warning(self) -> str | None:
        if not self.shared_rows:
            return None
        return (f"{self.shared_rows} of the {self.holdout_rows} holdout rows also occur in the training rows "
                f"(about {self.expected:.0f} expected from the table's own duplicate rows)")

    def check(self) -> None:
        """Raise :class:`OverlappingHoldout` if the holdout overlaps the training rows."""
        if self.refused:
            raise OverlappingHoldout(
                f"{self.warning}: the holdout overlaps the training rows. Membership attacks, DCR and the "
                "exact-copy baseline need holdout rows the synthesizer never saw; with shared rows they "
                "would understate the privacy risk. Use a holdout disjoint from the training rows.")


def holdout_overlap(real: PreparedTable, holdout: PreparedTable) -> HoldoutOverlap:
    """Count holdout rows identical to a training row (by row hash), against natural duplicates."""
    h_real, h_hold = row_hashes(real), row_hashes(holdout)
    _, inverse, counts = np.unique(h_real, return_inverse=True, return_counts=True)
    twin_rate = float((counts[inverse] > 1).mean())
    n = holdout.n_rows
    expected = twin_rate * n
    allowed = expected + max(OVERLAP_MARGIN * n, 3.0 * math.sqrt(n * twin_rate * (1.0 - twin_rate)))
    return HoldoutOverlap(int(np.isin(h_hold, h_real).sum()), n, expected, allowed)
