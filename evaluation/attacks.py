"""Membership-inference attacks: telling training rows (members) from holdout rows (non-members).

The attacks, their reference rows and how they are scored are described in
:mod:`fedsynth.evaluation.privacy`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsynth.evaluation.embedding import nn_distance
from fedsynth.evaluation.roc import (
    RocCurve,
    bootstrap_ci,
    roc_auc,
    roc_curve_points,
    tpr_at_fpr,
)

MAX_ATTACK_ROWS = 5_000
MAX_REFERENCE_ROWS = 10_000
MIN_ATTACK_ROWS = 20
DOMIAS_K = 5
_LOG_EPS = 1e-6


@dataclass(frozen=True)
class AttackResult:
    """One attack's success at telling members from non-members."""

    attack: str
    reference: str
    description: str
    auc: float
    tpr_at_1pct_fpr: float
    auc_ci95: tuple[float, float]
    tpr_at_1pct_fpr_ci95: tuple[float, float]
    roc: RocCurve


@dataclass(frozen=True)
class StrongestAttack:
    """The headline numbers of the attack with the highest AUC."""

    attack: str
    auc: float
    auc_ci95: tuple[float, float]
    tpr_at_1pct_fpr: float
    tpr_at_1pct_fpr_ci95: tuple[float, float]


@dataclass(frozen=True)
class MembershipInference:
    """All attacks, run on the same members, non-members and reference rows."""

    members: int
    nonmembers: int
    reference_rows: int
    attacks: list[AttackResult]
    strongest: StrongestAttack
    max_tpr_at_1pct_fpr: float


@dataclass(frozen=True)
class AttacksSkipped:
    """Why no attack was run (too few holdout rows)."""

    skipped: str


def _attack_result(name: str, citation: str, description: str, members: np.ndarray,
                   nonmembers: np.ndarray, rng: np.random.Generator) -> AttackResult:
    ci = bootstrap_ci(members, nonmembers, rng)
    return AttackResult(
        attack=name,
        reference=citation,
        description=description,
        auc=roc_auc(members, nonmembers),
        tpr_at_1pct_fpr=tpr_at_fpr(members, nonmembers),
        auc_ci95=ci.auc_ci95,
        tpr_at_1pct_fpr_ci95=ci.tpr_at_1pct_fpr_ci95,
        roc=roc_curve_points(members, nonmembers),
    )


def membership_inference(emb_train: np.ndarray, emb_hold: np.ndarray, emb_syn: np.ndarray,
                         rng: np.random.Generator) -> MembershipInference | AttacksSkipped:
    """Run every attack on embedded rows: members from ``emb_train``, non-members and the
    attacker's reference rows from disjoint halves of ``emb_hold``."""
    n = min(MAX_ATTACK_ROWS, emb_hold.shape[0] // 2, emb_train.shape[0])
    if n < MIN_ATTACK_ROWS:
        return AttacksSkipped(f"needs at least {2 * MIN_ATTACK_ROWS} holdout rows (half become "
                              f"non-members, half the attacker's reference data); got {emb_hold.shape[0]}")
    hold_perm = rng.permutation(emb_hold.shape[0])
    nonmembers = emb_hold[hold_perm[:n]]
    reference = emb_hold[hold_perm[n:n + MAX_REFERENCE_ROWS]]
    members = emb_train[rng.choice(emb_train.shape[0], n, replace=False)]
    queries = np.vstack([members, nonmembers])

    d_syn = nn_distance(emb_syn, queries, DOMIAS_K)
    d_ref = nn_distance(reference, queries, DOMIAS_K)
    k = min(DOMIAS_K, d_syn.shape[1], d_ref.shape[1])
    domias = np.log(d_ref[:, k - 1] + _LOG_EPS) - np.log(d_syn[:, k - 1] + _LOG_EPS)
    closest = -d_syn[:, 0]
    calibrated = -(d_syn[:, 0] - d_ref[:, 0])

    def split(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return s[:n], s[n:]

    results = [
        _attack_result(
            "DOMIAS density ratio", "van Breugel et al., AISTATS 2023",
            f"synthetic-data density over real-reference density at the row ({k}-nearest-neighbour "
            "density estimates)", *split(domias), rng),
        _attack_result(
            "Distance to closest synthetic row", "GAN-Leaks full black-box, Chen et al., CCS 2020",
            "the closer a real row's nearest synthetic row, the more likely it was trained on",
            *split(closest), rng),
        _attack_result(
            "Calibrated distance", "GAN-Leaks calibrated, Chen et al., CCS 2020",
            "distance to the closest synthetic row minus distance to the closest reference row",
            *split(calibrated), rng),
    ]
    best = max(results, key=lambda r: r.auc)
    return MembershipInference(
        members=int(n),
        nonmembers=int(n),
        reference_rows=int(reference.shape[0]),
        attacks=results,
        strongest=StrongestAttack(best.attack, best.auc, best.auc_ci95, best.tpr_at_1pct_fpr,
                                  best.tpr_at_1pct_fpr_ci95),
        max_tpr_at_1pct_fpr=max(r.tpr_at_1pct_fpr for r in results),
    )
