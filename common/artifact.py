"""The saved synthesizer: the one reader and writer of a model folder, its model id and the
model card of a federated run.

A model folder holds ``synthesizer.json`` (:class:`ModelMeta`: schema, model and training
settings, the privatised condition frequencies, the privacy record, provenance) and
``weights.pt`` (the weights as a torch-saved list of tensors, loadable with
``weights_only=True``). The model id is a content hash of what determines the samples, so
two folders with the same id generate the same rows for the same seed. A single-party fit
(:meth:`fedsynth.Synthesizer.save`) and the coordinator's final global model
(``fedsynth.server.checkpoint.write_global_model``) both write through :func:`write_model`,
and the coordinator's per-round checkpoint reuses the folder layout with its own JSON
(:func:`write_folder`, :func:`read_folder_json`).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsynth.common.atomic import atomic_write_text
from fedsynth.common.data.schema import Schema
from fedsynth.common.dp.accounting import Release
from fedsynth.common.dp.plan import TrainingConfig
from fedsynth.common.errors import FedsynthError
from fedsynth.common.inputs import read_json_object
from fedsynth.common.model.tabular import ModelConfig
from fedsynth.common.outputs import MODEL_FOLDER, MODEL_FORMAT, OutputKind, replace_dir
from fedsynth.common.version import __version__

FORMAT = MODEL_FORMAT
META_FILE = "synthesizer.json"
WEIGHTS_FILE = "weights.pt"
MODEL_CARD = "model_card.json"
# The meta fields the model id covers: everything that changes the rows a seed generates
# (and the privacy claim), nothing that merely records when or how long.
_MODEL_ID_FIELDS = ("schema_hash", "model_config", "cond_probs", "privacy")
_MODEL_ID_IF_PRESENT = ("marginals",)  # absent from models saved before it existed: their ids stand


# ----------------------------------------------------------------------------- weights
def weights_bytes(arrays: list[np.ndarray]) -> bytes:
    """Model weights as bytes (a torch-saved list of tensors, loadable with weights_only=True)."""
    buf = io.BytesIO()
    torch.save([torch.from_numpy(np.asarray(a)) for a in arrays], buf)
    return buf.getvalue()


def load_weights(path: Path) -> list[np.ndarray]:
    try:
        return [a.numpy() for a in torch.load(path, weights_only=True)]
    except Exception as exc:
        raise FedsynthError(f"{path}: cannot read model weights ({exc})") from None


def model_id(meta: dict[str, Any], weights: bytes) -> str:
    """Content hash of what determines the samples: weights, schema, model, conditions, privacy."""
    keyed = {k: meta.get(k) for k in _MODEL_ID_FIELDS}
    keyed.update({k: meta[k] for k in _MODEL_ID_IF_PRESENT if k in meta})
    return hashlib.sha256(weights + json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- meta
@dataclass
class PrivacyRecord:
    """The guarantee a saved model states, and the releases it was computed from."""

    epsilon_target: float
    delta: float
    accountant: str  # the accountant that computed epsilon_spent (TrainingConfig.accountant)
    history: list[Release] = field(default_factory=list)
    epsilon_spent: float | None = None
    # Federated: no history at the coordinator; epsilon_spent is the largest epsilon any
    # client's own accountant reported.
    per_client: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"epsilon_target": self.epsilon_target, "delta": self.delta,
                               "accountant": self.accountant, "history": [list(h) for h in self.history],
                               "epsilon_spent": self.epsilon_spent}
        if self.per_client:
            out["per_client"] = True
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PrivacyRecord:
        return cls(raw["epsilon_target"], raw["delta"], raw["accountant"],
                   [tuple(h) for h in raw["history"]],  # type: ignore[misc]
                   raw.get("epsilon_spent"), bool(raw.get("per_client")))


@dataclass
class ClientPrivacy:
    """One institution's guarantee as it reported it at the end of a federated run."""

    client: str  # "client-<i>": the coordinator's node ids are not published
    epsilon_spent: float | None
    delta: float | None
    schema_hash: str | None
    # shared noise: epsilon if every other party colluded (epsilon_spent holds against the
    # coordinator plus up to T colluding institutions); None with local noise, where they are equal
    epsilon_alone: float | None = None


@dataclass
class FederationRecord:
    """Provenance of a federated model: how many rounds and who took part."""

    rounds_completed: int
    participating_clients: int
    clients: list[ClientPrivacy]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> FederationRecord:
        return cls(raw["rounds_completed"], raw["participating_clients"],
                   [ClientPrivacy(**c) for c in raw["clients"]])


@dataclass
class ModelMeta:
    """What ``synthesizer.json`` holds besides the weights."""

    schema: Schema
    model_config: ModelConfig
    training: TrainingConfig
    cond_probs: list[np.ndarray]  # privatised category frequencies, one per conditionable column
    privacy: PrivacyRecord
    info: dict[str, Any]  # free-form provenance (fit plan, timings); not covered by the model id
    round: int | None = None  # federated: the last completed round
    federation: FederationRecord | None = None
    # privatised histograms, one per numerical or datetime column (common/data/histogram.py), from
    # the same release as cond_probs; empty: samples are not calibrated (common/calibration.py)
    marginals: list[np.ndarray] = field(default_factory=list)
    fedsynth_version: str = __version__
    model_id: str | None = None  # as read from the file; recomputed on every write

    def to_json(self) -> dict[str, Any]:
        """The JSON object, without its model id (see :func:`model_state`)."""
        out: dict[str, Any] = {
            "format": FORMAT,
            "fedsynth_version": self.fedsynth_version,
            "schema": self.schema.to_json(),
            "schema_hash": self.schema.hash(),
            "model_config": self.model_config.to_json(),
            "training": asdict(self.training),
            "cond_probs": [np.asarray(p).tolist() for p in self.cond_probs],
            "privacy": self.privacy.to_json(),
        }
        if self.marginals:
            out["marginals"] = [np.asarray(m).tolist() for m in self.marginals]
        if self.round is not None:
            out["round"] = self.round
        if self.federation is not None:
            out["federation"] = asdict(self.federation)
        out["info"] = self.info
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any], source: str) -> ModelMeta:
        if raw.get("format") != FORMAT:
            raise FedsynthError(f"{source}: unsupported format {raw.get('format')!r}")
        federation = raw.get("federation")
        return cls(
            schema=Schema.from_json(raw["schema"], source=source),
            model_config=ModelConfig.from_json(raw["model_config"]),
            training=TrainingConfig(**raw["training"]),
            cond_probs=[np.asarray(p) for p in raw["cond_probs"]],
            privacy=PrivacyRecord.from_json(raw["privacy"]),
            info=dict(raw.get("info", {})),
            round=raw.get("round"),
            federation=FederationRecord.from_json(federation) if federation is not None else None,
            fedsynth_version=raw.get("fedsynth_version", ""),
            model_id=raw.get("model_id"),
            marginals=[np.asarray(m) for m in raw.get("marginals", [])],
        )


def model_state(meta: ModelMeta, arrays: list[np.ndarray]) -> tuple[dict[str, Any], bytes]:
    """(the JSON of ``synthesizer.json`` with its model id, the bytes of ``weights.pt``)."""
    weights = weights_bytes(arrays)
    meta_json = meta.to_json()
    meta_json["model_id"] = model_id(meta_json, weights)
    return meta_json, weights


# ----------------------------------------------------------------------------- folders
def write_folder(path: Path, meta: dict[str, Any], weights: bytes, *, overwrite: bool = False,
                 kind: OutputKind = MODEL_FOLDER) -> Path:
    """Write a folder (synthesizer.json + weights.pt) with the rules of :mod:`fedsynth.common.outputs`:
    built next to ``path`` and swapped in with renames, replacing only an earlier fedsynth
    folder of the same ``kind``, and that only with ``overwrite``.
    """
    with replace_dir(path, kind, overwrite=overwrite) as new:
        (new / WEIGHTS_FILE).write_bytes(weights)
        (new / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def read_folder_json(path: Path) -> dict[str, Any] | None:
    """The JSON of a folder written by :func:`write_folder`; None when there is none."""
    meta_path = Path(path) / META_FILE
    if not meta_path.exists():
        return None
    return json.loads(meta_path.read_text())


def write_model(path: Path, meta: ModelMeta, arrays: list[np.ndarray], *, overwrite: bool = False
                ) -> dict[str, Any]:
    """Write a model folder atomically (all or nothing); returns the JSON written, model id included."""
    meta_json, weights = model_state(meta, arrays)
    write_folder(Path(path), meta_json, weights, overwrite=overwrite)
    return meta_json


def read_model(path: Path) -> tuple[ModelMeta, list[np.ndarray]]:
    """A model folder's meta and weights; refuses a folder fedsynth did not write."""
    path = Path(path)
    meta_path = path / META_FILE
    if not meta_path.exists():
        raise FedsynthError(f"{path}: not a fedsynth model folder (no {META_FILE})")
    meta = ModelMeta.from_json(read_json_object(meta_path), source=str(meta_path))
    return meta, load_weights(path / WEIGHTS_FILE)


# ----------------------------------------------------------------------------- model card
@dataclass(kw_only=True)
class ModelCard:
    """``<out>/model_card.json``: what a federated run produced and under which guarantees."""

    fedsynth_version: str = __version__
    model_id: str
    schema_hash: str
    model: str  # "vae" or "gan"
    rounds_planned: int
    rounds_completed: int
    participating_clients: int
    clients: list[ClientPrivacy]
    privacy_note: str
    secure_aggregation: dict[str, Any]  # protocol name and the SecAgg+ settings
    plan: dict[str, Any]  # the FederationPlan as JSON
    rounds: list[dict[str, Any]]  # per round: contributors, failures, seconds, finished
    started: str
    finished: str
    # after the last round: the pairs the global model was fitted to, or why it was not (None: no
    # fit was planned, or a card written before this field)
    marginal_fit: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def write_model_card(out_dir: Path, card: ModelCard) -> Path:
    path = Path(out_dir) / MODEL_CARD
    atomic_write_text(path, json.dumps(card.to_json(), indent=2) + "\n")
    return path


def read_model_card(out_dir: Path) -> ModelCard:
    """The model card of the run in ``out_dir``."""
    raw = read_json_object(Path(out_dir) / MODEL_CARD)
    clients = [ClientPrivacy(**c) for c in raw.pop("clients")]
    return ModelCard(clients=clients, **raw)
