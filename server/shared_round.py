"""One shared-noise round on the coordinator: the secure sum becomes one pooled DP-SGD step.

SecAgg+ hands the coordinator the mean of the contributors' field residues
(:func:`fedsynth.common.protocol.federation.pack_shared_update`). Times the number of
contributors and reduced in the field, that is the exact integer sum: the pooled step's
clipped, rounded example gradients plus every contributor's noise share, and the pooled noisy
category counts. The coordinator divides the gradient sum by the expected pooled batch
(``sample_rate`` x the row count estimated from the pooled counts), scales it back from the
integer grid and steps its own Adam (post-processing of the DP sum, as in central DP-SGD).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fedsynth.common.dp.accounting import frequencies_from_counts, rows_from_counts
from fedsynth.common.dp.integer_noise import IntegerGrid
from fedsynth.common.protocol.federation import FederationPlan, shared_sums
from fedsynth.server.round import RoundOutcome, RoundRejected


@dataclass
class SharedSum:
    """A shared-noise round's secure sum, decoded."""

    gradient: list[np.ndarray]  # int64: sum of rounded clipped example gradients + every noise share
    counts: list[np.ndarray]  # pooled noisy counts: per conditionable column, then per histogram
    contributors: int  # as counted inside the sum (each contributor adds 1)


def unpack_shared_sum(mean: list[np.ndarray], contributors: int, freq_sizes: list[int]) -> SharedSum:
    """The unmasked mean of ``contributors`` shared-noise updates -> the integer sums."""
    total = shared_sums(mean, contributors)
    tail = total[-1].ravel()
    if tail.size != sum(freq_sizes) + 1:
        raise RoundRejected(f"aggregate tail has {tail.size} values, expected {sum(freq_sizes) + 1}")
    counted = int(tail[-1])
    if counted != contributors:
        raise RoundRejected(f"the sum counts {counted} contributors, but {contributors} were aggregated")
    bounds = np.cumsum([0, *freq_sizes])
    counts = [tail[a:b].astype(np.float64) for a, b in zip(bounds[:-1], bounds[1:])]
    return SharedSum(total[:-1], counts, counted)


class ServerAdam:
    """The coordinator's Adam over the global weights; its moments are checkpointed as arrays."""

    def __init__(self, arrays: list[np.ndarray], lr: float, moments: list[np.ndarray] | None = None,
                 steps: int = 0) -> None:
        self.params = [torch.nn.Parameter(torch.as_tensor(np.array(a, dtype=np.float32))) for a in arrays]
        self.optimizer = torch.optim.Adam(self.params, lr=lr)
        if moments:
            n = len(self.params)
            for p, m, v in zip(self.params, moments[:n], moments[n:]):
                self.optimizer.state[p] = {"step": torch.tensor(float(steps)), "exp_avg": torch.as_tensor(m).clone(),
                                           "exp_avg_sq": torch.as_tensor(v).clone()}

    def step(self, gradient: list[np.ndarray]) -> list[np.ndarray]:
        for p, g in zip(self.params, gradient):
            p.grad = torch.as_tensor(np.asarray(g, dtype=np.float32))
        self.optimizer.step()
        return [p.detach().numpy().copy() for p in self.params]

    @property
    def steps(self) -> int:
        state = self.optimizer.state.get(self.params[0])
        return int(state["step"]) if state else 0

    def moments(self) -> list[np.ndarray]:
        """First moments of every array, then second moments (empty before the first step)."""
        if not self.steps:
            return []
        st = [self.optimizer.state[p] for p in self.params]
        return [s["exp_avg"].numpy().copy() for s in st] + [s["exp_avg_sq"].numpy().copy() for s in st]


def finish_shared_round(mean: list[np.ndarray], plan: FederationPlan, grid: IntegerGrid, freq_sizes: list[int],
                        contributors: int, optimizer: ServerAdam,
                        ordered: list[slice | None] | None = None) -> RoundOutcome:
    """The next global model from a shared-noise round's unmasked mean (``ordered``: each counts
    block's cells in value order, :attr:`TableEncoder.ordered_cells`)."""
    shared = plan.shared_noise
    if shared is None:
        raise ValueError("finish_shared_round needs a shared-noise plan")
    if contributors < shared.min_contributors:
        # SecAgg+'s threshold should have refused to unmask it; never step on such a sum
        raise RoundRejected(f"{contributors} contributions, fewer than min_contributors={shared.min_contributors}")
    total = unpack_shared_sum(mean, contributors, freq_sizes)
    rows = rows_from_counts(total.counts) if total.counts else None
    expected_batch = max(1.0, shared.sample_rate * (rows or 1.0))
    gradient = [g.astype(np.float64) * grid.gamma / expected_batch for g in total.gradient]
    if not all(np.all(np.isfinite(g)) for g in gradient):
        raise RoundRejected("the decoded gradient is not finite")
    arrays = optimizer.step(gradient)
    return RoundOutcome(arrays, frequencies_from_counts(total.counts, floor=1e-9, ordered=ordered), None, contributors)
