"""The formal guarantee next to the empirical results: what (epsilon, delta)-DP allows any attack.

Empirical attacks can show leakage; they can never prove its absence. A formal guarantee
(differential privacy) is the only statement about all attacks, which is why the report
puts the two side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedsynth.evaluation.attacks import AttacksSkipped, MembershipInference
from fedsynth.evaluation.jsonable import OMIT_IF_NONE
from fedsynth.evaluation.roc import LOW_FPR


@dataclass(frozen=True)
class ClientBudget:
    """One institution's (epsilon, delta)."""

    client: str
    epsilon: float
    delta: float


@dataclass(frozen=True)
class GuaranteeInfo:
    """A validated guarantee, its bounds on any membership attack and a plain-words statement.

    The bounds use the weakest (largest) epsilon and delta over the institutions. ``model_card``
    is the guarantee as it was given, echoed into the report.
    """

    provided: bool
    clients: list[ClientBudget]
    epsilon_max: float
    delta_max: float
    mechanism: str | None
    accountant: str | None
    max_tpr_at_1pct_fpr: float
    max_auc: float
    statement: str
    model_card: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class GuaranteeCheck:
    """Whether the attacks stayed within the guarantee's bounds (None: no attack was run)."""

    consistent: bool | None
    conflicts: list[str] | None = field(default=None, metadata=OMIT_IF_NONE)
    explanation: str


def dp_max_tpr(epsilon: float, delta: float, fpr: np.ndarray | float) -> np.ndarray:
    """Highest TPR any attack can reach at a given FPR against an (epsilon, delta)-DP release.

    The hypothesis-testing view of DP (Kairouz et al., ICML 2015): every membership test
    with false-positive rate FPR and false-negative rate FNR satisfies both
    ``e^eps FPR + FNR >= 1 - delta`` and ``FPR + e^eps FNR >= 1 - delta``, i.e.
    ``TPR <= e^eps FPR + delta`` and ``TPR <= 1 - (1 - delta - FPR) / e^eps``.
    """
    f = np.asarray(fpr, dtype=float)
    e = math.exp(min(epsilon, 700.0))
    return np.clip(np.minimum(e * f + delta, 1.0 - (1.0 - delta - f) / e), 0.0, 1.0)


def dp_max_auc(epsilon: float, delta: float) -> float:
    """Largest ROC AUC compatible with (epsilon, delta)-DP (area under :func:`dp_max_tpr`)."""
    grid = np.linspace(0.0, 1.0, 20_001)
    tpr = dp_max_tpr(epsilon, delta, grid)
    return float(np.sum((tpr[1:] + tpr[:-1]) / 2.0 * np.diff(grid)))


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def guarantee_from_card(card: dict[str, Any]) -> dict[str, Any]:
    """The guarantee a model card states: the one mapping from what fit (synthesizer.json) or a
    federated run (model_card.json) records to what the report prints. Raises KeyError,
    TypeError or AttributeError on a card fedsynth did not write."""
    if "clients" in card:
        out = {"clients": [{"client": c["client"], "epsilon": c["epsilon_spent"], "delta": c["delta"]}
                           for c in card["clients"]],
               "accountant": "rdp", "mechanism": "DP-SGD (federated, SecAgg+)"}
        shared = (card.get("plan") or {}).get("shared_noise")
        if shared:
            alone = ", ".join(f"{c['client']}: {c['epsilon_alone']}" for c in card["clients"]
                              if c.get("epsilon_alone") is not None)
            out["mechanism"] = "DP-SGD with integer (Skellam) noise shared under SecAgg+, one pooled step per round"
            out["trust"] = (f"the epsilons hold against the coordinator plus up to {shared['collusion_tolerance']} "
                            f"colluding institution(s), assuming SecAgg+ is sound and every unmasked round had at "
                            f"least {shared['min_contributors']} contributors; if every other party colluded, each "
                            f"institution's own noise share alone gives epsilon {{{alone or 'not reported'}}}")
        return out
    priv = card.get("privacy", {})
    return {"clients": [{"client": "single party", "epsilon": priv.get("epsilon_spent"), "delta": priv.get("delta")}],
            "accountant": priv.get("accountant", "rdp"), "mechanism": "DP-SGD"}


def describe_guarantee(guarantee: dict[str, Any] | None) -> GuaranteeInfo | None:
    """Validate a model card's guarantee and say what it means in plain words.

    Accepts ``{"clients": [{"client", "epsilon", "delta"}, ...], "accountant", "mechanism"}``
    or a single top-level ``epsilon``/``delta``. Bounds use the weakest (largest) epsilon and
    delta, since a compliance statement must hold for every institution.
    """
    if guarantee is None:
        return None
    if not isinstance(guarantee, dict):
        raise ValueError(f"guarantee must be a dict, got {type(guarantee).__name__}")  # noqa: TRY004 (callers catch ValueError)
    raw_clients = guarantee.get("clients")
    if raw_clients is None and "epsilon" in guarantee:
        raw_clients = [{"client": "all", "epsilon": guarantee["epsilon"], "delta": guarantee.get("delta", 0.0)}]
    if not isinstance(raw_clients, list) or not raw_clients:
        raise ValueError("guarantee needs a non-empty 'clients' list of {client, epsilon, delta}, "
                         "or top-level 'epsilon' and 'delta'")
    clients: list[ClientBudget] = []
    for i, c in enumerate(raw_clients):
        try:
            eps, delta = float(c["epsilon"]), float(c.get("delta", 0.0))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"guarantee client #{i} needs numeric 'epsilon' and 'delta', got {c!r}") from None
        if not (eps >= 0 and math.isfinite(eps) and 0 <= delta < 1):
            raise ValueError(f"guarantee client #{i}: epsilon must be finite and >= 0 and delta in "
                             f"[0, 1), got epsilon={eps}, delta={delta}")
        clients.append(ClientBudget(str(c.get("client", i)), eps, delta))
    eps_max = max(c.epsilon for c in clients)
    delta_max = max(c.delta for c in clients)
    tpr_bound = float(dp_max_tpr(eps_max, delta_max, LOW_FPR))
    auc_bound = dp_max_auc(eps_max, delta_max)
    mechanism = str(guarantee.get("mechanism", "")) or None
    accountant = str(guarantee.get("accountant", "")) or None

    if len(clients) == 1 and clients[0].client == "all":
        who = f"the training records are protected with (epsilon, delta) = ({_fmt(eps_max)}, {_fmt(delta_max)})"
    else:
        parts = "; ".join(f"institution {c.client}: (epsilon, delta) = ({_fmt(c.epsilon)}, "
                          f"{_fmt(c.delta)})" for c in clients)
        who = f"each institution's records are protected with record-level differential privacy ({parts})"
    how = ""
    if mechanism or accountant:
        how = " The guarantee comes from " + " with ".join(
            x for x in (f"the {mechanism} training mechanism" if mechanism else "",
                        f"the {accountant.upper()} privacy accountant" if accountant else "") if x) + "."
    trust = str(guarantee.get("trust", "")) or None
    if trust:
        how += f" Trust assumption: {trust}."
    statement = (
        f"Formal guarantee: {who}.{how} "
        f"Meaning: for any single person, everything the released model and synthetic data allow "
        f"anyone to conclude is almost the same whether or not that person's record was in the "
        f"training data: the probability of any outcome changes by at most a factor of "
        f"e^epsilon = {_fmt(math.exp(min(eps_max, 700.0)))}, except with probability at most delta = "
        f"{_fmt(delta_max)}. In practice no attacker, whatever else they know, can tell whether a "
        f"given person was in the training data with a true-positive rate above "
        f"{100 * tpr_bound:.1f} % while wrongly accusing only 1 % of outsiders, nor reach a ROC AUC "
        f"above {auc_bound:.3f} (0.5 = guessing). Smaller epsilon means stronger protection; "
        f"epsilon of 1 or less is generally regarded as strong. The guarantee protects individual "
        f"records; population-level patterns, which the synthetic data is meant to reproduce, are "
        f"not secret."
    )
    return GuaranteeInfo(
        provided=True,
        clients=clients,
        epsilon_max=eps_max,
        delta_max=delta_max,
        mechanism=mechanism,
        accountant=accountant,
        max_tpr_at_1pct_fpr=tpr_bound,
        max_auc=auc_bound,
        statement=statement,
        model_card=guarantee,
    )


def compare_with_guarantee(membership: MembershipInference | AttacksSkipped, info: GuaranteeInfo) -> GuaranteeCheck:
    """Whether any attack did significantly better than the guarantee allows.

    Only the lower ends of the confidence intervals count: an attack is in conflict with the
    guarantee when even its pessimistic estimate beats the bound. A conflict points to a bug,
    to preprocessing that used private statistics, or to a guarantee that does not cover this
    release; no conflict is consistent with, but not proof of, the guarantee.
    """
    if isinstance(membership, AttacksSkipped):
        return GuaranteeCheck(consistent=None, explanation="no attack was run")
    conflicts = []
    for a in membership.attacks:
        if a.auc_ci95[0] > info.max_auc:
            conflicts.append(f"{a.attack}: AUC {a.auc:.3f} (95 % CI from {a.auc_ci95[0]:.3f}) "
                             f"exceeds the bound {info.max_auc:.3f}")
        if a.tpr_at_1pct_fpr_ci95[0] > info.max_tpr_at_1pct_fpr:
            conflicts.append(f"{a.attack}: TPR at 1 % FPR {a.tpr_at_1pct_fpr:.3f} exceeds the "
                             f"bound {info.max_tpr_at_1pct_fpr:.3f}")
    if conflicts:
        text = ("The empirical attacks did better than the formal guarantee allows: "
                + "; ".join(conflicts) + ". Do not rely on the stated guarantee until this is explained.")
    else:
        text = ("All attacks stayed within what the formal guarantee allows. This is consistent with "
                "the guarantee; attacks cannot prove it, the guarantee itself is the proof.")
    return GuaranteeCheck(consistent=not conflicts, conflicts=conflicts, explanation=text)
