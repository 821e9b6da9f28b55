"""An institution's two marginal-fit releases: computed once per plan, kept on its own disk.

After the last training round the coordinator asks for projections of every pair's residual
against the global model, then for the chosen pairs' 2-way counts (:mod:`fedsynth.common.protocol.marginal_stage`).
Each is one Gaussian release for this institution's ledger, so each is made at most once per
plan: the noisy vector is stored (atomically, after the charge, before it leaves) with the
request it answered. The same request again (a lost SecAgg+ round, a restarted coordinator)
gets the same vector back free; a different one (another model, other pairs) is refused, since
answering it would be a second release the plan never accounted for.

With shared noise each release is instead the exact integer vector plus this institution's
Skellam share (:func:`~fedsynth.common.model.marginal_fit.shared_planned_releases`), as the pooled
counts are (:mod:`fedsynth.client.pooled_counts`), and the same request again gets fresh noise
and a new charge: the same share in a second sum could be differenced.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from fedsynth.common.atomic import atomic_write_text
from fedsynth.common.data.encoding import Segment
from fedsynth.common.dp.accounting import Release
from fedsynth.common.dp.shared_noise import SharedNoiseRelease
from fedsynth.common.model.marginal_fit import (JOINT_DRAWS, MarginalFitConfig, Pair, all_pairs, block, model_joint,
                                                planned_releases, project_residuals, real_joint_counts,
                                                release_noises, shared_planned_releases)
from fedsynth.common.model.tabular import TabularModel
from fedsynth.common.protocol.federation import FederationPlan
from fedsynth.common.protocol.messages import Stage

#: the order of the releases in planned_releases(): the error vector, then the pair counts
RELEASE_STAGES = (Stage.PAIR_ERRORS, Stage.PAIR_COUNTS)


class MarginalReleases:
    """The releases this institution made for one plan, in ``<state>/marginal-<plan>.json``."""

    def __init__(self, state_dir: str | Path, plan: FederationPlan) -> None:
        plan_key = hashlib.sha256(plan.to_json().encode()).hexdigest()[:16]
        self.path = Path(state_dir) / f"marginal-{plan_key}.json"
        self.config: MarginalFitConfig = plan.marginal_fit
        self.shared = plan.shared_noise

    @staticmethod
    def _own(frequency_noise: float | None) -> float:
        """The institution's own noise multiplier, which a local-noise plan needs (with shared noise
        the plan's ``counts_noise`` rules and the caller passes None)."""
        if frequency_noise is None:
            raise ValueError("a local-noise plan's marginal releases need this institution's own noise multiplier")
        return frequency_noise

    def _made(self) -> dict[str, dict]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def _planned(self, frequency_noise: float | None, segments: list[Segment], chosen: int | None = None
                 ) -> list[Release | SharedNoiseRelease]:
        if self.shared is None:  # this institution's own noise, from its own cap
            return planned_releases(self.config, self._own(frequency_noise), segments)
        return shared_planned_releases(self.config, self.shared.counts_noise, segments, self.shared.honest_shares,
                                       chosen)

    def pending(self, frequency_noise: float | None, segments: list[Segment]) -> list[Release | SharedNoiseRelease]:
        """The planned releases not made yet: what this institution must keep budget for."""
        made = self._made()
        return [r for stage, r in zip(RELEASE_STAGES, self._planned(frequency_noise, segments)) if stage not in made]

    def noise(self, stage: str, frequency_noise: float | None, segments: list[Segment], chosen: int | None = None
              ) -> Release | SharedNoiseRelease:
        """The ledger entry of ``stage``'s release (``chosen``: the pairs actually asked for)."""
        return dict(zip(RELEASE_STAGES, self._planned(frequency_noise, segments, chosen)))[stage]

    def sent_noise(self, stage: str, frequency_noise: float | None) -> float:
        """The noise multiplier a packed release reports: its own, or (shared noise) its share's,
        so that the contributors' slots add up to the sum's."""
        base = self._own(frequency_noise) if self.shared is None else self.shared.counts_noise
        full = dict(zip(RELEASE_STAGES, release_noises(self.config, base)))[stage]
        return full if self.shared is None else self.shared.share_noise(full)

    def earlier(self, stage: str, request: str) -> np.ndarray | None:
        """The vector released for ``stage`` if it answered ``request``; None if none was made.
        Raises ValueError when one was made for another request."""
        made = self._made().get(stage)
        if made is None:
            return None
        if made["request"] != request:
            raise ValueError(f"the {stage} release of this plan was already made for another request")
        return np.asarray(made["noisy"], dtype=np.float64)

    def store(self, stage: str, request: str, noisy: np.ndarray) -> None:
        made = self._made()
        made[stage] = {"request": request, "noisy": np.asarray(noisy, dtype=np.float64).tolist()}
        atomic_write_text(self.path, json.dumps(made))


def exact_values(stage: str, model: TabularModel, x: np.ndarray, segments: list[Segment], rows: float | None,
                 pairs: tuple[Pair, ...], seed: int, projections: int) -> list[np.ndarray]:
    """The private vector a stage releases, as count blocks for ``noisy_counts`` (a row moves each
    block by at most 1 in L2: one value per pair and projection, or one table per chosen pair).
    ``rows`` is this institution's released row estimate; None (shared noise, where only the
    pooled estimate is released) projects the counts alone and the coordinator subtracts the
    model's part (:func:`fedsynth.server.marginal_rounds.pooled_errors`). ``seed`` (public, the
    same at every institution) fixes the latent draws behind the model's marginals and the
    projections' signs."""
    counts = real_joint_counts(x, segments)
    if stage == Stage.PAIR_ERRORS:
        if rows is None:
            return project_residuals(counts, np.zeros_like(counts), 0.0, segments, all_pairs(segments),
                                     projections, seed)
        joint = model_joint(model, segments, JOINT_DRAWS, torch.Generator().manual_seed(seed)).numpy()
        return project_residuals(counts, joint, rows, segments, all_pairs(segments), projections, seed)
    return [block(counts, segments, p).ravel() for p in pairs]
