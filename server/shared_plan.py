"""Planning a shared-noise run: the public sample rate, rounds and the pooled noise multiplier.

The coordinator fixes what central DP-SGD would fix (sample rate q, steps = rounds, noise
multiplier sigma) and publishes it in the plan; sigma is the least noise with which the
planned rounds and an institution's one-off category-frequency release stay within the run's
epsilon in the coalition view (against the coordinator plus up to T colluding institutions).
Every institution still checks each round against its own ledger and cap and refuses what it
cannot afford: the plan is a proposal, the ledgers decide.
"""

from __future__ import annotations

from dataclasses import replace

from fedsynth.common.data.schema import Schema
from fedsynth.common.dp.accounting import frequency_noise, gaussian_counts_release
from fedsynth.common.dp.plan import default_batch_size
from fedsynth.common.dp.shared_noise import calibrate_shared_noise
from fedsynth.common.model.tabular import ModelConfig
from fedsynth.common.protocol.federation import FederationPlan, model_arrays

#: rounds (= pooled DP-SGD steps) of a shared-noise run when none are asked for
SHARED_ROUNDS = 120


def default_sample_rate(pooled_rows: int) -> float:
    """q for a pooled table of ``pooled_rows``: single-party's expected batch rule, times 3.

    Each round is one step and rounds are the cost, so a shared-noise run takes a third of
    the steps of a single-party fit at three times the batch (DP-SGD tolerates large batches
    well: the noise per averaged gradient falls as 1/B)."""
    return min(1.0, 3 * default_batch_size(pooled_rows) / max(1, pooled_rows))


def shared_noise_plan(plan: FederationPlan, schema: Schema, epsilon: float, delta: float, sample_rate: float,
                      collusion_tolerance: int, min_contributors: int) -> FederationPlan:
    """``plan`` in shared-noise mode: single-party model defaults (the noise is pooled now),
    at least ``min_contributors`` per round, and sigma calibrated for ``epsilon``."""
    model = ModelConfig(model=plan.model.model)
    base = replace(plan, model=model, min_clients=max(plan.min_clients, min_contributors), shared_noise=None)
    dim = sum(a.size for a in model_arrays(schema, base))
    prior = [gaussian_counts_release(frequency_noise(epsilon, delta, floor=plan.marginal_noise))]
    shared = calibrate_shared_noise(epsilon, delta, sample_rate, plan.rounds, dim, model.max_grad_norm, prior,
                                    collusion_tolerance=collusion_tolerance, min_contributors=min_contributors)
    return replace(base, shared_noise=shared)
