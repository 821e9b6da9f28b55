"""Planning a shared-noise run: the public sample rate, rounds and the pooled noise multiplier.

The coordinator fixes what central DP-SGD would fix (sample rate q, steps = rounds, noise
multiplier sigma) and publishes it in the plan. Asked for a budget, sigma is the least noise
with which the planned rounds and an institution's one-off releases (its share of the pooled
counts, then the marginal fit's two) stay within it in the coalition view (against the coordinator plus up to T colluding
institutions). Every institution still checks each round against its own ledger and cap and
refuses what it cannot afford: the plan is a proposal, the ledgers decide.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.data.schema import Schema
from fedsynth.common.dp.accounting import calibrate_shared_noise, frequency_noise
from fedsynth.common.dp.plan import default_batch_size
from fedsynth.common.dp.shared_noise import SharedNoise, shared_counts_release
from fedsynth.common.model.marginal_fit import column_segments, shared_planned_releases
from fedsynth.common.errors import FedsynthError
from fedsynth.common.protocol.federation import FederationPlan, model_arrays

#: rounds (= pooled DP-SGD steps) of a shared-noise run when none are asked for
SHARED_ROUNDS = 160
#: 2-way marginals a shared-noise simulation fits the global model to after its last round when
#: none are asked for. More than single-party's 20: the federation ranks pairs by L2 norms, which
#: put small tables first, and ten more let the wide ones in (measured over the table suite on
#: Flower, docs/benchmarks.md, "Thirty pairs for the federation")
SHARED_PAIRS = 30
#: q is single-party's expected-batch rule times this (see default_sample_rate)
BATCH_FACTOR = 1.875


def default_sample_rate(pooled_rows: int, factor: float = BATCH_FACTOR) -> float:
    """q for a pooled table of ``pooled_rows``: single-party's expected batch rule, times ``factor``.

    Each round is one step and rounds are the cost: 160 steps at 1.875x single-party's batch
    (the same 24 epochs on Adult as the former 240 at 1.25x; single-party takes 30) measured level
    with 240 over the table suite in two thirds of the rounds (docs/benchmarks.md)."""
    return min(1.0, factor * default_batch_size(pooled_rows) / max(1, pooled_rows))


@dataclass(frozen=True)
class SharedNoiseRequest:
    """What an operator asks for: a budget to calibrate sigma for, or sigma itself."""

    sample_rate: float
    epsilon: float | None = None
    delta: float = 1e-5
    noise_multiplier: float | None = None
    collusion_tolerance: int = 1
    min_contributors: int = 3
    resolution: float = 16.0

    def __post_init__(self) -> None:
        if (self.epsilon is None) == (self.noise_multiplier is None):
            raise FedsynthError("shared noise: give either epsilon (sigma is calibrated for it) or noise_multiplier")

    def resolve(self, plan: FederationPlan, schema: Schema) -> FederationPlan:
        """``plan`` in shared-noise mode, with at least ``min_contributors`` per round.

        The pooled counts release gets the noise a single party's would
        (:func:`~fedsynth.common.dp.accounting.frequency_noise` of the budget, or the plan's
        ``marginal_noise`` when sigma is given instead)."""
        base = replace(plan, min_clients=max(plan.min_clients, self.min_contributors), shared_noise=None)
        freq_noise = plan.marginal_noise if self.epsilon is None else \
            frequency_noise(self.epsilon, self.delta, floor=plan.marginal_noise)
        settings = dict(collusion_tolerance=self.collusion_tolerance, min_contributors=self.min_contributors,
                        resolution=self.resolution, counts_noise=freq_noise)
        if self.noise_multiplier is not None:
            return replace(base, shared_noise=SharedNoise(self.sample_rate, self.noise_multiplier, **settings))
        assert self.epsilon is not None
        dim = sum(a.size for a in model_arrays(schema, base))
        encoder = TableEncoder(schema)
        honest = self.min_contributors - self.collusion_tolerance
        prior = [shared_counts_release(freq_noise, len(encoder.count_sizes), honest)] + \
            shared_planned_releases(plan.marginal_fit, freq_noise, column_segments(encoder), honest)
        shared = calibrate_shared_noise(self.epsilon, self.delta, self.sample_rate, plan.rounds, dim,
                                        plan.model.max_grad_norm, prior, **settings)
        return replace(base, shared_noise=shared)
