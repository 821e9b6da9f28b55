"""FedAvg over SecAgg+ sums of weight deltas.

Under Flower's SecAgg+ workflow the strategy never sees an individual update: every result
handed to ``aggregate_fit`` carries the same, already-unmasked *mean* of the clients'
(scaled) deltas. This strategy turns that mean into the next global model and keeps the
mean of the clients' privatised category frequencies and histograms, for conditional and
calibrated sampling.

Each round the model moves by ``server_lr x mean delta``, ``server_lr`` fixed by the plan or
aligned (:func:`~fedsynth.server.aggregate.aligned_server_lr`, in [1, K] for K contributors),
then shortened where needed so that the step is at most ``sqrt(K) x update_clip_norm`` long:
the longest step an honest round of K equal-weight clients can take with the aligned step,
and so all that a client lying in its weight and norm slots can get
(:mod:`fedsynth.server.aggregate_guard`). The round itself, guard included, is
:func:`fedsynth.server.round.finish_round`, shared with the in-process quality bench.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from flwr.common import FitIns, Parameters, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.strategy import FedAvg

from fedsynth.common.data.encoding import CountsLayout
from fedsynth.common.model.marginal_fit import Pair
from fedsynth.common.protocol.federation import FIELD_CLIPPING_RANGE, FederationPlan, shared_grid
from fedsynth.common.protocol.marginal_stage import StageSum, read_stage_sum
from fedsynth.common.protocol.messages import FitConfig, FitMetrics, MessageError, Stage
from fedsynth.server.round import RoundRejected, finish_round
from fedsynth.server.shared_round import ServerAdam, finish_shared_round

_log = logging.getLogger("fedsynth.server")


def read_metrics(metrics: dict[str, Any], cid: str) -> FitMetrics:
    """A client's fit metrics for the round record; malformed ones are logged and recorded as
    empty (they are informational: the update itself was aggregated under SecAgg+)."""
    try:
        return FitMetrics.from_record(metrics)
    except MessageError as exc:
        _log.warning("client %s: %s", cid, exc)
        return FitMetrics()


def _reports(results) -> dict[str, FitMetrics]:
    """Each contributor's fit metrics of a round, by node id."""
    return {str(p.cid): read_metrics(dict(r.metrics), str(p.cid)) for p, r in results}


class SecureDeltaFedAvg(FedAvg):
    def __init__(self, plan: FederationPlan, initial: list[np.ndarray], layout: CountsLayout,
                 total_clients: int, clipping_range: float, optimizer_moments: list[np.ndarray] | None = None,
                 optimizer_steps: int = 0) -> None:
        super().__init__(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=plan.min_clients,
                         min_available_clients=plan.min_clients, accept_failures=True)
        self.plan = plan
        self.current = [np.asarray(a, dtype=np.float32) for a in initial]
        self.layout = layout  # the counts release's blocks (TableEncoder.counts_layout)
        self.freqs: list[np.ndarray] | None = None
        self.total_clients = total_clients
        self.clipping_range = clipping_range
        self.eligible: list[str] | None = None  # node ids that passed the budget check, in selection order
        self.last_round: dict[str, Any] | None = None  # the last accepted round's record (RoundOutcome.record)
        self.rejected: str | None = None  # why the last aggregate was discarded, if it was
        # shared noise: the coordinator's own optimiser steps on each round's pooled noisy gradient
        self.server_optimizer: ServerAdam | None = None
        # a marginal-fit round instead of a training round: (stage, pairs, values expected)
        self.stage: tuple[str, tuple[Pair, ...], int] | None = None
        self.stage_sum: StageSum | None = None  # what the last marginal-fit round summed
        self.pooled_rows: float | None = None  # shared noise: the row estimate of the pooled counts
        self.bin_edges: dict[str, tuple[float, ...]] | None = None  # measured bins, from the pooled counts
        if plan.shared_noise is not None:
            self.grid = shared_grid(plan, self.current)
            self.server_optimizer = ServerAdam(self.current, plan.model.lr, optimizer_moments, optimizer_steps)

    def initialize_parameters(self, client_manager):
        return ndarrays_to_parameters(self.current)

    def fit_config(self, server_round: int) -> FitConfig:
        # a marginal-fit round travels as field residues, as shared-noise updates (common/protocol/marginal_stage.py)
        stage, pairs, _ = self.stage or (Stage.TRAIN, (), 0)
        clipping = self.clipping_range if self.stage is None else FIELD_CLIPPING_RANGE
        return FitConfig(plan=self.plan, round=server_round, total_clients=self.total_clients, clipping_range=clipping,
                         freq_size=self.layout.total, stage=stage, pairs=pairs,
                         bin_edges=None if stage == Stage.POOLED_COUNTS else self.bin_edges)

    def configure_fit(self, server_round: int, parameters: Parameters, client_manager):
        everyone = client_manager.all()
        pool = [everyone[c] for c in (self.eligible if self.eligible is not None else everyone) if c in everyone]
        # a training round takes the first clients_per_round (``eligible`` arrives ordered by the
        # workflow: least budget spent first); a marginal-fit release is asked of everyone
        if self.stage is None:
            pool = pool[: self.plan.clients_per_round or len(pool)]
        fit_ins = FitIns(parameters, self.fit_config(server_round).to_config())
        return [(c, fit_ins) for c in pool]

    def aggregate_fit(self, server_round, results, failures):
        self.last_round = None
        contributing = [r for _, r in results if r.num_examples > 0]
        if not contributing:
            return None, {}
        mean = parameters_to_ndarrays(contributing[0].parameters)  # identical in every result
        if self.stage is not None:
            return self._aggregate_stage(server_round, mean, results, failures, len(contributing))
        try:
            if self.server_optimizer is not None:
                if self.pooled_rows is None:
                    raise RoundRejected("a shared-noise step before the pooled counts were released")
                outcome = finish_shared_round(mean, self.plan, self.grid, self.pooled_rows, len(contributing),
                                              self.server_optimizer, self.freqs)
            else:
                outcome = finish_round(self.current, mean, self.plan, self.clipping_range, self.layout,
                                       len(contributing))
        except RoundRejected as exc:
            self.rejected = str(exc)
            raise ValueError(f"{self.rejected} (non-finite or out of bounds); round discarded") from None
        self.current, self.freqs = outcome.arrays, outcome.freqs
        self.last_round = outcome.record(server_round, _reports(results), failures=len(failures))
        return ndarrays_to_parameters(self.current), {"contributors": len(contributing)}

    def _aggregate_stage(self, server_round, mean, results, failures, contributors: int):
        """A marginal-fit round: keep the sum of the releases; the model does not move."""
        assert self.stage is not None
        try:
            self.stage_sum = read_stage_sum(mean, contributors, self.stage[2])
        except ValueError as exc:
            self.stage_sum, self.rejected = None, str(exc)
            raise ValueError(f"{self.rejected}; {self.stage[0]} round discarded") from None
        self.last_round = {"round": server_round, "stage": self.stage[0], "contributors": contributors,
                           "failures": len(failures),
                           "reports": {c: m.to_record() for c, m in _reports(results).items()}}
        return ndarrays_to_parameters(self.current), {"contributors": contributors}


class PlainMeanFedAvg(SecureDeltaFedAvg):
    """SecureDeltaFedAvg fed the plain mean of individual updates (what SecAgg+ would unmask).

    Benchmark-only counterpart of the SecAgg+ path (``FederatedRun(insecure_plain_aggregation=True)``):
    same strategy, same update format, only the mean is computed in the clear by the coordinator."""

    def aggregate_fit(self, server_round, results, failures):
        contributing = [r for _, r in results if r.num_examples > 0]
        if contributing:
            updates = [parameters_to_ndarrays(r.parameters) for r in contributing]
            mean = ndarrays_to_parameters([np.mean(np.stack(a), axis=0) for a in zip(*updates)])
            for r in contributing:
                r.parameters = mean
        return super().aggregate_fit(server_round, results, failures)
