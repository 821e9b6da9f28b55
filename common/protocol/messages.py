"""The messages coordinator and institutions exchange, typed, with their wire keys.

Flower carries fedsynth's instructions and answers as flat config/metric records (string
keys, scalar values). The keys live here, one class per message kind (like Flower's own
``Key`` classes), and each message is a dataclass with a converter to the record it is sent
as and one back that checks every field's type: a malformed message is refused with a
:class:`MessageError` naming the key, never half-read.

The wire keys and values are fedsynth's protocol: what the coordinator sees in plaintext
(docs/security.md) is exactly what these records hold. Changing a key breaks every
installation of another version.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedsynth.common.protocol.federation import FederationPlan

Scalar = bool | int | float | str
Record = dict[str, Scalar]


class MessageError(ValueError):
    """A record that is not the message it claims to be (missing key, wrong type)."""


class ConfigKey:
    """Keys of the coordinator's instructions (the fit config and the budget check)."""

    PLAN = "fedsynth"  # the FederationPlan as JSON
    ROUND = "round"
    TOTAL_CLIENTS = "total_clients"
    CLIPPING_RANGE = "clipping_range"
    FREQ_SIZE = "freq_size"
    ARRAYS_SHA256 = "arrays_sha256"
    STAGE = "stage"  # absent in a training round (Stage.TRAIN)
    PAIRS = "pairs"  # Stage.PAIR_COUNTS: the chosen pairs, a JSON list of [a, b] column-segment indices
    # measured bins (ModelConfig.binning), after the pooled counts: JSON {column: [edges]} on each
    # binned column's scale, derived by the coordinator from the pooled histograms
    BIN_EDGES = "bin_edges"


class Stage:
    """What a fit instruction asks for: a training round, one of the marginal fit's two
    releases after the last round, or (shared noise) the pooled counts before the first
    (:mod:`fedsynth.common.protocol.marginal_stage`)."""

    TRAIN = "train"
    PAIR_ERRORS = "pair_errors"  # projections of every pair's residual against the global model
    PAIR_COUNTS = "pair_counts"  # the chosen pairs' 2-way counts
    POOLED_COUNTS = "pooled_counts"  # shared noise: category counts and histograms, with a noise share


STAGES = (Stage.TRAIN, Stage.PAIR_ERRORS, Stage.PAIR_COUNTS, Stage.POOLED_COUNTS)


class BudgetKey:
    """Keys of an institution's answer to the budget check (``get_properties``)."""

    CAN_TRAIN = "can_train"
    REASON = "reason"
    SCHEMA_HASH = "schema_hash"
    EPSILON_SPENT = "epsilon_spent"
    EPSILON_ALONE = "epsilon_alone"  # shared noise: epsilon if every other party colluded
    ROUNDS_LEFT = "rounds_left"  # shared noise: further rounds of this plan the institution can afford
    DELTA = "delta"
    UNREACHABLE = "unreachable"  # set by the coordinator for a node that did not answer


class MetricKey:
    """Keys of the metrics an institution returns with its (masked) update."""

    EPSILON_SPENT = "epsilon_spent"
    EPSILON_ALONE = "epsilon_alone"
    NORM_CLIPPED = "norm_clipped"
    REPLAYED = "replayed"
    REFUSED = "refused"


# ---------------------------------------------------------------------------- field readers
def _present(record: Mapping[str, Any], key: str, what: str) -> Any:
    if key not in record:
        raise MessageError(f"malformed {what}: no {key!r}")
    return record[key]


def _int(record: Mapping[str, Any], key: str, what: str) -> int:
    value = _present(record, key, what)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MessageError(f"malformed {what}: {key!r} = {value!r} is not an integer")
    return value


def _number(record: Mapping[str, Any], key: str, what: str) -> float:
    value = _present(record, key, what)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MessageError(f"malformed {what}: {key!r} = {value!r} is not a number")
    return float(value)


def _str(record: Mapping[str, Any], key: str, what: str) -> str:
    value = _present(record, key, what)
    if not isinstance(value, str):
        raise MessageError(f"malformed {what}: {key!r} = {value!r} is not a string")
    return value


def _bool(record: Mapping[str, Any], key: str, what: str) -> bool:
    value = _present(record, key, what)
    if not isinstance(value, bool):
        raise MessageError(f"malformed {what}: {key!r} = {value!r} is not true/false")
    return value


def _optional(reader, record: Mapping[str, Any], key: str, what: str):
    return reader(record, key, what) if key in record else None


def _bin_edges(record: Mapping[str, Any], what: str) -> dict[str, tuple[float, ...]] | None:
    """A JSON object of column name -> list of numbers (the receiver checks them against its schema)."""
    text = _optional(_str, record, ConfigKey.BIN_EDGES, what)
    if text is None:
        return None
    try:
        raw = json.loads(text)
    except ValueError:
        raise MessageError(f"malformed {what}: {ConfigKey.BIN_EDGES!r} is not JSON") from None
    if not (isinstance(raw, dict) and all(
            isinstance(v, list) and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in v)
            for v in raw.values())):
        raise MessageError(f"malformed {what}: {ConfigKey.BIN_EDGES!r} = {text[:200]!r} is not an object of "
                           "column names to lists of numbers")
    return {str(k): tuple(float(e) for e in v) for k, v in raw.items()}


def _plan(record: Mapping[str, Any], what: str) -> FederationPlan:
    text = _str(record, ConfigKey.PLAN, what)
    try:
        return FederationPlan.from_json(text)
    except (ValueError, TypeError, KeyError) as exc:
        raise MessageError(f"malformed {what}: {ConfigKey.PLAN!r} is not a federation plan ({exc})") from None


def _pairs(record: Mapping[str, Any], what: str) -> tuple[tuple[int, int], ...]:
    """A JSON list of distinct [a, b] index pairs with 0 <= a < b (the receiver checks the upper bound)."""
    text = _optional(_str, record, ConfigKey.PAIRS, what) or "[]"
    try:
        raw = json.loads(text)
    except ValueError:
        raise MessageError(f"malformed {what}: {ConfigKey.PAIRS!r} is not JSON") from None
    ok = isinstance(raw, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(i, int) and not isinstance(i, bool) for i in p)
        and 0 <= p[0] < p[1] for p in raw)
    pairs = tuple((p[0], p[1]) for p in raw) if ok else ()
    if not ok or len(set(pairs)) != len(pairs):
        raise MessageError(f"malformed {what}: {ConfigKey.PAIRS!r} = {text[:200]!r} is not a list of distinct "
                           f"[a, b] index pairs with 0 <= a < b")
    return pairs


def _without_none(values: dict[str, Scalar | None]) -> Record:
    return {k: v for k, v in values.items() if v is not None}


# ---------------------------------------------------------------------------- coordinator -> institution
@dataclass(frozen=True)
class FitConfig:
    """The instruction that comes with the global model in each SecAgg+ fit."""

    plan: FederationPlan
    round: int
    total_clients: int  # institutions in the run: each plans its noise for its share of rounds
    clipping_range: float  # SecAgg+'s, which the packed update must fit
    freq_size: int  # category frequencies in the packed tail (a refusal sends that many zeros)
    stage: str = Stage.TRAIN
    pairs: tuple[tuple[int, int], ...] = ()  # Stage.PAIR_COUNTS only
    # measured bins: each binned column's edges, from the pooled counts (None before them, or with
    # the schema's bins); encoding parameters only, which no privacy accounting depends on
    bin_edges: Mapping[str, tuple[float, ...]] | None = None

    def to_config(self) -> Record:
        record: Record = {ConfigKey.PLAN: self.plan.to_json(), ConfigKey.ROUND: int(self.round),
                          ConfigKey.TOTAL_CLIENTS: int(self.total_clients), ConfigKey.CLIPPING_RANGE: self.clipping_range,
                          ConfigKey.FREQ_SIZE: int(self.freq_size)}
        if self.stage != Stage.TRAIN:
            record[ConfigKey.STAGE] = self.stage
            record[ConfigKey.PAIRS] = json.dumps([list(p) for p in self.pairs])
        if self.bin_edges is not None:
            record[ConfigKey.BIN_EDGES] = json.dumps({k: list(v) for k, v in self.bin_edges.items()})
        return record

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FitConfig:
        what = "fit config"
        stage = _optional(_str, config, ConfigKey.STAGE, what) or Stage.TRAIN
        if stage not in STAGES:
            raise MessageError(f"malformed {what}: {ConfigKey.STAGE!r} = {stage!r} is not one of {STAGES}")
        return cls(plan=_plan(config, what), round=_int(config, ConfigKey.ROUND, what),
                   total_clients=_int(config, ConfigKey.TOTAL_CLIENTS, what),
                   clipping_range=_number(config, ConfigKey.CLIPPING_RANGE, what),
                   freq_size=_int(config, ConfigKey.FREQ_SIZE, what), stage=stage,
                   pairs=_pairs(config, what) if stage != Stage.TRAIN else (), bin_edges=_bin_edges(config, what))


@dataclass(frozen=True)
class BudgetCheck:
    """The question before each round: can this institution afford it under its own cap?"""

    plan: FederationPlan
    total_clients: int
    round: int | None = None
    # SHA-256 of the round's global model: lets an institution that already paid for this
    # exact round (and kept its update) say yes at its cap, since a re-send is free
    arrays_sha256: str | None = None

    def to_config(self) -> Record:
        return _without_none({ConfigKey.PLAN: self.plan.to_json(), ConfigKey.TOTAL_CLIENTS: int(self.total_clients),
                              ConfigKey.ROUND: self.round, ConfigKey.ARRAYS_SHA256: self.arrays_sha256})

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BudgetCheck:
        what = "budget check"
        return cls(plan=_plan(config, what), total_clients=_int(config, ConfigKey.TOTAL_CLIENTS, what),
                   round=_optional(_int, config, ConfigKey.ROUND, what),
                   arrays_sha256=_optional(_str, config, ConfigKey.ARRAYS_SHA256, what))


# ---------------------------------------------------------------------------- institution -> coordinator
#: ``epsilon_spent`` of a reply that knows no spend (a refusal before the ledger was read)
NO_SPEND = -1.0


@dataclass(frozen=True)
class BudgetReply:
    """An institution's answer to a :class:`BudgetCheck`, read by the coordinator in plaintext:
    yes/no and why, its schema hash, its spend rounded to 0.01 and its delta; nothing about
    its rows."""

    can_train: bool
    reason: str = ""
    schema_hash: str | None = None
    epsilon_spent: float | None = None  # rounded to 0.01; NO_SPEND when unknown
    delta: float | None = None
    unreachable: bool = False  # the coordinator's note for a node whose reply never came
    # shared noise only, rounded to 0.01: the spend if every other party colluded (epsilon_spent
    # is against the coordinator plus up to T colluding institutions)
    epsilon_alone: float | None = None
    # shared noise only: how many more rounds of this plan it can afford (each costs the same),
    # so the coordinator asks again only when the first institution runs out
    rounds_left: int | None = None

    def to_record(self) -> Record:
        return _without_none({BudgetKey.CAN_TRAIN: self.can_train, BudgetKey.REASON: self.reason,
                              BudgetKey.SCHEMA_HASH: self.schema_hash, BudgetKey.EPSILON_SPENT: self.epsilon_spent,
                              BudgetKey.DELTA: self.delta, BudgetKey.UNREACHABLE: self.unreachable or None,
                              BudgetKey.EPSILON_ALONE: self.epsilon_alone, BudgetKey.ROUNDS_LEFT: self.rounds_left})

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> BudgetReply:
        what = "budget reply"
        return cls(can_train=_bool(record, BudgetKey.CAN_TRAIN, what), reason=_str(record, BudgetKey.REASON, what),
                   schema_hash=_optional(_str, record, BudgetKey.SCHEMA_HASH, what),
                   epsilon_spent=_optional(_number, record, BudgetKey.EPSILON_SPENT, what),
                   delta=_optional(_number, record, BudgetKey.DELTA, what),
                   unreachable=bool(_optional(_bool, record, BudgetKey.UNREACHABLE, what)),
                   epsilon_alone=_optional(_number, record, BudgetKey.EPSILON_ALONE, what),
                   rounds_left=_optional(_int, record, BudgetKey.ROUNDS_LEFT, what))



@dataclass(frozen=True)
class FitMetrics:
    """The plaintext metrics beside an institution's masked update: its spend rounded to 0.01
    and 0/1 flags (delta norm-clipped, a replay of a lost round, a refusal). A refusal
    carries only ``refused = 1``."""

    epsilon_spent: float | None = None
    norm_clipped: float | None = None
    replayed: float | None = None
    refused: float | None = None
    epsilon_alone: float | None = None  # shared noise only (see BudgetReply)

    def to_record(self) -> Record:
        return _without_none({MetricKey.EPSILON_SPENT: self.epsilon_spent, MetricKey.NORM_CLIPPED: self.norm_clipped,
                              MetricKey.REPLAYED: self.replayed, MetricKey.REFUSED: self.refused,
                              MetricKey.EPSILON_ALONE: self.epsilon_alone})

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> FitMetrics:
        what = "fit metrics"
        return cls(**{name: _optional(_number, record, key, what) for name, key in (
            ("epsilon_spent", MetricKey.EPSILON_SPENT), ("norm_clipped", MetricKey.NORM_CLIPPED),
            ("replayed", MetricKey.REPLAYED), ("refused", MetricKey.REFUSED),
            ("epsilon_alone", MetricKey.EPSILON_ALONE))})
