"""The coordinator's reading of a round's unmasked mean: the packed update format undone.

:func:`fedsynth.common.protocol.federation.pack_update` is what each institution sends;
SecAgg+ hands the coordinator only the mean of those packed updates. This module turns that
mean back into the weighted mean delta, the mean category frequencies and the two slots that
say how aligned the round's deltas were and how unequal its weights
(:func:`unpack_aggregate`), and picks the round's server step from them
(:func:`aligned_server_lr`). Only the coordinator needs it; the bounds every accepted mean
must meet are beside it in :mod:`fedsynth.server.aggregate_guard`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsynth.common.data.encoding import CountsLayout
from fedsynth.common.dp.accounting import frequencies_from_counts
from fedsynth.common.protocol.federation import TAIL_SLOTS, FederationPlan


@dataclass
class MeanUpdate:
    """One round's unmasked aggregate, unpacked."""

    deltas: list[np.ndarray]  # weighted mean of the clients' (clipped) deltas
    freqs: list[np.ndarray]  # weighted mean of their privatised category frequencies, per column
    mean_sq_norm: float  # weighted mean of the squared L2 norms of the deltas they sent
    weight: float  # mean aggregation weight of the contributors
    weight_sq: float  # mean of their squared weights


def unpack_aggregate(mean: list[np.ndarray], plan: FederationPlan, layout: CountsLayout) -> MeanUpdate:
    """The mean packed update -> its weighted means (the counts laid out as ``layout``)."""
    tail = mean[-1].astype(np.float64)
    if tail.size != layout.total + TAIL_SLOTS:
        raise ValueError(f"aggregate tail has {tail.size} values, expected {layout.total + TAIL_SLOTS}")
    weight = float(tail[-1])
    if not weight > 0:
        raise ValueError("aggregate carries no weight (no client contributed)")
    deltas = [(m.astype(np.float64) / (plan.update_scale * weight)).astype(np.float32) for m in mean[:-1]]
    freqs = frequencies_from_counts(layout.split(tail[:-TAIL_SLOTS] / weight), floor=1e-9, ordered=layout.ordered)
    return MeanUpdate(deltas, freqs, max(0.0, float(tail[-3]) / weight) * plan.update_clip_norm**2, weight,
                      max(float(tail[-2]), weight * weight))


def squared_norm(arrays: list[np.ndarray]) -> float:
    """The squared L2 norm of a model-shaped list of arrays, in float64."""
    return float(sum(float(np.sum(np.asarray(a, np.float64) ** 2)) for a in arrays))


def aligned_server_lr(update: MeanUpdate, contributors: int) -> float:
    """The server step for one round, within [1, K]: K when the K deltas look like independent
    noise, less as they agree.

    Model the deltas as one shared direction plus independent noise. The weighted mean's
    squared norm ``M`` keeps the shared part and ``sum w^2 / (sum w)^2`` of the noise; the
    weighted mean squared norm ``S`` keeps all of both. For pure noise ``S / M`` is the
    effective number of clients ``K_eff = K * mean(w)^2 / mean(w^2)``, for full agreement 1.
    The step is ``(S / M) * K / K_eff``: the sum of the deltas (K, the step fedsynth measured
    best at epsilon 1, where each client's Adam takes a full-size, mostly-noise step) when
    they are noise, and about one mean delta when they agree (where a fixed K over-shot:
    large epsilon, IID silos).

    For honest clients the step it gives, ``lr * sqrt(M)``, is at most ``sqrt(K * S * K / K_eff)``;
    with equal weights at most ``sqrt(K) * update_clip_norm``, the bound every step is held to
    (:func:`fedsynth.server.aggregate_guard.bounded_server_lr`).
    """
    k = max(1, int(contributors))
    norm_of_mean_sq = squared_norm(update.deltas)  # M
    if not norm_of_mean_sq > 0 or not update.mean_sq_norm > 0 or not update.weight > 0:
        return float(k)
    inequality = update.weight_sq / update.weight**2  # K / K_eff, >= 1
    return float(np.clip(update.mean_sq_norm / norm_of_mean_sq * inequality, 1.0, k))  # (S / M) x K / K_eff
