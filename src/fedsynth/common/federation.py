"""What coordinator and clients agree on for a federated run, and the update wire format.

The plan (:class:`FederationPlan`) is public: it travels in plaintext in every fit
instruction and contains nothing about any institution's data.

An update is the client's weight *delta* for the round, element-clipped and scaled so that
SecAgg+'s fixed-point quantisation (values clipped to +-``clipping_range`` then mapped onto
``quantization_range`` integers) keeps it precise, followed by the client's privatised
category frequencies (a DP release made once, re-sent unchanged each round: no extra cost).
Every client reports ``num_examples = 1``, so SecAgg+ computes a plain mean and the
coordinator learns no row counts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from fedsynth.common.generators import ModelConfig


@dataclass
class SecAggSettings:
    num_shares: float = 1.0  # fraction of the round's clients that hold shares of each key
    reconstruction_threshold: float = 0.67  # fraction of shares needed to unmask / recover
    clipping_range: float = 8.0
    quantization_range: int = 2**22
    modulus_range: int = 2**32
    timeout: float | None = None


@dataclass
class FederationPlan:
    rounds: int = 20
    clients_per_round: int | None = None  # None = every available client each round
    min_clients: int = 2
    local_epochs: float = 1.5
    model: ModelConfig = field(default_factory=ModelConfig)
    update_scale: float = 4.0  # delta * scale must fit in +-clipping_range
    update_clip_norm: float = 50.0  # L2 bound on a client's (unscaled) delta: bounded influence
    marginal_noise: float = 10.0  # noise multiplier of each client's category-frequency release
    schema_hash: str = ""
    seed: int = 0  # public seed for the initial global weights
    # Step the global model by server_lr x (mean client delta). None = the number of
    # contributing clients, i.e. the *sum* of deltas: each client's Adam normalises its step
    # by its own DP noise, so every client takes a full-size step that is mostly noise, and
    # averaging K of them shrinks the shared signal ~K-fold while noise only falls ~sqrt(K).
    # Measured on Adult (5 IID silos, epsilon 1): TSTR 0.57 with 1.0, 0.77 with 5.
    server_lr: float | None = None

    def planned_participations(self, total_clients: int) -> int:
        """Rounds each client should plan its noise for (all rounds if all clients train)."""
        if not self.clients_per_round or self.clients_per_round >= total_clients:
            return self.rounds
        return int(np.ceil(self.rounds * self.clients_per_round / total_clients))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FederationPlan":
        raw = json.loads(text)
        raw["model"] = ModelConfig(**raw["model"])
        return cls(**raw)


def pack_update(old: list[np.ndarray], new: list[np.ndarray], freqs: list[np.ndarray],
                plan: FederationPlan, clipping_range: float) -> tuple[list[np.ndarray], dict[str, float]]:
    """Client side: (scaled, clipped delta arrays + flat frequency array, coarse stats)."""
    deltas = [(n - o).astype(np.float64) for o, n in zip(old, new)]
    norm = float(np.sqrt(sum(float(np.sum(d * d)) for d in deltas)))
    factor = min(1.0, plan.update_clip_norm / norm) if norm > 0 else 1.0
    limit = clipping_range / plan.update_scale
    packed = [np.clip(d * factor, -limit, limit) * plan.update_scale for d in deltas]
    flat = np.concatenate([f.ravel() for f in freqs]) if freqs else np.zeros(0)
    packed.append(flat.astype(np.float64))
    return [p.astype(np.float32) for p in packed], {"norm_clipped": float(factor < 1.0)}


def unpack_aggregate(mean: list[np.ndarray], plan: FederationPlan, sizes: list[int]
                     ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Server side: mean update -> (mean deltas, per-column frequencies)."""
    deltas = [m.astype(np.float32) / plan.update_scale for m in mean[:-1]]
    flat = mean[-1].astype(np.float64)
    freqs, pos = [], 0
    for k in sizes:
        block = np.clip(flat[pos : pos + k], 0.0, None) + 1e-9
        freqs.append(block / block.sum())
        pos += k
    return deltas, freqs
