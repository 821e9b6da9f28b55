"""How DP training spends its budget: the Poisson sampling plan and the training settings.

One rule for every trainer: a single-party fit (:class:`fedsynth.Synthesizer`), an
institution's federated rounds (``fedsynth.client.app``) and the benchmarks all turn
(rows, epochs, batch) into the same (expected batch, sample rate, steps). Torch-free, so the
client can plan a round without loading the model stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from fedsynth.common.dp.accounting import ACCOUNTANTS, MIN_FREQUENCY_NOISE
from fedsynth.common.errors import FedsynthError


def default_batch_size(n_rows: int) -> int:
    """Expected Poisson batch: about 1/12 of the table, between 64 and 2048 rows.

    DP-SGD favours large batches (noise per averaged gradient falls as 1/B while the
    accountant's cost grows more slowly), but a silo needs enough steps per epoch.
    """
    return int(min(2048, max(64, n_rows // 12)))


class SamplingPlan(NamedTuple):
    """Poisson sampling for a number of passes over a table (unpacks as a 3-tuple)."""

    expected_batch: int
    sample_rate: float  # each row's chance to be in a step's batch
    steps: int


def sampling_plan(n_rows: int, epochs: float, batch_size: int | None = None) -> SamplingPlan:
    """(expected batch, Poisson sample rate, steps) for ``epochs`` passes over ``n_rows`` rows."""
    batch = batch_size or default_batch_size(n_rows)
    q = min(1.0, batch / n_rows)
    return SamplingPlan(batch, q, max(1, math.ceil(epochs / q)))


@dataclass
class TrainingConfig:
    """How the privacy budget is spent. Defaults measured on Adult at epsilon = 1."""

    epochs: float = 30.0
    batch_size: int | None = None  # expected Poisson batch; None = default_batch_size(n)
    # least noise of the category-frequency release up to epsilon 1, divided by sqrt(epsilon) above (frequency_noise)
    marginal_noise: float = MIN_FREQUENCY_NOISE
    accountant: str = "rdp"

    def __post_init__(self) -> None:
        if not self.epochs > 0:
            raise FedsynthError(f"epochs must be > 0, got {self.epochs}")
        if self.batch_size is not None and self.batch_size < 1:
            raise FedsynthError(f"batch size must be >= 1, got {self.batch_size}")
        if self.accountant not in ACCOUNTANTS:
            raise FedsynthError(f"accountant must be one of {ACCOUNTANTS}")
        if not self.marginal_noise > 0:
            raise FedsynthError("marginal_noise must be > 0")
