"""Server-side bounds on a SecAgg+ aggregate: what an honest round can produce, nothing more.

Under SecAgg+ the coordinator never sees one client's update, so it cannot check each
client's norm. It can check the *mean* it unmasks against what honest clients can produce
(the packed format is in :mod:`fedsynth.common.federation`: ``w * delta * update_scale``
arrays, then ``[w * frequencies, w * squared-norm fraction, w * w, w]``, with the weight ``w`` in
``[1/weight_cap_rows, 1]``):

* every honest packed element lies in [-clipping_range, clipping_range] (``pack_update``
  element-clips; SecAgg+ quantisation clips again), so every element of the mean does;
* the mean weight ``w_bar`` lies in ``[1/weight_cap_rows, 1]`` (exactly 1 with equal weights);
* every honest delta has L2 norm <= ``update_clip_norm * update_scale`` after packing
  (norm clip, then element clipping only shrinks it), times its weight, so by the triangle
  inequality the delta part of the mean has norm <= that bound times ``w_bar``;
* honest frequency blocks are non-negative and sum to ``w``, so the mean's blocks sum to
  ``w_bar``;
* the honest squared-norm fraction is in [0, 1], so its weighted mean is in [0, ``w_bar``]
  (a client lying inside that range can only move the server step within [1, K]).

An aggregate outside these bounds (a client that skipped ``pack_update`` and wrote raw
values into its masked vector, claimed a weight above 1, or tampered with the SecAgg+
weight factor) is discarded and the round retried.

What a malicious client that stays *inside* the bounds can still do: choose its delta and
weight freely. The guard only bounds the mean, so the attacker may spend the slack that
honest clients leave in the norm bound: with K contributors its own packed delta can be as
large as the element clipping allows as long as the mean stays under the bound, i.e. it can
move the global model by up to about ``server_lr * update_clip_norm * (2K - 1) / K`` per
round in the worst case (when honest deltas are small), not ``server_lr * update_clip_norm
/ K``; with row weights its share of the mean is at most ``1 / (1 + sum of honest weights)``
(it can claim at most the weight of a ``weight_cap_rows``-row institution). It can also
cancel honest clients' contributions. Per-client bounds under secure aggregation need
zero-knowledge norm proofs (e.g. RoFL, ACORN), which Flower's SecAgg+ does not offer;
docs/security.md states this threat model.
"""

from __future__ import annotations

import numpy as np

from fedsynth.common.federation import TAIL_SLOTS, FederationPlan

# quantisation (2**22 levels over +-clipping_range) and float32 round-off
_ELEMENT_SLACK = 1e-3
_NORM_SLACK_REL = 1e-3
# a weight is one quantised value (resolution 2 * clipping_range / quantization_range ~ 4e-6)
_WEIGHT_SLACK = 1e-5


def aggregate_problem(mean: list[np.ndarray], plan: FederationPlan, clipping_range: float,
                      freq_sizes: list[int] | None = None) -> str | None:
    """Why the unmasked mean (packed update format) cannot come from honest clients, or None."""
    for i, m in enumerate(mean):
        m = np.asarray(m, dtype=np.float64)
        if not np.all(np.isfinite(m)):
            return f"array {i} contains non-finite values"
        peak = float(np.max(np.abs(m))) if m.size else 0.0
        if peak > clipping_range + _ELEMENT_SLACK:
            return f"array {i} has an element of size {peak:.4g}, above the clipping range {clipping_range:g}"
    tail = np.asarray(mean[-1], dtype=np.float64)
    if tail.size == 0:
        return "the aggregate has no weight slot"
    w_bar = float(tail[-1])
    low = 1.0 if plan.aggregation_weights == "equal" else 1.0 / plan.weight_cap_rows
    if not low - _WEIGHT_SLACK <= w_bar <= 1.0 + _WEIGHT_SLACK:
        return f"mean aggregation weight {w_bar:.4g} is outside the honest range [{low:.4g}, 1]"
    norm = float(np.sqrt(sum(float(np.sum(np.asarray(m, np.float64) ** 2)) for m in mean[:-1])))
    bound = plan.update_clip_norm * plan.update_scale * w_bar
    if norm > bound * (1 + _NORM_SLACK_REL) + _ELEMENT_SLACK:
        return f"mean update has L2 norm {norm:.4g}, above the honest bound {bound:.4g}"
    if tail.size < TAIL_SLOTS:
        return "the aggregate has no norm slot"
    norm_slot, w_sq = float(tail[-3]), float(tail[-2])
    if not -_WEIGHT_SLACK <= norm_slot <= w_bar + _WEIGHT_SLACK:
        return f"mean squared-norm fraction {norm_slot:.4g} is outside the honest range [0, {w_bar:.4g}]"
    if not w_bar * w_bar - _WEIGHT_SLACK <= w_sq <= w_bar + _WEIGHT_SLACK:  # Jensen, and w^2 <= w
        return f"mean squared weight {w_sq:.4g} is outside the honest range [{w_bar * w_bar:.4g}, {w_bar:.4g}]"
    if freq_sizes is not None:
        if sum(freq_sizes) + TAIL_SLOTS != tail.size:
            return f"the aggregate carries {tail.size - TAIL_SLOTS} frequencies, expected {sum(freq_sizes)}"
        flat, pos = tail[:-TAIL_SLOTS], 0
        if flat.size and float(flat.min()) < -_ELEMENT_SLACK:
            return "a mean category frequency is negative"
        for j, k in enumerate(freq_sizes):
            total = float(flat[pos : pos + k].sum())
            if abs(total - w_bar) > _ELEMENT_SLACK * max(1, k):
                return f"category frequencies of column block {j} sum to {total:.4g}, expected {w_bar:.4g}"
            pos += k
    return None
