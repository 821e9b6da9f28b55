"""Fidelity: how closely the synthetic table reproduces the real one.

Three levels, each answering a question a data user asks:

* **1-way** (per column): "does each column look right?" -- the Kolmogorov-Smirnov statistic
  for numericals and datetimes, the total variation distance (TVD) for categoricals and
  booleans, and, so that every column is on one scale, the TVD of numericals on bins cut at
  the *real* rows' quantiles.
* **2-way** (per pair of columns): "are combinations right?" -- the TVD between the joint
  distributions of every column pair, numericals binned as above. A synthesizer that gets
  every marginal right but breaks the relations between columns scores perfectly on 1-way
  metrics and badly here.
* **associations**: "are the relations as strong as in the real data?" -- one association
  matrix per table (Spearman for numerical pairs, bias-corrected Cramér's V for categorical
  pairs, the correlation ratio on ranks for mixed pairs) and their similarity, and every pair
  with a strong real association listed with its synthetic value.

Each headline number is given next to two references computed the same way: real holdout rows
(two real samples: the ceiling, set by sampling noise) and the training rows with every column
shuffled separately (the no-relations baseline: right marginals, no relation kept). A score
close to the baseline's says the synthesizer kept little more than the marginals, however high
the number looks on its own.

Missing values are part of the distribution everywhere (a synthesizer must reproduce how
often a value is missing), never silently dropped, except where a statistic is undefined on
them (KS, ranks), which is said next to the statistic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fedsynth.common.data.schema import Schema
from fedsynth.evaluation.associations import (
    StrongPair,
    association_matrix,
    association_measures,
    association_similarity,
    strong_pairs,
)
from fedsynth.evaluation.columns import ColumnFidelity, column_plot, one_way
from fedsynth.evaluation.marginals import (
    N_QUANTILE_BINS,
    Binning,
    discretise,
    fit_binning,
    two_way,
)
from fedsynth.evaluation.prepared import PreparedTable, is_discrete


@dataclass(frozen=True)
class WorstPair:
    """A column pair whose joint distribution is reproduced worst."""

    columns: tuple[str, str]
    tvd: float


@dataclass(frozen=True)
class TwoWay:
    """2-way TVD over all column pairs."""

    mean_tvd: float
    contingency_similarity: float
    n_pairs: int
    numerical_bins: str
    worst_pairs: list[WorstPair]


@dataclass(frozen=True)
class Associations:
    """Association matrices of both tables (rows and columns in ``columns`` order) and their similarity."""

    columns: list[str]
    measures: list[list[str]]
    real: list[list[float]]
    synthetic: list[list[float]]
    abs_difference: list[list[float]]
    similarity: float


@dataclass(frozen=True)
class Reference:
    """The headline numbers of a reference table against the training rows, to read the synthetic ones by."""

    description: str
    rows: int
    mean_tvd_1way: float
    mean_ks: float | None
    mean_tvd_2way: float
    association_similarity: float


@dataclass(frozen=True, kw_only=True)
class Fidelity:
    """The fidelity section of the report."""

    columns: list[ColumnFidelity]
    mean_tvd_1way: float
    mean_ks: float | None
    two_way: TwoWay
    associations: Associations
    baseline_holdout: Reference
    baseline_no_relations: Reference
    strong_pairs: list[StrongPair]


_HOLDOUT = ("the same metrics for real holdout rows against the training rows: the level sampling noise "
            "alone produces")
_NO_RELATIONS = ("the same metrics for the training rows with every column shuffled separately: right "
                 "marginals, no relation between columns (what a synthesizer keeping no relation scores)")


def _mean_ks(columns: list[ColumnFidelity]) -> float | None:
    ks_values = [c.ks for c in columns if c.ks is not None]
    return float(np.mean(ks_values)) if ks_values else None


def _reference(description: str, real: PreparedTable, other: PreparedTable, schema: Schema,
               binnings: dict[str, Binning], assoc_real: np.ndarray) -> tuple[Reference, np.ndarray]:
    """The headline numbers of ``other`` against ``real``, and its association matrix."""
    codes_real, codes_other = discretise(real, schema, binnings), discretise(other, schema, binnings)
    cols = one_way(schema, real, other, codes_real, codes_other)
    pairs = two_way(codes_real, codes_other, schema.names)
    assoc = association_matrix(other, schema)
    sim, _ = association_similarity(assoc_real, assoc, schema)
    return Reference(
        description=description,
        rows=other.n_rows,
        mean_tvd_1way=float(np.mean([c.tvd for c in cols])),
        mean_ks=_mean_ks(cols),
        mean_tvd_2way=float(np.mean([p[2] for p in pairs])) if pairs else 0.0,
        association_similarity=sim,
    ), assoc


def fidelity(real: PreparedTable, synthetic: PreparedTable, schema: Schema, holdout: PreparedTable,
             no_relations: PreparedTable) -> Fidelity:
    """All fidelity metrics of ``synthetic`` against ``real``, and the headline ones of the references.

    ``holdout``: two independent real samples never match perfectly, so holdout-vs-real shows
    how much of the distance is plain sampling noise. ``no_relations`` (the training rows'
    :meth:`~fedsynth.evaluation.prepared.PreparedTable.independent_columns`): the score of
    keeping the marginals and nothing else.
    """
    names = schema.names
    binnings = {c.name: fit_binning(real[c.name], c) for c in schema.columns if not is_discrete(c)}
    codes_real = discretise(real, schema, binnings)
    codes_syn = discretise(synthetic, schema, binnings)

    columns = [replace(entry, plot=column_plot(col, real[col.name], synthetic[col.name]),
                       bins=None if is_discrete(col) else binnings[col.name].n_codes)
               for entry, col in zip(one_way(schema, real, synthetic, codes_real, codes_syn), schema.columns,
                                     strict=True)]

    pairs = two_way(codes_real, codes_syn, names)
    pair_tvds = np.array([p[2] for p in pairs]) if pairs else np.zeros(0)
    worst = sorted(pairs, key=lambda p: -p[2])[:8]

    assoc_real = association_matrix(real, schema)
    assoc_syn = association_matrix(synthetic, schema)
    sim, diff = association_similarity(assoc_real, assoc_syn, schema)

    mean_tvd_2 = float(pair_tvds.mean()) if pair_tvds.size else 0.0
    base_hold, assoc_hold = _reference(_HOLDOUT, real, holdout, schema, binnings, assoc_real)
    base_none, assoc_none = _reference(_NO_RELATIONS, real, no_relations, schema, binnings, assoc_real)
    return Fidelity(
        columns=columns,
        mean_tvd_1way=float(np.mean([c.tvd for c in columns])),
        mean_ks=_mean_ks(columns),
        two_way=TwoWay(
            mean_tvd=mean_tvd_2,
            contingency_similarity=1.0 - mean_tvd_2,
            n_pairs=len(pairs),
            numerical_bins=f"{N_QUANTILE_BINS} real-quantile bins + one per declared point mass + missing",
            worst_pairs=[WorstPair((x, y), t) for x, y, t in worst],
        ),
        associations=Associations(
            columns=list(names),
            measures=association_measures(schema),
            real=assoc_real.tolist(),
            synthetic=assoc_syn.tolist(),
            abs_difference=diff.tolist(),
            similarity=sim,
        ),
        baseline_holdout=base_hold,
        baseline_no_relations=base_none,
        strong_pairs=strong_pairs(assoc_real, assoc_syn, assoc_none, assoc_hold, schema),
    )
