"""One shared-noise round on the coordinator: the secure sum becomes one pooled DP-SGD step.

SecAgg+ hands the coordinator the mean of the contributors' field residues
(:func:`fedsynth.common.protocol.federation.pack_shared_update`). Times the number of
contributors and reduced in the field, that is the exact integer sum: the pooled step's
clipped, rounded example gradients plus every contributor's noise share, and the number of
contributors. The coordinator divides the gradient sum by the expected pooled batch
(``sample_rate`` x the row count estimated from the pooled counts, released once before the
first round), scales it back from the integer grid and steps its own Adam (post-processing of
the DP sum, as in central DP-SGD).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fedsynth.common.data.encoding import CountsLayout, TableEncoder
from fedsynth.common.data.schema import Schema
from fedsynth.common.dp.accounting import frequencies_from_counts, rows_from_counts
from fedsynth.common.dp.integer_noise import IntegerGrid
from fedsynth.common.dp.shared_noise import SharedNoise
from fedsynth.common.protocol.federation import FederationPlan, shared_sums
from fedsynth.common.protocol.marginal_stage import StageSum
from fedsynth.server.round import RoundOutcome, RoundRejected


@dataclass
class SharedSum:
    """A shared-noise round's secure sum, decoded."""

    gradient: list[np.ndarray]  # int64: sum of rounded clipped example gradients + every noise share
    contributors: int  # as counted inside the sum (each contributor adds 1)


def unpack_shared_sum(mean: list[np.ndarray], contributors: int) -> SharedSum:
    """The unmasked mean of ``contributors`` shared-noise updates -> the integer sums."""
    total = shared_sums(mean, contributors)
    tail = total[-1].ravel()
    if tail.size != 1:
        raise RoundRejected(f"aggregate tail has {tail.size} values, expected 1 (the contributor count)")
    counted = int(tail[0])
    if counted != contributors:
        raise RoundRejected(f"the sum counts {counted} contributors, but {contributors} were aggregated")
    return SharedSum(total[:-1], counted)


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


def finish_shared_round(mean: list[np.ndarray], plan: FederationPlan, grid: IntegerGrid, pooled_rows: float,
                        contributors: int, optimizer: ServerAdam, freqs: list[np.ndarray] | None = None
                        ) -> RoundOutcome:
    """The next global model from a shared-noise round's unmasked mean. ``pooled_rows``: the row
    count estimated from the pooled counts (:func:`pooled_counts`), ``freqs`` their frequencies,
    carried along unchanged."""
    shared = plan.shared_noise
    if shared is None:
        raise ValueError("finish_shared_round needs a shared-noise plan")
    _enough_shares(shared, contributors, "contributions")
    total = unpack_shared_sum(mean, contributors)
    expected_batch = max(1.0, shared.sample_rate * pooled_rows)
    gradient = [g.astype(np.float64) * grid.gamma / expected_batch for g in total.gradient]
    if not all(np.all(np.isfinite(g)) for g in gradient):
        raise RoundRejected("the decoded gradient is not finite")
    arrays = optimizer.step(gradient)
    return RoundOutcome(arrays, freqs, None, contributors)


def _enough_shares(shared: SharedNoise, contributors: int, what: str) -> None:
    """SecAgg+'s threshold should have refused to unmask a sum of fewer than K_min shares: never
    use one (RoundRejected)."""
    if contributors < shared.min_contributors:
        raise RoundRejected(f"{contributors} {what}, fewer than min_contributors={shared.min_contributors}")


@dataclass(frozen=True)
class PooledCounts:
    """The pooled counts, from the shared-noise round before the first step."""

    freqs: list[np.ndarray]  # their frequencies (histograms spread over ordered cells)
    rows: float  # the pooled row estimate (expected batch = sample_rate x rows)
    contributors: int


def pooled_counts(total: StageSum, plan: FederationPlan, layout: CountsLayout) -> PooledCounts:
    """The summed counts shares -> pooled frequencies and row estimate (post-processing).
    Raises RoundRejected for a sum of fewer than K_min shares (never used, as a step's)."""
    shared = plan.shared_noise
    if shared is None:
        raise ValueError("pooled counts come from shared-noise runs only")
    _enough_shares(shared, total.contributors, "counts shares")
    if total.values.size != layout.total:
        raise RoundRejected(f"the pooled counts have {total.values.size} values, expected {layout.total}")
    blocks = layout.split(total.values.astype(np.float64))
    rows = rows_from_counts(blocks) if blocks else None
    return PooledCounts(frequencies_from_counts(blocks, floor=1e-9, ordered=layout.ordered), float(rows or 1.0),
                        total.contributors)


def run_bin_edges(schema: Schema, plan: FederationPlan, freqs: list[np.ndarray] | None
                  ) -> dict[str, tuple[float, ...]] | None:
    """The bins every institution encodes its rows with after the pooled counts, sent with each
    instruction (``FitConfig.bin_edges``) when the plan's bins are measured: derived from the
    pooled histograms as a loaded model derives them from the same saved ones
    (:meth:`TableEncoder.measured`), so training, the marginal fit and sampling agree. None
    with the schema's bins or before the pooled counts."""
    if plan.binning != "measured" or freqs is None:
        return None
    encoder = TableEncoder(schema)
    histograms = encoder.split_counts(list(freqs))[1]
    return {c: tuple(float(v) for v in e) for c, e in TableEncoder.measured(schema, histograms).bin_edges.items()}
