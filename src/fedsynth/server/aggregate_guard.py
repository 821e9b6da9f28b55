"""Server-side bounds on a SecAgg+ aggregate: what an honest round can produce, nothing more.

Under SecAgg+ the coordinator never sees one client's update, so it cannot check each
client's norm. It can check the *mean* it unmasks against what honest clients can produce:

* every honest packed element lies in [-clipping_range, clipping_range] (``pack_update``
  element-clips; SecAgg+ quantisation clips again), so every element of the mean does;
* every honest delta has L2 norm <= ``update_clip_norm * update_scale`` after packing
  (norm clip, then element clipping only shrinks it), so by the triangle inequality the mean
  of the delta part does too.

An aggregate outside these bounds (a client that skipped ``pack_update`` and wrote raw
integers into its masked vector, or tampered with the SecAgg+ weight factor) is discarded
and the round retried. A malicious client that stays *inside* the bounds still chooses
its own delta freely: it can move the global model by at most ``server_lr *
update_clip_norm / K`` per round in any direction (K contributors, its share of the mean),
or cancel honest clients' contributions. Per-client bounds under secure aggregation need
zero-knowledge norm proofs (e.g. RoFL, ACORN), which Flower's SecAgg+ does not offer.
"""

from __future__ import annotations

import numpy as np

from fedsynth.common.federation import FederationPlan

# quantisation (2**22 levels over +-clipping_range) and float32 round-off
_ELEMENT_SLACK = 1e-3
_NORM_SLACK_REL = 1e-3


def aggregate_problem(mean: list[np.ndarray], plan: FederationPlan, clipping_range: float) -> str | None:
    """Why the unmasked mean (packed update format) cannot come from honest clients, or None."""
    for i, m in enumerate(mean):
        m = np.asarray(m, dtype=np.float64)
        if not np.all(np.isfinite(m)):
            return f"array {i} contains non-finite values"
        peak = float(np.max(np.abs(m))) if m.size else 0.0
        if peak > clipping_range + _ELEMENT_SLACK:
            return f"array {i} has an element of size {peak:.4g}, above the clipping range {clipping_range:g}"
    norm = float(np.sqrt(sum(float(np.sum(np.asarray(m, np.float64) ** 2)) for m in mean[:-1])))
    bound = plan.update_clip_norm * plan.update_scale
    if norm > bound * (1 + _NORM_SLACK_REL) + _ELEMENT_SLACK:
        return f"mean update has L2 norm {norm:.4g}, above the honest bound {bound:g}"
    return None
