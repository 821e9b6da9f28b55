"""Shared-noise DP-SGD: the public settings and the ledger entry (calibration:
:func:`fedsynth.common.dp.accounting.calibrate_shared_noise`).

In shared-noise mode every federated round is one step of *central* DP-SGD on the pooled
rows. Each contributing institution Poisson-samples its rows at the plan's ``sample_rate``,
clips each example's gradient to C, rounds it onto the public integer grid
(:class:`~fedsynth.common.dp.integer_noise.IntegerGrid`), sums, and adds its *share* of
integer Skellam noise; SecAgg+ reveals only the sum. Shares are sized so that the noise left
after the coordinator and any ``collusion_tolerance`` (T) institutions subtract their own is
still that of central DP-SGD with ``noise_multiplier``: each share has variance
``(sigma * Delta2)**2 / (K_min - T)`` and no round with fewer than ``min_contributors``
(K_min) contributions is unmasked (SecAgg+'s reconstruction threshold).

Two figures are accounted for every step (:class:`SharedNoiseRelease`):

* ``coalition``: against the coordinator plus up to T colluding institutions. The noise
  that protects a row is at least ``K_min - T`` shares. This is the figure the cap enforces.
* ``alone``: if every other party colluded, only the institution's own share protects its
  rows.

Local-noise mode (each institution adds full noise itself) has one figure; both views give it.

The one-off counts release (category counts and numerical histograms) is shared the same way
(:meth:`SharedNoise.counts_release`): each institution adds a Skellam share to its exact integer
counts, one SecAgg+ round sums them before the first step, and the coordinator learns the pooled
counts with the noise of one release at ``counts_noise``, not one per institution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from fedsynth.common.dp.integer_noise import IntegerGrid, share_mu
from fedsynth.common.dp.skellam import SkellamRelease, composed_epsilon

SHARED_TAG = "shared"
#: the two trust views of a shared-noise epsilon (see the module docstring)
COALITION, ALONE = "coalition", "alone"
VIEWS = (COALITION, ALONE)


@dataclass(frozen=True)
class SharedNoise:
    """The public settings of a shared-noise run (part of the federation plan)."""

    sample_rate: float  # each row's chance to be in a step's Poisson sample, at every institution
    noise_multiplier: float  # sigma of the pooled step (central DP-SGD's noise multiplier)
    collusion_tolerance: int = 1  # T: institutions that may collude with the coordinator
    min_contributors: int = 3  # K_min: a round with fewer contributions is never unmasked
    resolution: float = 16.0  # C / gamma = resolution * sqrt(d) (IntegerGrid): rounding adds 1/resolution to Delta2
    counts_noise: float = 10.0  # noise multiplier of the pooled counts release (counts_release)

    def __post_init__(self) -> None:
        if not 0.0 < self.sample_rate <= 1.0:
            raise ValueError(f"shared noise: sample_rate must be in (0, 1], not {self.sample_rate!r}")
        if not self.noise_multiplier > 0:
            raise ValueError(f"shared noise: noise_multiplier must be > 0, not {self.noise_multiplier!r}")
        if self.collusion_tolerance < 0:
            raise ValueError(f"shared noise: collusion_tolerance must be >= 0, not {self.collusion_tolerance!r}")
        if not self.counts_noise > 0:
            raise ValueError(f"shared noise: counts_noise must be > 0, not {self.counts_noise!r}")
        if self.min_contributors - self.collusion_tolerance < 1:
            raise ValueError(f"shared noise: min_contributors ({self.min_contributors}) must exceed "
                             f"collusion_tolerance ({self.collusion_tolerance}): someone's share must stay secret")

    @property
    def honest_shares(self) -> int:
        """Shares no coalition of the coordinator and T institutions knows: K_min - T."""
        return self.min_contributors - self.collusion_tolerance

    def grid(self, dim: int, clip_norm: float) -> IntegerGrid:
        return IntegerGrid(clip_norm=clip_norm, dim=dim, resolution=self.resolution)

    def share_mu(self, grid: IntegerGrid) -> float:
        """Skellam parameter of one institution's share."""
        return share_mu(self.noise_multiplier, grid, self.honest_shares)

    def share_noise(self, noise_multiplier: float) -> float:
        """The noise multiplier of one share of a release at ``noise_multiplier``: K_min - T shares'
        variances add up to the release's (what a packed one-off release reports)."""
        return noise_multiplier / math.sqrt(self.honest_shares)

    def counts_release(self, blocks: int) -> SharedNoiseRelease:
        """The ledger entry of the pooled counts release over ``blocks`` count blocks."""
        return shared_counts_release(self.counts_noise, blocks, self.honest_shares)

    def release(self, grid: IntegerGrid, steps: int = 1) -> SharedNoiseRelease:
        """The ledger entry for ``steps`` shared-noise steps on ``grid``."""
        return SharedNoiseRelease(self.sample_rate, int(steps), self.share_mu(grid), grid.l2_sensitivity,
                                  grid.l1_sensitivity, self.honest_shares)


@dataclass(frozen=True)
class SharedNoiseRelease:
    """Shared-noise steps as a ledger records them: enough to account both views."""

    sample_rate: float
    steps: int
    mu_share: float
    l2_sensitivity: float
    l1_sensitivity: float
    honest_shares: int

    def skellam(self, view: str = COALITION) -> SkellamRelease:
        """The Skellam mechanism that protects a row under ``view``."""
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, not {view!r}")
        shares = self.honest_shares if view == COALITION else 1
        return SkellamRelease(self.sample_rate, self.steps, self.mu_share * shares, self.l2_sensitivity,
                              self.l1_sensitivity)

    def to_list(self) -> list:
        return [SHARED_TAG, self.sample_rate, self.steps, self.mu_share, self.l2_sensitivity, self.l1_sensitivity,
                self.honest_shares]

    @classmethod
    def from_list(cls, raw: Sequence) -> SharedNoiseRelease:
        """Parse a stored entry; TypeError/ValueError for anything else (a corrupt ledger)."""
        if not isinstance(raw, (list, tuple)) or len(raw) != 7 or raw[0] != SHARED_TAG:
            raise TypeError(f"history entry {raw!r} is not a shared-noise release")
        q, steps, mu, l2, l1, honest = raw[1:]
        out = cls(float(q), int(steps), float(mu), float(l2), float(l1), int(honest))
        if not (0 < out.sample_rate <= 1 and out.steps >= 0 and out.mu_share > 0 and out.l2_sensitivity > 0
                and out.l1_sensitivity > 0 and out.honest_shares >= 1):
            raise ValueError(f"history entry {raw!r} has an out-of-range field")
        return out


def shared_counts_release(noise_multiplier: float, blocks: int, honest_shares: int) -> SharedNoiseRelease:
    """One institution's share of a counts release over ``blocks`` blocks (sample rate 1, one step).

    A row adds 1 to one integer count of every block, so Delta2 = sqrt(blocks) and Delta1 = blocks
    with no rounding; the shares of any ``honest_shares`` institutions add up to Skellam noise of
    variance (noise_multiplier * Delta2)^2, the Gaussian release's at ``noise_multiplier``."""
    blocks = max(1, int(blocks))
    l2 = math.sqrt(blocks)
    mu = (noise_multiplier * l2) ** 2 / (2 * honest_shares)
    return SharedNoiseRelease(1.0, 1, mu, l2, float(blocks), honest_shares)


def is_shared(entry: object) -> bool:
    return isinstance(entry, SharedNoiseRelease)


def mixed_epsilon(history: Sequence, delta: float, view: str = COALITION) -> float:
    """Epsilon of a history of Gaussian releases ``(sigma, q, steps)`` and shared-noise releases."""
    gaussian = [tuple(h) for h in history if not is_shared(h)]
    skellam = [h.skellam(view) for h in history if is_shared(h) and h.steps > 0]
    return composed_epsilon(gaussian, _merged(skellam), delta)


def _merged(releases: list[SkellamRelease]) -> list[SkellamRelease]:
    """Identical per-step releases (one per round) merged into one with their steps added."""
    steps: dict[tuple, int] = {}
    for r in releases:
        key = (r.sample_rate, r.mu, r.l2_sensitivity, r.l1_sensitivity)
        steps[key] = steps.get(key, 0) + r.steps
    return [SkellamRelease(q, n, mu, l2, l1) for (q, mu, l2, l1), n in steps.items()]
