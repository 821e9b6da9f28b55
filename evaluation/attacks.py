"""Empirical privacy: does the synthetic data give away who was in the training data?

Three kinds of evidence, from blunt to sharp:

* **exact copies**: the share of synthetic rows identical to a training row, next to the
  share identical to a holdout row (low-entropy tables contain coincidental duplicates, so
  the holdout rate is the level that means nothing);
* **distance to closest record (DCR)**: for every synthetic row, the distance to the nearest
  training row and to the nearest holdout row, the training rows subsampled to the holdout's
  size so both reference sets are equally dense. Without memorisation a synthetic row is as
  likely to be nearer a training row as a holdout row (share ~ 50 %);
* **membership-inference attacks**, which try to tell training rows (members) from holdout
  rows (non-members) given only the synthetic data and, for DOMIAS, some real reference rows:

  - *DOMIAS* (van Breugel et al., AISTATS 2023): score = density of the synthetic data at x /
    density of real reference data at x. A generator that overfits puts excess density around
    its training rows, which the ratio exposes even where the data are naturally dense.
    Densities are k-nearest-neighbour estimates, ``p(x) ~ k / (n r_k(x)^d)``; the score's
    ranking (all that ROC metrics use) depends only on ``log r_k,ref(x) - log r_k,syn(x)``,
    so the unknown intrinsic dimension d drops out.
  - *distance to the closest synthetic record* (the full black-box attack of GAN-Leaks,
    Chen et al., CCS 2020): score = -min distance from x to a synthetic row.
  - its *calibrated* variant (also GAN-Leaks): the same distance minus the distance to the
    nearest reference row, which discounts rows that are close to everything.

  The reference rows are half of the holdout, disjoint from the non-members being scored;
  scoring non-members that are themselves in the reference set would inflate the attack.
  Each attack is reported with ROC AUC and its bootstrap 95 % confidence interval, and the
  true-positive rate at 1 % false-positive rate, the regime that matters for individuals
  (Carlini et al., S&P 2022).

All of this needs a holdout the synthesizer never saw: a holdout that repeats training rows
makes members look like non-members and the attacks look like chance.
:func:`holdout_overlap` counts exact shared rows and refuses more than the table's own
duplicate rows explain (see there).

All distances are Euclidean on one embedding built from the *public* schema only: numericals
scaled to [0, 1] by their public bounds (on the log scale where the schema says so), one-hot
categoricals weighted 1/sqrt(2) so that any mismatch in one column costs at most 1, like a
numerical spanning its whole range, and an indicator per column that can be missing.

Empirical attacks can show leakage; they can never prove its absence. A formal guarantee
(differential privacy) is the only statement about all attacks, which is why the report
puts the two side by side (:func:`describe_guarantee`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.neighbors import NearestNeighbors

from fedsynth.common.errors import DataError
from fedsynth.evaluation.prepared import (
    PreparedTable,
    is_discrete,
    n_codes,
    numeric_bounds,
)
from fedsynth.common.data.schema import Schema

MAX_ATTACK_ROWS = 5_000
MAX_REFERENCE_ROWS = 10_000
MAX_DCR_QUERIES = 30_000
MIN_ATTACK_ROWS = 20
DOMIAS_K = 5
N_BOOTSTRAP = 500
LOW_FPR = 0.01
_LOG_EPS = 1e-6
_ONEHOT = 1.0 / math.sqrt(2.0)
OVERLAP_MARGIN = 0.01  # share of the holdout that may repeat training rows beyond natural duplicates


# =========================================================================== embedding
@dataclass(frozen=True)
class Embedding:
    """Column layout of the numeric embedding; fixed from the schema so tables line up."""

    schema: Schema
    indicators: frozenset[str]
    exclude: frozenset[str] = frozenset()

    @classmethod
    def build(cls, schema: Schema, tables: list[PreparedTable], exclude: tuple[str, ...] = ()) -> Embedding:
        """A missing indicator for every nullable numerical, or one that is missing anywhere."""
        ind = set()
        for col in schema.columns:
            if is_discrete(col) or col.name in exclude:
                continue
            if col.nullable or any(np.isnan(t[col.name]).any() for t in tables):
                ind.add(col.name)
        return cls(schema, frozenset(ind), frozenset(exclude))

    def transform(self, table: PreparedTable) -> np.ndarray:
        parts: list[np.ndarray] = []
        for col in self.schema.columns:
            if col.name in self.exclude:
                continue
            v = table[col.name]
            if is_discrete(col):
                onehot = np.zeros((table.n_rows, n_codes(col)))
                onehot[np.arange(table.n_rows), v] = _ONEHOT
                parts.append(onehot)
                continue
            lo, hi = numeric_bounds(col)
            miss = np.isnan(v)
            x = np.clip(np.where(miss, lo, v), lo, hi)
            if col.type == "numerical" and col.scale == "log":
                scaled = np.log1p(x - lo) / np.log1p(hi - lo)
            else:
                scaled = (x - lo) / (hi - lo)
            parts.append(scaled[:, None])
            if col.name in self.indicators:
                parts.append(miss.astype(float)[:, None])
        return np.hstack(parts) if parts else np.zeros((table.n_rows, 0))


# =========================================================================== ROC helpers
def roc_auc(members: np.ndarray, nonmembers: np.ndarray) -> float:
    """ROC AUC of scores where members should score higher (Mann-Whitney U, ties count 1/2)."""
    n1, n0 = members.size, nonmembers.size
    ranks = rankdata(np.concatenate([members, nonmembers]))
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def tpr_at_fpr(members: np.ndarray, nonmembers: np.ndarray, fpr: float = LOW_FPR) -> float:
    """Largest TPR reachable with a threshold whose FPR is at most ``fpr``.

    Rows are flagged when their score is strictly above the threshold, so ties never push the
    false-positive rate over the target.
    """
    allowed = int(math.floor(fpr * nonmembers.size))
    desc = np.sort(nonmembers)[::-1]
    threshold = desc[allowed] if allowed < desc.size else -np.inf
    return float(np.mean(members > threshold))


def roc_curve_points(members: np.ndarray, nonmembers: np.ndarray, n_points: int = 60) -> dict[str, list[float]]:
    """ROC curve sampled on a log-spaced FPR grid (for a log-scale plot), from 1e-3 to 1."""
    grid = np.unique(np.concatenate([[0.0], np.logspace(-3, 0, n_points)]))
    return {"fpr": grid.tolist(), "tpr": [tpr_at_fpr(members, nonmembers, f) for f in grid]}


def _bootstrap(members: np.ndarray, nonmembers: np.ndarray, rng: np.random.Generator,
               n_boot: int = N_BOOTSTRAP) -> dict[str, list[float]]:
    """Percentile 95 % intervals, resampling members and non-members separately."""
    aucs, tprs = np.empty(n_boot), np.empty(n_boot)
    for b in range(n_boot):
        m = members[rng.integers(0, members.size, members.size)]
        n = nonmembers[rng.integers(0, nonmembers.size, nonmembers.size)]
        aucs[b] = roc_auc(m, n)
        tprs[b] = tpr_at_fpr(m, n)
    return {
        "auc_ci95": [float(np.quantile(aucs, 0.025)), float(np.quantile(aucs, 0.975))],
        "tpr_at_1pct_fpr_ci95": [float(np.quantile(tprs, 0.025)), float(np.quantile(tprs, 0.975))],
    }


# =========================================================================== the metrics
def _row_hashes(table: PreparedTable) -> np.ndarray:
    frame = pd.DataFrame(table.columns)
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


class OverlappingHoldout(DataError):
    """The holdout repeats training rows: the membership attacks would measure nothing."""


@dataclass(frozen=True)
class HoldoutOverlap:
    """Holdout rows that also occur, exactly, among the training rows.

    A proper split of a table with natural duplicates (Adult has a few dozen) shares some
    rows by chance: a holdout row has an identical training row about as often as a training
    row has an identical twin among the other training rows. ``expected`` is that twin rate
    times the holdout size. More than ``expected`` plus 1 % of the holdout (or three standard
    deviations of the chance count, if larger) means the files overlap, and is refused. In a
    table where nearly every row repeats, overlap cannot be told from chance this way; the
    count is still reported.
    """

    shared_rows: int
    holdout_rows: int
    expected: float
    allowed: float

    @property
    def refused(self) -> bool:
        return self.shared_rows > self.allowed

    @property
    def warning(self) -> str | None:
        if not self.shared_rows:
            return None
        return (f"{self.shared_rows} of the {self.holdout_rows} holdout rows also occur in the training rows "
                f"(about {self.expected:.0f} expected from the table's own duplicate rows)")

    def check(self) -> None:
        """Raise :class:`OverlappingHoldout` if the holdout overlaps the training rows."""
        if self.refused:
            raise OverlappingHoldout(
                f"{self.warning}: the holdout overlaps the training rows. Membership attacks, DCR and the "
                "exact-copy baseline need holdout rows the synthesizer never saw; with shared rows they "
                "would understate the privacy risk. Use a holdout disjoint from the training rows.")


def holdout_overlap(real: PreparedTable, holdout: PreparedTable) -> HoldoutOverlap:
    """Count holdout rows identical to a training row (by row hash), against natural duplicates."""
    h_real, h_hold = _row_hashes(real), _row_hashes(holdout)
    _, inverse, counts = np.unique(h_real, return_inverse=True, return_counts=True)
    twin_rate = float((counts[inverse] > 1).mean())
    n = holdout.n_rows
    expected = twin_rate * n
    allowed = expected + max(OVERLAP_MARGIN * n, 3.0 * math.sqrt(n * twin_rate * (1.0 - twin_rate)))
    return HoldoutOverlap(int(np.isin(h_hold, h_real).sum()), n, expected, allowed)


def _nn_distance(index: np.ndarray, queries: np.ndarray, k: int = 1) -> np.ndarray:
    """Distances to the k nearest rows of ``index``; brute force suits ~100 one-hot dimensions."""
    k = min(k, index.shape[0])
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(index)
    dist, _ = nn.kneighbors(queries)
    return dist


def _summary(d: np.ndarray) -> dict[str, float]:
    return {"p05": float(np.quantile(d, 0.05)), "median": float(np.median(d)), "mean": float(d.mean())}


def _dcr(emb_train: np.ndarray, emb_hold: np.ndarray, emb_syn: np.ndarray,
         rng: np.random.Generator) -> dict[str, Any]:
    n_ref = min(emb_train.shape[0], emb_hold.shape[0])
    train_ref = emb_train[rng.choice(emb_train.shape[0], n_ref, replace=False)]
    hold_ref = emb_hold[rng.choice(emb_hold.shape[0], n_ref, replace=False)]
    queries = emb_syn
    if queries.shape[0] > MAX_DCR_QUERIES:
        queries = queries[rng.choice(queries.shape[0], MAX_DCR_QUERIES, replace=False)]
    d_train = _nn_distance(train_ref, queries)[:, 0]
    d_hold = _nn_distance(hold_ref, queries)[:, 0]
    share = float(np.mean(d_train < d_hold) + 0.5 * np.mean(d_train == d_hold))
    hi = float(np.quantile(np.concatenate([d_train, d_hold]), 0.99)) or 1.0
    edges = np.linspace(0.0, hi, 41)
    return {
        "reference_rows": int(n_ref),
        "synthetic_rows_scored": int(queries.shape[0]),
        "train": _summary(d_train),
        "holdout": _summary(d_hold),
        "share_closer_to_train": share,
        "histogram": {
            "edges": edges.tolist(),
            "train": (np.histogram(np.clip(d_train, 0, hi), edges)[0] / d_train.size).tolist(),
            "holdout": (np.histogram(np.clip(d_hold, 0, hi), edges)[0] / d_hold.size).tolist(),
        },
    }


def _attack_result(name: str, citation: str, description: str, members: np.ndarray,
                   nonmembers: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    return {
        "attack": name,
        "reference": citation,
        "description": description,
        "auc": roc_auc(members, nonmembers),
        "tpr_at_1pct_fpr": tpr_at_fpr(members, nonmembers),
        **_bootstrap(members, nonmembers, rng),
        "roc": roc_curve_points(members, nonmembers),
    }


def _attacks(emb_train: np.ndarray, emb_hold: np.ndarray, emb_syn: np.ndarray,
             rng: np.random.Generator) -> dict[str, Any]:
    n = min(MAX_ATTACK_ROWS, emb_hold.shape[0] // 2, emb_train.shape[0])
    if n < MIN_ATTACK_ROWS:
        return {"skipped": f"needs at least {2 * MIN_ATTACK_ROWS} holdout rows (half become "
                           f"non-members, half the attacker's reference data); got {emb_hold.shape[0]}"}
    hold_perm = rng.permutation(emb_hold.shape[0])
    nonmembers = emb_hold[hold_perm[:n]]
    reference = emb_hold[hold_perm[n:n + MAX_REFERENCE_ROWS]]
    members = emb_train[rng.choice(emb_train.shape[0], n, replace=False)]
    queries = np.vstack([members, nonmembers])

    d_syn = _nn_distance(emb_syn, queries, DOMIAS_K)
    d_ref = _nn_distance(reference, queries, DOMIAS_K)
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
    strongest = max(results, key=lambda r: r["auc"])
    return {
        "members": int(n),
        "nonmembers": int(n),
        "reference_rows": int(reference.shape[0]),
        "attacks": results,
        "strongest": {key: strongest[key] for key in ("attack", "auc", "auc_ci95", "tpr_at_1pct_fpr",
                                                   "tpr_at_1pct_fpr_ci95")},
        "max_tpr_at_1pct_fpr": max(r["tpr_at_1pct_fpr"] for r in results),
    }


def privacy(real: PreparedTable, holdout: PreparedTable, synthetic: PreparedTable, schema: Schema,
            seed: int = 0) -> dict[str, Any]:
    """Exact copies, DCR and membership-inference attacks (members = ``real`` rows)."""
    rng = np.random.default_rng(seed)
    h_real, h_hold, h_syn = _row_hashes(real), _row_hashes(holdout), _row_hashes(synthetic)
    n_eq = min(real.n_rows, holdout.n_rows)
    train_eq = h_real[rng.choice(real.n_rows, n_eq, replace=False)]
    hold_eq = h_hold[rng.choice(holdout.n_rows, n_eq, replace=False)]
    exact = {
        "exact_copy_rate": float(np.isin(h_syn, h_real).mean()),
        "exact_copy_rate_equal_size": float(np.isin(h_syn, train_eq).mean()),
        "exact_match_rate_holdout": float(np.isin(h_syn, hold_eq).mean()),
        "equal_size_rows": int(n_eq),
    }
    layout = Embedding.build(schema, [real, holdout, synthetic])
    emb_train, emb_hold, emb_syn = (layout.transform(t) for t in (real, holdout, synthetic))
    return {
        "exact_copies": exact,
        "dcr": _dcr(emb_train, emb_hold, emb_syn, rng),
        "membership_inference": _attacks(emb_train, emb_hold, emb_syn, rng),
        "embedding_dimensions": int(emb_train.shape[1]),
    }


# =========================================================================== the guarantee
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
        return {"clients": [{"client": c["client"], "epsilon": c["epsilon_spent"], "delta": c["delta"]}
                            for c in card["clients"]],
                "accountant": "rdp", "mechanism": "DP-SGD (federated, SecAgg+)"}
    priv = card.get("privacy", {})
    return {"clients": [{"client": "single party", "epsilon": priv.get("epsilon_spent"), "delta": priv.get("delta")}],
            "accountant": priv.get("accountant", "rdp"), "mechanism": "DP-SGD"}


def describe_guarantee(guarantee: dict[str, Any] | None) -> dict[str, Any] | None:
    """Validate a model card's guarantee and say what it means in plain words.

    Accepts ``{"clients": [{"client", "epsilon", "delta"}, ...], "accountant", "mechanism"}``
    or a single top-level ``epsilon``/``delta``. Bounds use the weakest (largest) epsilon and
    delta, since a compliance statement must hold for every institution.
    """
    if guarantee is None:
        return None
    if not isinstance(guarantee, dict):
        raise ValueError(f"guarantee must be a dict, got {type(guarantee).__name__}")
    raw_clients = guarantee.get("clients")
    if raw_clients is None and "epsilon" in guarantee:
        raw_clients = [{"client": "all", "epsilon": guarantee["epsilon"], "delta": guarantee.get("delta", 0.0)}]
    if not isinstance(raw_clients, list) or not raw_clients:
        raise ValueError("guarantee needs a non-empty 'clients' list of {client, epsilon, delta}, "
                         "or top-level 'epsilon' and 'delta'")
    clients: list[dict[str, Any]] = []
    for i, c in enumerate(raw_clients):
        try:
            eps, delta = float(c["epsilon"]), float(c.get("delta", 0.0))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"guarantee client #{i} needs numeric 'epsilon' and 'delta', got {c!r}") from None
        if not (eps >= 0 and math.isfinite(eps) and 0 <= delta < 1):
            raise ValueError(f"guarantee client #{i}: epsilon must be finite and >= 0 and delta in "
                             f"[0, 1), got epsilon={eps}, delta={delta}")
        clients.append({"client": str(c.get("client", i)), "epsilon": eps, "delta": delta})
    eps_max: float = max(float(c["epsilon"]) for c in clients)
    delta_max: float = max(float(c["delta"]) for c in clients)
    tpr_bound = float(dp_max_tpr(eps_max, delta_max, LOW_FPR))
    auc_bound = dp_max_auc(eps_max, delta_max)
    mechanism = str(guarantee.get("mechanism", "")) or None
    accountant = str(guarantee.get("accountant", "")) or None

    if len(clients) == 1 and clients[0]["client"] == "all":
        who = f"the training records are protected with (epsilon, delta) = ({_fmt(eps_max)}, {_fmt(delta_max)})"
    else:
        parts = "; ".join(f"institution {c['client']}: (epsilon, delta) = ({_fmt(c['epsilon'])}, "
                          f"{_fmt(c['delta'])})" for c in clients)
        who = f"each institution's records are protected with record-level differential privacy ({parts})"
    how = ""
    if mechanism or accountant:
        how = " The guarantee comes from " + " with ".join(
            x for x in (f"the {mechanism} training mechanism" if mechanism else "",
                        f"the {accountant.upper()} privacy accountant" if accountant else "") if x) + "."
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
    return {
        "provided": True,
        "clients": clients,
        "epsilon_max": eps_max,
        "delta_max": delta_max,
        "mechanism": mechanism,
        "accountant": accountant,
        "max_tpr_at_1pct_fpr": tpr_bound,
        "max_auc": auc_bound,
        "statement": statement,
        "model_card": guarantee,
    }


def compare_with_guarantee(membership: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """Whether any attack did significantly better than the guarantee allows.

    Only the lower ends of the confidence intervals count: an attack is in conflict with the
    guarantee when even its pessimistic estimate beats the bound. A conflict points to a bug,
    to preprocessing that used private statistics, or to a guarantee that does not cover this
    release; no conflict is consistent with, but not proof of, the guarantee.
    """
    if "attacks" not in membership:
        return {"consistent": None, "explanation": "no attack was run"}
    conflicts = []
    for a in membership["attacks"]:
        if a["auc_ci95"][0] > info["max_auc"]:
            conflicts.append(f"{a['attack']}: AUC {a['auc']:.3f} (95 % CI from {a['auc_ci95'][0]:.3f}) "
                             f"exceeds the bound {info['max_auc']:.3f}")
        if a["tpr_at_1pct_fpr_ci95"][0] > info["max_tpr_at_1pct_fpr"]:
            conflicts.append(f"{a['attack']}: TPR at 1 % FPR {a['tpr_at_1pct_fpr']:.3f} exceeds the "
                             f"bound {info['max_tpr_at_1pct_fpr']:.3f}")
    if conflicts:
        text = ("The empirical attacks did better than the formal guarantee allows: "
                + "; ".join(conflicts) + ". Do not rely on the stated guarantee until this is explained.")
    else:
        text = ("All attacks stayed within what the formal guarantee allows. This is consistent with "
                "the guarantee; attacks cannot prove it, the guarantee itself is the proof.")
    return {"consistent": not conflicts, "conflicts": conflicts, "explanation": text}


__all__ = ["Embedding", "privacy", "describe_guarantee", "compare_with_guarantee", "dp_max_tpr",
           "dp_max_auc", "roc_auc", "tpr_at_fpr"]
