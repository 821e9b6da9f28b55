"""Empirical privacy: does the synthetic data give away who was in the training data?

Three kinds of evidence, from blunt to sharp (this module runs them all: exact copies here, DCR in
:mod:`~fedsynth.evaluation.dcr`, the attacks in :mod:`~fedsynth.evaluation.attacks`):

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
:func:`~fedsynth.evaluation.overlap.holdout_overlap` counts exact shared rows and refuses more than the table's own
duplicate rows explain (see there).

All distances are Euclidean on one embedding (:mod:`fedsynth.evaluation.embedding`) built from the *public* schema only: numericals
scaled to [0, 1] by their public bounds (on the log scale where the schema says so), one-hot
categoricals weighted 1/sqrt(2) so that any mismatch in one column costs at most 1, like a
numerical spanning its whole range, and an indicator per column that can be missing.

Empirical attacks can show leakage; they can never prove its absence. A formal guarantee
(differential privacy) is the only statement about all attacks, which is why the report
puts the two side by side (:mod:`fedsynth.evaluation.guarantee`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fedsynth.common.data.schema import Schema
from fedsynth.evaluation.attacks import (
    AttacksSkipped,
    MembershipInference,
    membership_inference,
)
from fedsynth.evaluation.dcr import Dcr, dcr
from fedsynth.evaluation.embedding import Embedding
from fedsynth.evaluation.guarantee import GuaranteeCheck
from fedsynth.evaluation.jsonable import OMIT_IF_NONE
from fedsynth.evaluation.overlap import row_hashes
from fedsynth.evaluation.prepared import PreparedTable


@dataclass(frozen=True)
class ExactCopies:
    """Shares of synthetic rows identical to a real row; the holdout share is the chance level."""

    exact_copy_rate: float
    exact_copy_rate_equal_size: float
    exact_match_rate_holdout: float
    equal_size_rows: int


@dataclass(frozen=True, kw_only=True)
class Privacy:
    """The privacy section of the report; ``compared_with_guarantee`` only when a guarantee was given."""

    exact_copies: ExactCopies
    dcr: Dcr
    membership_inference: MembershipInference | AttacksSkipped
    embedding_dimensions: int
    compared_with_guarantee: GuaranteeCheck | None = field(default=None, metadata=OMIT_IF_NONE)


def privacy(real: PreparedTable, holdout: PreparedTable, synthetic: PreparedTable, schema: Schema,
            seed: int = 0) -> Privacy:
    """Exact copies, DCR and membership-inference attacks (members = ``real`` rows)."""
    rng = np.random.default_rng(seed)
    h_real, h_hold, h_syn = row_hashes(real), row_hashes(holdout), row_hashes(synthetic)
    n_eq = min(real.n_rows, holdout.n_rows)
    train_eq = h_real[rng.choice(real.n_rows, n_eq, replace=False)]
    hold_eq = h_hold[rng.choice(holdout.n_rows, n_eq, replace=False)]
    exact = ExactCopies(
        exact_copy_rate=float(np.isin(h_syn, h_real).mean()),
        exact_copy_rate_equal_size=float(np.isin(h_syn, train_eq).mean()),
        exact_match_rate_holdout=float(np.isin(h_syn, hold_eq).mean()),
        equal_size_rows=int(n_eq),
    )
    layout = Embedding.build(schema, [real, holdout, synthetic])
    emb_train, emb_hold, emb_syn = (layout.transform(t) for t in (real, holdout, synthetic))
    return Privacy(
        exact_copies=exact,
        dcr=dcr(emb_train, emb_hold, emb_syn, rng),
        membership_inference=membership_inference(emb_train, emb_hold, emb_syn, rng),
        embedding_dimensions=int(emb_train.shape[1]),
    )
