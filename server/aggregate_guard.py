"""Server-side bounds on a SecAgg+ aggregate: what an honest round can produce, nothing more.

Under SecAgg+ the coordinator never sees one client's update, so it cannot check each
client's norm. It can check the *mean* it unmasks against what honest clients can produce
(the packed format is in :mod:`fedsynth.common.protocol.federation`: ``w * delta * update_scale``
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

The step bound. Inside those bounds a client can still lie: claim the largest weight (1, a
``weight_cap_rows``-row institution) and a full squared-norm slot, and send a full-norm delta.
Among honest clients of small weight (0.03: ~300 rows against the default cap) it then holds
~90 % of the weighted mean, and the aligned server step reads the weight inequality it created
as K independent deltas (``server_lr`` ~K), so the round moved the model by about
``K * 0.9 * update_clip_norm``: 204 = 4.1 clip norms at K = 5, 14 x the 14.8 of the same round
with the liar honest (SecAgg+ round in
``tests/test_poisoning.py::test_a_liar_inside_the_guard_moves_the_model_no_further_than_an_honest_round_can``).
Every accepted round's step is therefore shortened, where needed, to

    ||server_lr * mean delta|| <= sqrt(K) * update_clip_norm        (:func:`max_step_norm`)

whatever the clients claim, K being the round's contributors. This is the longest step an
honest round of K equal-weight clients can take: with S the weighted mean squared norm
(<= ``update_clip_norm**2``), M the squared norm of the mean and rho = mean(w^2) / mean(w)^2
(1 for equal weights), the aligned step ``clip(rho * S / M, 1, K) * sqrt(M)`` is at most
``sqrt(rho * K * S)``: it is ``rho * S / sqrt(M)`` up to ``rho * S / M = K`` and ``K * sqrt(M)``
beyond, both largest there, and ``sqrt(M) <= sqrt(S)`` (Jensen) where it is clipped up to 1.
So an equal-weight honest round is never shortened, and a row-weighted one only if ``sqrt(rho * S) > update_clip_norm``
(a fixed ``server_lr`` above ``sqrt(K)`` can be shortened when the deltas agree). The weight
slots are not trusted for the bound (``rho`` is the liar's lever). On Adult (5 Dirichlet
silos at epsilon 1 and 10, 10 IID silos at epsilon 1; honest deltas of norm 6.6-12.6, rho
1.0-1.30) the largest honest step was 27, a fifth of the bound (docs/federated.md).

What a malicious client inside the bounds can still do: choose its delta and weight freely,
and with them the direction of the round's step, cancelling honest contributions; the step
stays within the bound above, so the model moves no further than an honest round of K
clients at full norm can move it, i.e. at most ``sqrt(K)`` times one honest client's full
clipped delta (in the test above: 111.8 instead of 204, still 7.6 x that honest round's
actual step). With equal weights its own share is about ``server_lr / K`` of its delta, at
most about one clipped delta. The bound is in units of ``update_clip_norm``, the public
knob: honest deltas well below it (the ``norm_clipped`` fit metric says how often it binds)
leave a liar that slack. A client that also bypasses Flower's mod and writes raw integers into
its masked vector is held by the same step bound (the guard's element and norm checks on the
mean still apply). It can also shift the mean category frequencies (checked for sign
and total only). Per-client bounds under secure aggregation need zero-knowledge norm proofs
(e.g. RoFL, ACORN), which Flower's SecAgg+ does not offer; docs/security.md states this threat
model.
"""

from __future__ import annotations

import math

import numpy as np

from fedsynth.common.data.encoding import CountsLayout
from fedsynth.common.protocol.federation import TAIL_SLOTS, FederationPlan
from fedsynth.server.aggregate import squared_norm

# quantisation (2**22 levels over +-clipping_range) and float32 round-off
_ELEMENT_SLACK = 1e-3
_NORM_SLACK_REL = 1e-3
# a weight is one quantised value (resolution 2 * clipping_range / quantization_range ~ 4e-6)
_WEIGHT_SLACK = 1e-5


def aggregate_problem(mean: list[np.ndarray], plan: FederationPlan, clipping_range: float,
                      layout: CountsLayout | None = None) -> str | None:
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
    norm = math.sqrt(squared_norm(mean[:-1]))
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
    if layout is not None:
        if layout.total + TAIL_SLOTS != tail.size:
            return f"the aggregate carries {tail.size - TAIL_SLOTS} frequencies, expected {layout.total}"
        flat = tail[:-TAIL_SLOTS]
        if flat.size and float(flat.min()) < -_ELEMENT_SLACK:
            return "a mean category frequency is negative"
        for j, block in enumerate(layout.split(flat)):
            total = float(block.sum())
            if abs(total - w_bar) > _ELEMENT_SLACK * max(1, block.size):
                return f"category frequencies of column block {j} sum to {total:.4g}, expected {w_bar:.4g}"
    return None


def max_step_norm(plan: FederationPlan, contributors: int) -> float:
    """How far one round may move the global model: ``sqrt(K) * update_clip_norm``, the longest
    step an honest round of K equal-weight contributors can take (module docstring)."""
    return math.sqrt(max(1, int(contributors))) * plan.update_clip_norm


def bounded_server_lr(lr: float, deltas: list[np.ndarray], plan: FederationPlan, contributors: int) -> float:
    """``lr``, shortened where the step ``lr * deltas`` would be longer than :func:`max_step_norm`.

    Needs no per-client information, so it holds against a client that lies in its weight and
    norm slots, which steer the aligned server step but are not trusted here."""
    norm = math.sqrt(squared_norm(deltas))
    limit = max_step_norm(plan, contributors)
    return lr if lr * norm <= limit else limit / norm
