"""One round on the coordinator, without any transport: guard, aggregate, next global model.

Whatever carries the updates (Flower's SecAgg+ in :class:`~fedsynth.server.strategy.SecureDeltaFedAvg`,
the plain mean of the benchmark-only path, or the in-process quality bench
``bench/federated_quality.py``), the coordinator ends a round with the *mean* of the
contributors' packed updates. :func:`finish_round` turns that mean into the next global model
the same way for all of them:

1. the guard (:func:`fedsynth.server.aggregate_guard.aggregate_problem`) discards a mean that
   honest clients cannot produce (:class:`RoundRejected`);
2. the mean is unpacked (:func:`fedsynth.server.aggregate.unpack_aggregate`) and the global
   model steps by ``server_lr x mean delta`` (:func:`next_global`);
3. :meth:`RoundOutcome.record` is the round's entry in the checkpoint history and the
   ``round_done`` event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsynth.common.data.encoding import CountsLayout
from fedsynth.common.protocol.federation import FederationPlan
from fedsynth.common.protocol.messages import FitMetrics
from fedsynth.server.aggregate import aligned_server_lr, unpack_aggregate
from fedsynth.server.aggregate_guard import aggregate_problem, bounded_server_lr


class RoundRejected(ValueError):
    """The round's mean is outside what honest clients can produce; the round is discarded."""


def next_global(current: list[np.ndarray], mean: list[np.ndarray], plan: FederationPlan, layout: CountsLayout,
                contributors: int) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """(next global weights, category frequencies, the server step used) from one round's
    unmasked mean update. The step used is the plan's or the aligned one, shortened to the
    step bound (an honest equal-weight round with the aligned step never is)."""
    update = unpack_aggregate(mean, plan, layout)
    lr = plan.server_lr if plan.server_lr is not None else aligned_server_lr(update, contributors)
    lr = bounded_server_lr(lr, update.deltas, plan, contributors)
    return [c + lr * d for c, d in zip(current, update.deltas)], update.freqs, lr


@dataclass(frozen=True)
class RoundOutcome:
    """What an accepted round produced."""

    arrays: list[np.ndarray]  # the next global model
    freqs: list[np.ndarray]  # mean privatised frequencies: per conditionable column, then per histogram
    server_lr: float | None  # the step used (see next_global); None in shared-noise mode (the server's Adam steps)
    contributors: int

    def record(self, server_round: int, reports: dict[str, FitMetrics], failures: int = 0) -> dict[str, Any]:
        """The round's history entry (checkpoint) and ``round_done`` event fields: a file
        format read by simulations/driver.py and the coordinator, so a plain dict."""
        step = {} if self.server_lr is None else {"server_lr": round(self.server_lr, 4)}
        return {"round": server_round, "contributors": self.contributors, **step,
                "failures": failures, "reports": {cid: m.to_record() for cid, m in reports.items()}}


def finish_round(current: list[np.ndarray], mean: list[np.ndarray], plan: FederationPlan, clipping_range: float,
                 layout: CountsLayout, contributors: int) -> RoundOutcome:
    """The next global model from a round's unmasked ``mean`` of ``contributors`` packed
    updates (SecAgg+'s output format); raises :class:`RoundRejected` for a mean outside the
    honest bounds."""
    if len(mean) != len(current) + 1:
        raise ValueError(f"aggregate has {len(mean)} arrays, expected {len(current) + 1}")
    problem = aggregate_problem(mean, plan, clipping_range, layout)  # bounds an honest round obeys
    if problem:
        raise RoundRejected(f"aggregate rejected: {problem}")
    arrays, freqs, lr = next_global(current, mean, plan, layout, contributors)
    return RoundOutcome(arrays, freqs, lr, contributors)
