"""The wire format of a federated marginal fit's two releases (after the last training round),
also used by a shared-noise run's pooled counts release (before the first).

The coordinator asks every institution, in two SecAgg+ rounds, for (1) random projections of
each 2-way pair's residual against the final global model
(:func:`fedsynth.common.model.marginal_fit.project_residuals`: summed, they estimate the pooled
error) and then (2) the 2-way counts of the pairs it chose from the summed errors. Each institution
adds the Gaussian noise of its own budget to its vector (as for its category counts: its
guarantee holds whoever colludes), rounds it to integers (post-processing) and sends it as
field residues, as shared-noise updates travel: SecAgg+ then unmasks the exact integer sum.

One update is a single array: the noisy values, the institution's noise multiplier squared
(times :data:`NOISE_VAR_SCALE`, rounded) and a 1. The coordinator learns the summed values, the
summed noise variance (so it knows how noisy the sum is, which the pair choice needs; a
function of the institutions' budgets, not of their rows) and the number of contributors. A
refusal (budget spent, a release already made for another request) sends zeros with weight 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsynth.common.data.encoding import Segment
from fedsynth.common.dp.integer_noise import from_field_sum, to_field
from fedsynth.common.model.marginal_fit import Pair, all_pairs
from fedsynth.common.protocol.messages import Stage

#: a noise multiplier's square travels as round(sigma^2 x this)
NOISE_VAR_SCALE = 100.0
TAIL = 2  # noise variance slot, contributor slot


@dataclass(frozen=True)
class StageSum:
    """What the coordinator learns from one marginal-fit round."""

    values: np.ndarray  # the institutions' noisy vectors, summed
    noise_multiplier: float  # of the sum: sqrt(sum of the contributors' sigma^2)
    contributors: int


def stage_length(stage: str, segments: list[Segment], pairs: tuple[Pair, ...], projections: int,
                 count_sizes: list[int] | None = None) -> int:
    """Values in a stage's vector: ``projections`` per pair (errors, see
    :func:`fedsynth.common.model.marginal_fit.project_residuals`), one per cell of the chosen
    pairs, or one per count cell (the pooled counts: ``count_sizes``, :attr:`TableEncoder.count_sizes`)."""
    if stage == Stage.POOLED_COUNTS:
        if count_sizes is None:
            raise ValueError("the pooled counts' length needs the encoder's count_sizes")
        return int(sum(count_sizes))
    if stage == Stage.PAIR_ERRORS:
        return len(all_pairs(segments)) * projections
    return sum(segments[a].size * segments[b].size for a, b in pairs)


def pack_stage(noisy: np.ndarray, noise_multiplier: float) -> list[np.ndarray]:
    """Client side: one noisy release (float values) as the single field-residue array SecAgg+ sums."""
    tail = [np.rint(noise_multiplier**2 * NOISE_VAR_SCALE), 1.0]
    return [to_field(np.rint(np.append(np.asarray(noisy, dtype=np.float64).ravel(), tail)).astype(np.int64))]


def refusal_stage(length: int) -> list[np.ndarray]:
    """What an institution that makes no release sends (with weight 0): zeros of the update's shape."""
    return [np.zeros(int(length) + TAIL, dtype=np.float64)]


def read_stage_sum(mean: list[np.ndarray], contributors: int, length: int) -> StageSum:
    """Coordinator side: SecAgg+'s unmasked mean of ``contributors`` packed releases -> their sum.

    Raises ValueError when the sum is not ``length`` values plus the tail or its contributor slot
    disagrees with the weights SecAgg+ counted (a malformed or lying update)."""
    if len(mean) != 1 or np.asarray(mean[0]).size != length + TAIL:
        raise ValueError(f"a marginal-fit update has {sum(np.asarray(m).size for m in mean)} values, "
                         f"expected {length + TAIL}")
    total = from_field_sum(np.asarray(mean[0], dtype=np.float64) * contributors)
    if int(total[-1]) != contributors or total[-2] < 0:
        raise ValueError(f"a marginal-fit sum claims {int(total[-1])} contributors and noise variance "
                         f"{int(total[-2])}; SecAgg+ counted {contributors}")
    return StageSum(total[:-TAIL].astype(np.float64), float(np.sqrt(total[-2] / NOISE_VAR_SCALE)), contributors)
