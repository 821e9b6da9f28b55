"""FedAvg over SecAgg+ sums of weight deltas.

Under Flower's SecAgg+ workflow the strategy never sees an individual update: every result
handed to ``aggregate_fit`` carries the same, already-unmasked *mean* of the clients'
(scaled) deltas. This strategy turns that mean into the next global model and keeps the
mean of the clients' privatised category frequencies for conditional sampling.

Each round the model moves by ``server_lr x mean delta``, ``server_lr`` fixed by the plan or
aligned (:func:`~fedsynth.common.protocol.federation.aligned_server_lr`, in [1, K] for K contributors),
then shortened where needed so that the step is at most ``sqrt(K) x update_clip_norm`` long:
the longest step an honest round of K equal-weight clients can take with the aligned step,
and so all that a client lying in its weight and norm slots can get
(:mod:`fedsynth.server.aggregate_guard`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.common import FitIns, Parameters, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.strategy import FedAvg

from fedsynth.common.protocol.federation import FederationPlan, aligned_server_lr, unpack_aggregate
from fedsynth.server.aggregate_guard import aggregate_problem, bounded_server_lr


def next_global(current: list[np.ndarray], mean: list[np.ndarray], plan: FederationPlan, freq_sizes: list[int],
                contributors: int) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """(next global weights, category frequencies, the server step used) from one round's
    unmasked mean update. The step used is the plan's or the aligned one, shortened to the
    step bound (an honest equal-weight round with the aligned step never is).

    Shared by the Flower strategy and the in-process quality bench (bench/federated_quality.py),
    so both step the model the same way.
    """
    update = unpack_aggregate(mean, plan, freq_sizes)
    lr = plan.server_lr if plan.server_lr is not None else aligned_server_lr(update, contributors)
    lr = bounded_server_lr(lr, update.deltas, plan, contributors)
    return [c + lr * d for c, d in zip(current, update.deltas)], update.freqs, lr


class SecureDeltaFedAvg(FedAvg):
    def __init__(self, plan: FederationPlan, initial: list[np.ndarray], freq_sizes: list[int],
                 total_clients: int, clipping_range: float) -> None:
        super().__init__(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=plan.min_clients,
                         min_available_clients=plan.min_clients, accept_failures=True)
        self.plan = plan
        self.current = [np.asarray(a, dtype=np.float32) for a in initial]
        self.freq_sizes = freq_sizes
        self.freqs: list[np.ndarray] | None = None
        self.total_clients = total_clients
        self.clipping_range = clipping_range
        self.eligible: list[str] | None = None  # node ids that passed the budget check, in selection order
        self.last_round: dict[str, Any] | None = None
        self.rejected: str | None = None  # why the last aggregate was discarded, if it was

    def initialize_parameters(self, client_manager):
        return ndarrays_to_parameters(self.current)

    def fit_config(self, server_round: int) -> dict[str, Any]:
        return {"fedsynth": self.plan.to_json(), "round": server_round, "total_clients": self.total_clients,
                "clipping_range": self.clipping_range, "freq_size": int(sum(self.freq_sizes))}

    def configure_fit(self, server_round: int, parameters: Parameters, client_manager):
        everyone = client_manager.all()
        pool = [everyone[c] for c in (self.eligible if self.eligible is not None else everyone) if c in everyone]
        k = self.plan.clients_per_round or len(pool)
        pool = pool[:k]  # ``eligible`` arrives ordered by the workflow (least budget spent first)
        fit_ins = FitIns(parameters, self.fit_config(server_round))
        return [(c, fit_ins) for c in pool]

    def aggregate_fit(self, server_round, results, failures):
        self.last_round = None
        contributing = [r for _, r in results if r.num_examples > 0]
        if not contributing:
            return None, {}
        mean = parameters_to_ndarrays(contributing[0].parameters)  # identical in every result
        if len(mean) != len(self.current) + 1:
            raise ValueError(f"aggregate has {len(mean)} arrays, expected {len(self.current) + 1}")
        problem = aggregate_problem(mean, self.plan, self.clipping_range, self.freq_sizes)  # bounds an honest round obeys
        if problem:
            self.rejected = f"aggregate rejected: {problem}"
            raise ValueError(f"{self.rejected} (non-finite or out of bounds); round discarded")
        self.current, self.freqs, lr = next_global(self.current, mean, self.plan, self.freq_sizes, len(contributing))
        reports = {str(p.cid): dict(r.metrics) for p, r in results}
        self.last_round = {"round": server_round, "contributors": len(contributing), "server_lr": round(lr, 4),
                           "failures": len(failures), "reports": reports}
        return ndarrays_to_parameters(self.current), {"contributors": len(contributing)}
