"""An institution's share of a shared-noise run's pooled counts, asked for before the first round.

In shared-noise mode the one-off counts release (category counts, then numerical histograms:
:attr:`~fedsynth.common.data.encoding.TableEncoder.count_sizes`) is not made with this
institution's own full noise. It adds a Skellam *share*
(:meth:`~fedsynth.common.dp.shared_noise.SharedNoise.counts_release`) to its exact integer counts
and SecAgg+ sums the shares, so the coordinator learns the pooled counts with the noise of one
release, as the pooled DP-SGD steps that follow carry the noise of one step.

Every request gets fresh noise and is charged again. Re-sending the same vector into a round with
other contributors would let the coordinator difference two sums and read this institution's
counts under its share alone. ``pooled-counts-<plan>.json`` records how many were made, so the
budget kept for the first one is released once it is made.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from fedsynth.common.atomic import atomic_write_text
from fedsynth.common.dp.accounting import block_totals
from fedsynth.common.dp.integer_noise import signal_bound, skellam_noise
from fedsynth.common.dp.rng import ChaChaStream
from fedsynth.common.dp.shared_noise import SharedNoiseRelease
from fedsynth.common.protocol.federation import FederationPlan


class SharesMade:
    """How many pooled counts shares this institution made for one plan."""

    def __init__(self, state_dir: str | Path, plan: FederationPlan) -> None:
        plan_key = hashlib.sha256(plan.to_json().encode()).hexdigest()[:16]
        self.path = Path(state_dir) / f"pooled-counts-{plan_key}.json"

    def made(self) -> int:
        return int(json.loads(self.path.read_text())["made"]) if self.path.exists() else 0

    def record(self) -> None:
        """One more made (after its charge is on disk, before it leaves)."""
        atomic_write_text(self.path, json.dumps({"made": self.made() + 1}))


def noisy_share(blocks: list[np.ndarray], release: SharedNoiseRelease,
                stream: ChaChaStream | None = None) -> np.ndarray:
    """int64: the exact counts of ``blocks`` (one-hot rows or histogram counts, as
    :meth:`TableEncoder.count_blocks` gives them), flattened, plus this institution's Skellam share.

    Each count is clipped to the field's signal bound first (1-Lipschitz: the sensitivity stands),
    so the share cannot wrap the field; pooled counts above about 2^25 would."""
    exact = np.rint(np.concatenate(block_totals(blocks))).astype(np.int64)
    bound = signal_bound(release.mu_share, exact.size)
    stream = stream or ChaChaStream.from_os()
    return np.clip(exact, -bound, bound) + skellam_noise(release.mu_share, exact.size, stream)
