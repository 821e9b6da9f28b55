"""Coordinator-side persistence: per-round checkpoints, the final synthesizer, the model card.

A checkpoint folder is swapped in with renames only (see ``write_model_dir``), so after a
crash ``<out>/checkpoint`` is always the last *completed* round.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedsynth.common.atomic import atomic_write_text
from fedsynth.common.protocol.federation import FederationPlan
from fedsynth.common.data.schema import Schema
from fedsynth.common.outputs import CHECKPOINT_FOLDER, recover
from fedsynth.common.synthesizer import FORMAT, TrainingConfig, load_weights, model_id, weights_bytes, write_model_dir
from fedsynth.common.version import __version__

CHECKPOINT = "checkpoint"
SYNTHESIZER = "synthesizer"
MODEL_CARD = "model_card.json"


@dataclass
class Checkpoint:
    round: int
    arrays: list[np.ndarray]
    freqs: list[np.ndarray] | None
    history: list[dict[str, Any]]
    plan_json: str
    started: str

    def save(self, out_dir: Path) -> None:
        meta = {"round": self.round, "freqs": [f.tolist() for f in self.freqs] if self.freqs else None,
                "history": self.history, "plan": self.plan_json, "started": self.started}
        # reuse the model-folder swap (weights.pt + synthesizer.json, renames only)
        write_model_dir(Path(out_dir) / CHECKPOINT, {"checkpoint": meta}, weights_bytes(self.arrays),
                        overwrite=True, kind=CHECKPOINT_FOLDER)

    @classmethod
    def load(cls, out_dir: Path) -> "Checkpoint | None":
        path = Path(out_dir) / CHECKPOINT
        recover(path)  # a crash between the swap's two renames leaves the last round set aside
        if not (path / "synthesizer.json").exists():
            return None
        meta = json.loads((path / "synthesizer.json").read_text())["checkpoint"]
        arrays = load_weights(path / "weights.pt")
        freqs = [np.asarray(f) for f in meta["freqs"]] if meta["freqs"] else None
        return cls(meta["round"], arrays, freqs, meta["history"], meta["plan"], meta["started"])


def write_global_model(out_dir: Path, schema: Schema, plan: FederationPlan, ckpt: Checkpoint,
                       final_budget: dict[str, dict[str, Any]], secagg: dict[str, Any]) -> dict[str, Any]:
    """Write ``<out>/synthesizer`` (loadable by ``fedsynth sample``) and ``<out>/model_card.json``."""

    clients = []
    for i, (_nid, rep) in enumerate(sorted(final_budget.items()), start=1):
        clients.append({"client": f"client-{i}", "epsilon_spent": rep.get("epsilon_spent"),
                        "delta": rep.get("delta"), "schema_hash": rep.get("schema_hash")})
    participated = {nid for rec in ckpt.history for nid, r in rec["reports"].items() if not r.get("refused")}
    eps_values = [c["epsilon_spent"] for c in clients if isinstance(c["epsilon_spent"], (int, float)) and c["epsilon_spent"] >= 0]
    deltas = [c["delta"] for c in clients if isinstance(c.get("delta"), (int, float))]
    freqs = ckpt.freqs or []
    weights = weights_bytes(ckpt.arrays)
    federation = {"rounds_completed": ckpt.round, "participating_clients": len(participated),
                  "clients": clients}
    meta = {
        "format": FORMAT,
        "fedsynth_version": __version__,
        "schema": schema.to_json(),
        "schema_hash": schema.hash(),
        "model_config": asdict(plan.model),
        "training": asdict(TrainingConfig(marginal_noise=plan.marginal_noise)),
        "cond_probs": [f.tolist() for f in freqs],
        "privacy": {"epsilon_target": max(eps_values) if eps_values else 0.0,
                    "delta": max(deltas) if deltas else 0.0, "accountant": "rdp", "history": [],
                    "epsilon_spent": max(eps_values) if eps_values else None,
                    "per_client": True},
        "round": ckpt.round,
        "federation": federation,
        "info": {"trained_at": _now(), "started": ckpt.started},
    }
    meta["model_id"] = model_id(meta, weights)
    write_model_dir(Path(out_dir) / SYNTHESIZER, meta, weights)
    card = {
        "fedsynth_version": __version__,
        "model_id": meta["model_id"],
        "schema_hash": schema.hash(),
        "model": plan.model.model,
        "rounds_planned": plan.rounds,
        "rounds_completed": ckpt.round,
        "participating_clients": len(participated),
        "clients": clients,
        "privacy_note": ("Each institution spends its own (epsilon, delta), computed by its own Opacus RDP "
                         "accountant over every DP step and release it ever made; values are as reported "
                         "by the clients, rounded to 0.01."),
        "secure_aggregation": {"protocol": "SecAgg+ (Flower)", **secagg},
        "plan": json.loads(plan.to_json()),
        "rounds": [{k: v for k, v in rec.items() if k in ("round", "contributors", "failures", "seconds", "finished")}
                   for rec in ckpt.history],
        "started": ckpt.started,
        "finished": _now(),
    }
    atomic_write_text(Path(out_dir) / MODEL_CARD, json.dumps(card, indent=2) + "\n")
    return card


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
