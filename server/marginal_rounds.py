"""The coordinator's side of a federated marginal fit: which pairs to measure, and the fine-tune.

Both are post-processing of SecAgg+ sums of the institutions' noisy releases
(:mod:`fedsynth.common.protocol.marginal_stage`): the summed residual projections estimate each
pair's pooled error, which ranks the pairs as a single party's noisy errors do
(:func:`fedsynth.common.model.marginal_fit.worth_measuring_l2`, with the noise of the *sum*), and the summed 2-way counts are the pooled tables the global
generator is fitted to, exactly as a single-party fit is (GEM's idea).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.data.schema import Schema
from fedsynth.common.digest import arrays_digest
from fedsynth.common.model.marginal_fit import (JOINT_DRAWS, Pair, all_pairs, column_segments, fit_marginals,
                                                measured_frequencies, model_joint, planned_pairs, project_residuals,
                                                sketched_errors, worth_measuring_l2)
from fedsynth.common.model.tabular import build_model
from fedsynth.common.protocol.federation import FederationPlan
from fedsynth.common.protocol.marginal_stage import StageSum

# Why a run ends without its marginal fit: the "skipped" of its record (model card, event log)
NO_PAIR_ERRORS = "the pair-error round did not complete"
NO_PAIR_WORTH_IT = "no pair is further from the data than measuring it would add"
NO_PAIR_COUNTS = "the pair-count round did not complete"


def choose_pairs(schema: Schema, plan: FederationPlan, errors: StageSum) -> list[Pair]:
    """The pairs whose pooled counts are worth asking for, worst first (at most the plan's count):
    each pair's pooled residual, estimated from the summed projections, against the noise its
    pooled counts would carry.

    Every institution's pair-count noise is ``pair_noise / score_noise`` times its projection
    noise, so the sum's is that ratio times the projection sum's."""
    config = plan.marginal_fit
    segments = column_segments(TableEncoder(schema))
    pairs = all_pairs(segments)
    std = errors.noise_multiplier * np.sqrt(len(pairs) * config.projections)  # each summed value's
    norms = sketched_errors(errors.values, len(pairs), config.projections, std)
    noise = errors.noise_multiplier * config.pair_noise / config.score_noise
    return worth_measuring_l2(norms, segments, pairs, planned_pairs(config, segments), noise)


def pooled_errors(schema: Schema, plan: FederationPlan, arrays: list[np.ndarray], freqs: list[np.ndarray] | None,
                  rows: float, sums: StageSum) -> StageSum:
    """Shared noise: the institutions projected their 2-way counts alone (none holds a released row
    count of its own, :func:`fedsynth.client.marginal_release.exact_values`). Adding the projection
    of minus the pooled row estimate times the model's 2-way marginals, under the same public signs
    and latent draws, makes the sum the projection of the pooled residual, as in local-noise runs."""
    encoder = TableEncoder(schema)
    segments = column_segments(encoder)
    model = build_model(encoder, plan.model, cond_probs=encoder.split_counts(list(freqs))[0] if freqs else None)
    model.set_arrays(arrays)
    seed = int(arrays_digest(arrays)[:15], 16)  # what every institution derived from the same weights
    joint = model_joint(model, segments, JOINT_DRAWS, torch.Generator().manual_seed(seed)).numpy().astype(np.float64)
    part = project_residuals(np.zeros_like(joint), joint, rows, segments, all_pairs(segments),
                             plan.marginal_fit.projections, seed)
    return replace(sums, values=sums.values + np.concatenate(part))


def fit_global_model(schema: Schema, plan: FederationPlan, arrays: list[np.ndarray], freqs: list[np.ndarray] | None,
                     chosen: list[Pair], counts: StageSum, seed: int | None = None, threads: int = 0
                     ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The global model's weights fine-tuned to the pooled noisy 2-way counts of ``chosen``, and a
    record of the fit (pairs by column name, their total variation distance before and after).
    ``threads``: torch threads for the fine-tune alone (0: as already set)."""
    encoder = TableEncoder(schema)
    segments = column_segments(encoder)
    cond_probs = encoder.split_counts(list(freqs))[0] if freqs else None  # pooled frequencies, as the model card's
    model = build_model(encoder, plan.model, cond_probs=cond_probs)
    model.set_arrays(arrays)
    sizes = [segments[a].size * segments[b].size for a, b in chosen]
    noisy = np.split(counts.values, np.cumsum(sizes)[:-1])
    was = torch.get_num_threads()
    torch.set_num_threads(threads or was)
    try:
        before, after = fit_marginals(model, segments, measured_frequencies(segments, chosen, noisy),
                                      plan.marginal_fit, seed=seed)
    finally:
        torch.set_num_threads(was)
    return model.get_arrays(), {"pairs": [[segments[a].label, segments[b].label] for a, b in chosen],
                                "tvd_before": round(before, 4), "tvd_after": round(after, 4),
                                "contributors": counts.contributors}
