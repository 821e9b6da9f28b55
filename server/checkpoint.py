"""Coordinator-side persistence: per-round checkpoints, the final synthesizer, the model card.

A checkpoint folder is swapped in with renames only (see ``fedsynth.common.artifact.write_folder``),
so after a crash ``<out>/checkpoint`` is always the last *completed* round. The final model
and its card are written by :mod:`fedsynth.common.artifact`, like a single-party fit's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import numpy as np

from fedsynth.common.artifact import (
    WEIGHTS_FILE,
    ClientPrivacy,
    FederationRecord,
    ModelCard,
    ModelMeta,
    PrivacyRecord,
    load_weights,
    read_folder_json,
    weights_bytes,
    write_folder,
    write_model,
    write_model_card,
)
from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.data.schema import Schema
from fedsynth.common.dp.plan import TrainingConfig
from fedsynth.common.outputs import CHECKPOINT_FOLDER, recover
from fedsynth.common.protocol.federation import FederationPlan
from fedsynth.common.protocol.messages import BudgetReply, MetricKey
from fedsynth.common.timestamps import utc_now

CHECKPOINT = "checkpoint"
SYNTHESIZER = "synthesizer"


@dataclass
class Checkpoint:
    round: int
    arrays: list[np.ndarray]
    freqs: list[np.ndarray] | None
    history: list[dict[str, Any]]
    plan_json: str
    started: str
    # shared noise: the coordinator's Adam moments (first, then second, per weight array) and steps
    optimizer_moments: list[np.ndarray] | None = None
    optimizer_steps: int = 0
    # after the last round: the marginal fit's record (server/marginal_rounds.py); ``arrays`` are then
    # the fine-tuned weights. None: not made (yet).
    marginal_fit: dict[str, Any] | None = None
    # shared noise: the row estimate of the pooled counts (``freqs`` are theirs), released before
    # round 1. None: not released (yet), or a local-noise run.
    pooled_rows: float | None = None

    def save(self, out_dir: Path) -> None:
        moments = list(self.optimizer_moments or [])
        meta = {"round": self.round, "freqs": [f.tolist() for f in self.freqs] if self.freqs else None,
                "history": self.history, "plan": self.plan_json, "started": self.started,
                "optimizer_arrays": len(moments), "optimizer_steps": self.optimizer_steps,
                "marginal_fit": self.marginal_fit, "pooled_rows": self.pooled_rows}
        # reuse the model-folder swap (weights.pt + synthesizer.json, renames only)
        write_folder(Path(out_dir) / CHECKPOINT, {"checkpoint": meta}, weights_bytes(self.arrays + moments),
                     overwrite=True, kind=CHECKPOINT_FOLDER)

    @classmethod
    def load(cls, out_dir: Path) -> Checkpoint | None:
        path = Path(out_dir) / CHECKPOINT
        recover(path)  # a crash between the swap's two renames leaves the last round set aside
        folder = read_folder_json(path)
        if folder is None:
            return None
        meta = folder["checkpoint"]
        arrays = load_weights(path / WEIGHTS_FILE)
        n_moments = int(meta.get("optimizer_arrays", 0))
        moments = arrays[len(arrays) - n_moments:] if n_moments else None
        arrays = arrays[: len(arrays) - n_moments]
        freqs = [np.asarray(f) for f in meta["freqs"]] if meta["freqs"] else None
        return cls(meta["round"], arrays, freqs, meta["history"], meta["plan"], meta["started"], moments,
                   int(meta.get("optimizer_steps", 0)), meta.get("marginal_fit"), meta.get("pooled_rows"))


def privacy_note(plan: FederationPlan, accountant: str) -> str:
    """The model card's sentence on whose epsilon it states and what it assumes."""
    common = ("values are as reported by the clients, rounded to 0.01.")
    shared = plan.shared_noise
    if shared is None:
        return (f"Each institution spends its own (epsilon, delta), computed by its own Opacus {accountant.upper()} "
                f"accountant over every DP step and release it ever made; {common}")
    return (f"Noise shared under SecAgg+: every round is one DP-SGD step on the pooled rows whose integer (Skellam) "
            f"noise is the sum of the contributors' shares, and the category counts and histograms were summed once, "
            f"before the first round, from each institution's exact counts plus its noise share. Each institution's epsilon_spent, computed by its own "
            f"RDP accountant over every step and release it ever made, holds against the coordinator plus up to "
            f"{shared.collusion_tolerance} colluding institution(s), assuming SecAgg+ is sound and every unmasked round "
            f"had at least {shared.min_contributors} contributors (SecAgg+'s threshold enforces it); epsilon_alone is "
            f"its guarantee if every other party colluded (its own noise share alone); {common}")


def write_global_model(out_dir: Path, schema: Schema, plan: FederationPlan, ckpt: Checkpoint,
                       final_budget: Mapping[str, BudgetReply], secagg: dict[str, Any]) -> dict[str, Any]:
    """Write ``<out>/synthesizer`` (loadable by ``fedsynth sample``) and ``<out>/model_card.json``;
    returns the card's JSON. ``final_budget`` is each node's last budget reply."""
    clients = [ClientPrivacy(f"client-{i}", rep.epsilon_spent, rep.delta, rep.schema_hash, rep.epsilon_alone)
               for i, (_nid, rep) in enumerate(sorted(final_budget.items()), start=1)]
    participated = {nid for rec in ckpt.history for nid, r in rec["reports"].items()
                    if not r.get(MetricKey.REFUSED)}
    eps_values = [c.epsilon_spent for c in clients if isinstance(c.epsilon_spent, (int, float)) and c.epsilon_spent >= 0]
    deltas = [c.delta for c in clients if isinstance(c.delta, (int, float))]
    # The training settings the clients ran: the plan fixes the category-frequency noise, the
    # rest (the accountant included) are the defaults every institution uses.
    training = TrainingConfig(marginal_noise=plan.marginal_noise)
    cond_probs, marginals = TableEncoder(schema).split_counts(list(ckpt.freqs or []))
    # measured bins are derived again from the saved histograms (run_bin_edges); without them the
    # model never trained past its initial weights, whose bins are the schema's
    model_config = replace(plan.model, binning=plan.binning if marginals else "schema")
    meta = ModelMeta(
        schema=schema, model_config=model_config, training=training, cond_probs=cond_probs, marginals=marginals,
        privacy=PrivacyRecord(max(eps_values) if eps_values else 0.0, max(deltas) if deltas else 0.0,
                              training.accountant, [], max(eps_values) if eps_values else None, per_client=True),
        info={"trained_at": utc_now(), "started": ckpt.started,
              **({"marginal_fit": ckpt.marginal_fit} if ckpt.marginal_fit else {})},
        round=ckpt.round,
        federation=FederationRecord(ckpt.round, len(participated), clients),
    )
    written = write_model(Path(out_dir) / SYNTHESIZER, meta, ckpt.arrays)
    card = ModelCard(
        model_id=written["model_id"],
        schema_hash=schema.hash(),
        model=plan.model.model,
        rounds_planned=plan.rounds,
        rounds_completed=ckpt.round,
        participating_clients=len(participated),
        clients=clients,
        privacy_note=privacy_note(plan, training.accountant),
        secure_aggregation={"protocol": "SecAgg+ (Flower)", **secagg},
        plan=json.loads(plan.to_json()),
        rounds=[{k: v for k, v in rec.items() if k in ("round", "contributors", "failures", "seconds", "finished")}
                for rec in ckpt.history],
        started=ckpt.started,
        finished=utc_now(),
        marginal_fit=ckpt.marginal_fit,
    )
    write_model_card(out_dir, card)
    return card.to_json()

