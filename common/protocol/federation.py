"""What coordinator and clients agree on for a federated run, and the update wire format.

The plan (:class:`FederationPlan`) is public: it travels in plaintext in every fit
instruction and contains nothing about any institution's data.

An update is the client's weight *delta* for the round, norm- and element-clipped and scaled
so that SecAgg+'s fixed-point quantisation (values clipped to +-``clipping_range`` then mapped
onto ``quantization_range`` integers) keeps it precise, followed by the client's privatised
category frequencies and numerical histograms (one DP release made once, re-sent unchanged
each round: no extra cost),
the squared norm of the delta it sent (as a fraction of ``update_clip_norm**2``), its
aggregation weight ``w`` once more and ``w`` itself. Everything is multiplied by ``w`` before
masking, so the mean SecAgg+ unmasks divided by its last element is the *weighted* mean
``sum(w_k * x_k) / sum(w_k)``, and the second-to-last is the mean squared weight. The norm
and weight slots are functions of DP releases (the delta; the noisy counts behind ``w``) and
reach the coordinator only inside the round's means; they tell it how aligned the round's
deltas were and how unequal the weights (see
:func:`fedsynth.server.aggregate.aligned_server_lr`). With exactly two
contributors the mean and mean square of the weights give both weights: each is a capped,
DP-derived row estimate, already paid for.

Why weights: each institution adds its own DP noise, and the noise in its delta scales like
1/(its rows), so a plain mean is dominated by the smallest silo (on Adult's 5 Dirichlet silos
of 1.9k-10k rows the plain mean's noise variance is ~2.6x that of the row-weighted mean;
measured TSTR 0.775 -> 0.809, docs/federated.md). The weight is ``min(rows_estimate, cap) /
cap`` where ``rows_estimate`` is post-processing of the noisy category counts the client
released (and was charged for) once, never its true row count, and ``cap`` is the plan's
public ``weight_cap_rows``: the cap also bounds how much weight a lying client can claim.
Every client reports ``num_examples = 1``; the coordinator learns only the mean and mean
square of each round's participants' weights (DP-derived, coarse numbers).

Shared-noise updates (:func:`pack_shared_update`) are another format: integer gradient sums with
noise shares and a contributor count, no counts (released once as shares before round 1).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

import numpy as np

import torch

from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.data.schema import Schema
from fedsynth.common.dp.integer_noise import FIELD_BITS, IntegerGrid, from_field_sum, to_field
from fedsynth.common.dp.shared_noise import SharedNoise
from fedsynth.common.model.marginal_fit import MarginalFitConfig
from fedsynth.common.model.tabular import ModelConfig, build_model

AGGREGATION_WEIGHTS = ("rows", "equal")
#: local: each institution adds the noise for its own budget; shared: one pooled step per
#: round with the noise split into shares under SecAgg+ (FederationPlan.shared_noise)
NOISE_MODES = ("local", "shared")


# Federated VAEs default narrower than single-party ones (ModelConfig.hidden = 64). Each
# institution adds its own DP noise, so the aggregate carries ~sqrt(#institutions) times the
# noise of pooled training at the same epsilon (on Adult's 5 silos: like pooled training at
# epsilon ~0.4), and DP noise grows with sqrt(#parameters) while the clipped signal does not.
# Measured with bench/federated_quality.py (5 Dirichlet silos, epsilon 1, repeated runs):
# hidden 64 -> mean TSTR 0.766 (11 runs, spread 0.69-0.82), 48 -> 0.771, 32 -> 0.807 (7 runs,
# 0.77-0.84), 24 -> 0.790; single-party (hidden 64, pooled) 0.850. The GAN keeps its
# single-party width (not measured federated).
FEDERATED_VAE_HIDDEN = 32


def federated_model_config(model: str = "vae", **fields) -> ModelConfig:
    """The default architecture of a local-noise federated run; explicit ``fields`` win. Its bins
    are the schema's, as every local-noise run's (:attr:`FederationPlan.binning`)."""
    if model == "vae":
        fields.setdefault("hidden", FEDERATED_VAE_HIDDEN)
    fields.setdefault("binning", "schema")
    return ModelConfig(model=model, **fields)


@dataclass
class SecAggSettings:
    """SecAgg+ parameters. ``num_shares`` and ``reconstruction_threshold`` are each either a
    fraction (<= 1: of the round's clients, of the shares) or a whole count (> 1).

    Flower reads a *float* as a fraction whatever its size, so a count typed as 10.0 (a CLI
    float, a TOML ``10.0``) would become 10 x the clients; counts are turned into ints here.
    A fixed share count is SecAgg+'s remedy for its quadratic cost with many clients: each
    client then masks with, and shares its keys among, ``num_shares - 1`` neighbours only.
    """

    num_shares: float = 1.0  # fraction of the round's clients that hold shares of each key
    reconstruction_threshold: float = 0.67  # fraction of shares needed to unmask / recover
    clipping_range: float = 8.0
    quantization_range: int = 2**22
    modulus_range: int = 2**32
    timeout: float | None = None

    def __post_init__(self) -> None:
        self.num_shares = _fraction_or_count("num_shares", self.num_shares, min_count=3)
        if isinstance(self.num_shares, int) and self.num_shares % 2 == 0:
            # A node shares with itself and equally many ring neighbours on each side, so the
            # count is odd. Flower bumps an even count only *after* telling the clients the old
            # one, and every round then fails (measured: 10 shares, 12 clients); round it up here.
            self.num_shares += 1
        self.reconstruction_threshold = _fraction_or_count("reconstruction_threshold", self.reconstruction_threshold,
                                                           min_count=2)
        if isinstance(self.num_shares, int) and isinstance(self.reconstruction_threshold, int) \
                and self.reconstruction_threshold >= self.num_shares:
            raise ValueError(f"reconstruction_threshold = {self.reconstruction_threshold} must be below "
                             f"num_shares = {self.num_shares} (both are counts)")

    def for_round(self, clients: int) -> tuple[int | float, int | float]:
        """(num_shares, reconstruction_threshold) to hand Flower for a round of ``clients``.

        A share count at or above the round's size means every client (Flower would otherwise
        create more shares than there are neighbours to hold them, and a count threshold could
        then never be met); a count threshold keeps its ratio to the shares in that case.
        """
        shares, threshold = self.num_shares, self.reconstruction_threshold
        if isinstance(shares, int) and shares >= clients:
            if isinstance(threshold, int):
                threshold = threshold / shares
            shares = 1.0
        return shares, threshold


def _fraction_or_count(name: str, value: float, *, min_count: int) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} = {value!r}: must be a fraction in (0, 1] or a whole count > 1")
    if value <= 1:
        return float(value)
    if float(value) != int(value):
        raise ValueError(f"{name} = {value!r}: a value above 1 is a count and must be a whole number")
    if value < min_count:
        raise ValueError(f"{name} = {value!r}: as a count it must be at least {min_count}")
    return int(value)


@dataclass
class FederationPlan:
    rounds: int = 20
    clients_per_round: int | None = None  # None = every available client each round
    min_clients: int = 2
    local_epochs: float = 1.5
    model: ModelConfig = field(default_factory=federated_model_config)
    update_scale: float = 4.0  # delta * scale must fit in +-clipping_range
    # L2 bound on a client's (unscaled) delta; each round's step is at most sqrt(K) x this
    # (server/aggregate_guard.py), which is all a client lying in its slots can get
    update_clip_norm: float = 50.0
    # least noise of each client's category-frequency release up to epsilon 1, divided by sqrt(epsilon) above
    marginal_noise: float = 10.0  # (common.dp.accounting.frequency_noise)
    schema_hash: str = ""
    seed: int = 0  # public seed for the initial global weights
    # Step the global model by server_lr x (weighted mean client delta). None = chosen each
    # round from how aligned the deltas were (server.aggregate.aligned_server_lr), between about 1 (clients
    # agree: the mean is already a full step) and the number of contributors K (the deltas
    # are mostly independent DP noise: each client's Adam takes a full-size step, averaging K
    # of them shrinks the shared signal ~K-fold, so the *sum* is the step; measured on Adult,
    # 5 IID silos, epsilon 1: TSTR 0.57 with 1.0, 0.77 with 5). The fixed sum, the default
    # until the fourth session, over-shot when noise was small (epsilon 10: 2-way TVD 0.27 vs
    # 0.22) or silos alike (3 IID silos); measured in docs/federated.md.
    server_lr: float | None = None
    # "rows": weight each update by the client's DP row-count estimate (see the module
    # docstring), capped at weight_cap_rows; "equal": every contributor counts the same.
    aggregation_weights: str = "rows"
    weight_cap_rows: float = 10_000.0
    # None: local noise (each institution adds the full DP noise for its own budget to its own
    # update). Set: shared noise, one pooled DP-SGD step per round (fedsynth.common.dp.shared_noise);
    # local_epochs, server_lr and the aggregation weights then play no part.
    shared_noise: SharedNoise | None = None
    # After the last round: projections of every pair's residual against the global model, then
    # the worst pairs' 2-way counts, each summed through SecAgg+ (fedsynth.common.protocol.
    # marginal_stage), and the coordinator fine-tunes the model to them. Off by default (pairs =
    # 0) until the table suite is re-measured with the projections (docs/federated.md).
    marginal_fit: MarginalFitConfig = field(default_factory=lambda: MarginalFitConfig(pairs=0))

    def __post_init__(self) -> None:
        if self.aggregation_weights not in AGGREGATION_WEIGHTS:
            raise ValueError(f"aggregation_weights must be one of {AGGREGATION_WEIGHTS}, "
                             f"not {self.aggregation_weights!r}")
        if not self.weight_cap_rows >= 1:
            raise ValueError(f"weight_cap_rows must be at least 1, not {self.weight_cap_rows!r}")

    @property
    def binning(self) -> str:
        """The bins the run's rows are encoded in: the model's choice with shared noise; the schema's
        with local noise, which pools no counts before training that measured bins could come from."""
        return self.model.binning if self.shared_noise is not None else "schema"

    def client_weight(self, rows_estimate: float | None) -> float:
        """The aggregation weight a client sends, in [1/weight_cap_rows, 1]."""
        if self.aggregation_weights == "equal" or rows_estimate is None:
            return 1.0
        return float(np.clip(rows_estimate, 1.0, self.weight_cap_rows) / self.weight_cap_rows)

    def planned_participations(self, total_clients: int) -> int:
        """Rounds each client should plan its noise for (all rounds if all clients train)."""
        if not self.clients_per_round or self.clients_per_round >= total_clients:
            return self.rounds
        return int(np.ceil(self.rounds * self.clients_per_round / total_clients))

    def to_json(self) -> str:
        raw = asdict(self)
        raw["model"] = self.model.to_json()
        if self.shared_noise is None:
            del raw["shared_noise"]  # a local-noise plan reads (and hashes) as before the field existed
        if not self.marginal_fit.pairs:
            del raw["marginal_fit"]  # likewise a plan without a marginal fit
        return json.dumps(raw, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FederationPlan:
        raw = json.loads(text)
        raw["model"] = ModelConfig.from_json(raw["model"])
        if raw.get("shared_noise") is not None:
            raw["shared_noise"] = SharedNoise(**raw["shared_noise"])
        raw["marginal_fit"] = MarginalFitConfig(**raw["marginal_fit"]) if "marginal_fit" in raw \
            else MarginalFitConfig(pairs=0)
        return cls(**raw)


def pack_update(old: list[np.ndarray], new: list[np.ndarray], freqs: list[np.ndarray],
                plan: FederationPlan, clipping_range: float, weight: float = 1.0
                ) -> tuple[list[np.ndarray], bool]:
    """Client side: (weighted, scaled, clipped delta arrays + [weighted frequencies, weight],
    whether the delta was norm-clipped)."""
    if not 0.0 < weight <= 1.0:
        raise ValueError(f"aggregation weight must be in (0, 1], not {weight!r}")
    deltas = [(n - o).astype(np.float64) for o, n in zip(old, new)]
    norm = float(np.sqrt(sum(float(np.sum(d * d)) for d in deltas)))
    factor = min(1.0, plan.update_clip_norm / norm) if norm > 0 else 1.0
    limit = clipping_range / plan.update_scale
    sent = [np.clip(d * factor, -limit, limit) for d in deltas]
    norm_slot = min(1.0, sum(float(np.sum(d * d)) for d in sent) / plan.update_clip_norm**2)
    packed = [d * plan.update_scale * weight for d in sent]
    flat = np.concatenate([f.ravel() for f in freqs]) if freqs else np.zeros(0)
    packed.append(np.append(flat, [norm_slot, weight, 1.0]) * weight)
    return [p.astype(np.float32) for p in packed], factor < 1.0


#: values after the frequencies in the tail array: the squared-norm slot, the weight's square
#: (so that the coordinator learns how unequal the round's weights were, not any one weight)
#: and the weight
TAIL_SLOTS = 3


def refusal_update(arrays: list[np.ndarray], freq_size: int) -> list[np.ndarray]:
    """What a client that does not train sends (with weight 0 in SecAgg+): zeros of the right shapes."""
    zeros = [np.zeros_like(np.asarray(a), dtype=np.float32) for a in arrays]
    zeros.append(np.zeros(int(freq_size) + TAIL_SLOTS, dtype=np.float32))  # frequencies, norm, weight^2, weight
    return zeros


def model_arrays(schema: Schema, plan: FederationPlan) -> list[np.ndarray]:
    """The plan's initial global weights for ``schema`` (public: built from the plan's seed)."""
    key = (schema.hash(), json.dumps(asdict(plan.model), sort_keys=True), plan.seed)
    if key not in _INITIAL:
        torch.manual_seed(plan.seed)
        _INITIAL[key] = build_model(TableEncoder(schema), plan.model).get_arrays()
    return _INITIAL[key]


_INITIAL: dict[tuple, list[np.ndarray]] = {}


def shared_grid(plan: FederationPlan, arrays: list[np.ndarray]) -> IntegerGrid:
    """The integer grid of a shared-noise plan: d is every value of the global weights (all of
    them are trained), C the model's per-example clip norm."""
    if plan.shared_noise is None:
        raise ValueError("not a shared-noise plan")
    return plan.shared_noise.grid(int(sum(np.asarray(a).size for a in arrays)), plan.model.max_grad_norm)


def pack_shared_update(gradient: list[np.ndarray]) -> list[np.ndarray]:
    """Client side, shared-noise mode: the integer contribution as SecAgg+ field residues.

    The model-shaped arrays are the step's integer gradient sum plus noise share; a last array
    holds a 1, so the coordinator's sum also gives the number of contributors. (The counts were
    released once, before the first round: :mod:`fedsynth.client.pooled_counts`.) Residues are
    float64 so that Flower's quantisation passes them through exactly (see :func:`run_secagg`)."""
    return [to_field(np.asarray(g, dtype=np.int64)) for g in gradient] + [to_field(np.ones(1, dtype=np.int64))]


def shared_sums(mean: list[np.ndarray], contributors: int) -> list[np.ndarray]:
    """Coordinator side, the inverse of :func:`pack_shared_update` summed: SecAgg+'s unmasked mean
    of ``contributors`` updates -> the exact integer sum of every array (the tail last)."""
    return [from_field_sum(np.asarray(m, dtype=np.float64) * contributors) for m in mean]


#: Flower's SecAgg+ quantisation settings under which field residues pass through unchanged:
#: clipping range half the field and quantisation range the field, so its quantiser is 1.
FIELD_CLIPPING_RANGE = float(2 ** (FIELD_BITS - 1))
FIELD_QUANTIZATION_RANGE = 2**FIELD_BITS


def run_secagg(settings: SecAggSettings, plan: FederationPlan) -> SecAggSettings:
    """The SecAgg+ settings a run uses: ``settings``, with the field's quantisation when the plan
    shares noise (so residues pass through unchanged; the coordinator, the strategy, the fit
    instruction and the model card all read it from here)."""
    if plan.shared_noise is None:
        return settings
    return replace(settings, clipping_range=FIELD_CLIPPING_RANGE, quantization_range=FIELD_QUANTIZATION_RANGE)


def shared_threshold(shares: int | float, threshold: int | float, clients: int, min_contributors: int) -> int:
    """SecAgg+'s reconstruction threshold for a shared-noise round, as a count of at least K_min.

    Flower unmasks only while every node keeps at least this many active share-holding
    neighbours, so a round with fewer than ``min_contributors`` survivors is never unmasked
    (and the noise it would have revealed never falls below the plan's)."""
    holders = round(shares * clients) if isinstance(shares, float) else int(shares)
    count = int(threshold) if isinstance(threshold, int) else max(2, round(threshold * holders))
    count = max(count, int(min_contributors))
    if isinstance(shares, int) and count >= shares:
        raise ValueError(f"shared noise needs a SecAgg+ threshold of {count} (min_contributors), but each key has "
                         f"only {shares} share holders: raise num_shares above {count}")
    return count
