"""Singling out: predicates read off the synthetic rows that fit exactly one real person.

As in Anonymeter, the attacker writes predicates from synthetic rows: starting from a random
synthetic row, conditions on up to ``MAX_CONDITIONS`` of its values (equality for categories,
"is missing", or a threshold towards the nearer tail for numbers, e.g. ``age >= 71``), each
time the one that leaves the fewest synthetic rows, until the predicate fits exactly one
synthetic row. Such a predicate *singles out* a table when it fits exactly one of its rows.

The attack is scored on the whole training set: a synthetic table that copies its training rows
turns each training record into a predicate that fits it, wherever it is. The chance that a
predicate fits exactly one of ``n`` rows depends on ``n`` (``n w (1 - w)^(n - 1)`` for a predicate
fitting a share ``w`` of the population), and the holdout is smaller, so its rate is not the
baseline. As Anonymeter does, the control is corrected to the training set's size with a model
of the predicates' shares fitted on the holdout counts (:func:`control_rate`); a holdout at
least as large as the training set needs no model: its own count, on as many rows, is the
baseline. Checking both tables on equally many rows is unbiased too, but a copied record is then
in the training sample only with chance ``holdout / training`` rows, which diluted a copy's risk
to a few %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from fedsynth.common.data.schema import Schema
from fedsynth.evaluation.added_risk import RiskEstimate, estimate, estimate_with_control_draws
from fedsynth.evaluation.prepared import PreparedTable, is_discrete

MAX_CONDITIONS = 3
N_PREDICATES = 1_000
MAX_ATTEMPTS_PER_PREDICATE = 4
"""At most ``n * MAX_ATTEMPTS_PER_PREDICATE`` synthetic rows are tried: bounds the time on tables full of
duplicate rows, where few predicates fit exactly one row."""
MAX_SIZE_RATIO = 4
"""The control is extrapolated to at most 4 times the holdout's rows (an 80/20 split's ratio); a larger
training set is subsampled to that size: beyond it the holdout counts hardly constrain the rare
predicates' shares, and the fitted model's shape would decide the baseline instead of the data."""
N_BOOTSTRAP = 200
"""Refits of the control's model on predicates drawn with replacement, for its interval."""


@dataclass(frozen=True)
class Condition:
    """One condition of a predicate: ``column op value`` (``op``: ``==``, ``<=``, ``>=``, ``missing``)."""

    column: str
    op: str
    value: float

    def matches(self, values: np.ndarray) -> np.ndarray:
        if self.op == "missing":
            return np.isnan(values)
        if self.op == "==":
            return values == self.value
        return values <= self.value if self.op == "<=" else values >= self.value


def _condition(schema: Schema, column: str, value: float, median: float) -> Condition:
    if is_discrete(schema.column(column)):
        return Condition(column, "==", value)
    if np.isnan(value):
        return Condition(column, "missing", value)
    return Condition(column, ">=" if value >= median else "<=", value)


class _WholeTableCounts:
    """How many of a table's rows one condition keeps, read off each column sorted once.

    The greedy step on the whole table would otherwise compare every column against its
    condition for every predicate tried, which was most of the attack's time."""

    def __init__(self, table: PreparedTable, names: list[str]) -> None:
        self._sorted: dict[str, np.ndarray] = {}
        self._missing: dict[str, int] = {}
        for c in names:
            values = np.asarray(table[c], dtype=float)
            nan = np.isnan(values)
            self._sorted[c], self._missing[c] = np.sort(values[~nan]), int(nan.sum())

    def size(self, cond: Condition) -> int:
        """``cond.matches(table[cond.column]).sum()``."""
        values = self._sorted[cond.column]
        if cond.op == "missing":
            return self._missing[cond.column]
        if np.isnan(cond.value):  # NaN equals and bounds nothing
            return 0
        if cond.op == "==":
            return int(np.searchsorted(values, cond.value, "right") - np.searchsorted(values, cond.value, "left"))
        if cond.op == "<=":
            return int(np.searchsorted(values, cond.value, "right"))
        return int(len(values) - np.searchsorted(values, cond.value, "left"))


def synthetic_predicates(schema: Schema, synthetic: PreparedTable, rng: np.random.Generator,
                         n: int = N_PREDICATES) -> list[tuple[Condition, ...]]:
    """Up to ``n`` distinct predicates, each fitting exactly one synthetic row."""
    names = schema.names
    medians = {c: (float(np.nanmedian(synthetic[c])) if not is_discrete(schema.column(c))
                   and not np.isnan(synthetic[c]).all() else 0.0) for c in names}
    whole = _WholeTableCounts(synthetic, names)
    found: dict[frozenset[Condition], tuple[Condition, ...]] = {}
    for _ in range(n * MAX_ATTEMPTS_PER_PREDICATE):
        if len(found) >= n:
            break
        row = int(rng.integers(synthetic.n_rows))
        fits = np.arange(synthetic.n_rows)
        conditions: list[Condition] = []
        unused = list(names)
        while len(conditions) < MAX_CONDITIONS and fits.size > 1:
            # the attacker's greedy step: of the row's remaining columns, the most selective condition
            # (the first of equals)
            options = [_condition(schema, c, float(synthetic[c][row]), medians[c]) for c in unused]
            if not conditions:  # on the whole table: counted without comparing every column
                best = int(np.argmin([whole.size(o) for o in options]))
                chosen = np.flatnonzero(options[best].matches(synthetic[options[best].column]))
            else:
                kept = [fits[o.matches(synthetic[o.column][fits])] for o in options]
                best = min(range(len(options)), key=lambda i: kept[i].size)
                chosen = kept[best]
            conditions.append(options[best])
            unused.remove(options[best].column)
            fits = chosen
        if fits.size == 1:
            found.setdefault(frozenset(conditions), tuple(conditions))
    return list(found.values())


def _fits(predicates: list[tuple[Condition, ...]], table: PreparedTable) -> np.ndarray:
    """Which of the table's rows each predicate fits (predicates x rows)."""
    out = np.ones((len(predicates), table.n_rows), dtype=bool)
    for i, predicate in enumerate(predicates):
        for cond in predicate:
            out[i] &= cond.matches(table[cond.column])
    return out


def _fit_shares(values: np.ndarray, weights: np.ndarray, m: int,
                start: np.ndarray | None = None) -> np.ndarray:
    """Log parameters of the Beta distribution of the predicates' population shares, fitted by maximum
    likelihood to how many of ``m`` holdout rows each fits (``weights`` predicates fit ``values`` rows).

    Each count is Binomial(m, w) with w ~ Beta(a, b), a beta-binomial: two parameters bend to the
    shares' skew (most predicates fit no holdout row, a few fit many) without a grid to choose; the
    bounds keep a degenerate fit (every count 0) finite. The gradient is exact (digammas): the
    optimizer's finite differences had tripled the likelihood's evaluations.
    """
    def nll(log_ab: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = np.exp(log_ab)
        both = special.digamma(a + b) - special.digamma(m + a + b)
        value = -float(weights @ (special.betaln(values + a, m - values + b) - special.betaln(a, b)))
        d_a = -float(weights @ (special.digamma(values + a) - special.digamma(a) + both))
        d_b = -float(weights @ (special.digamma(m - values + b) - special.digamma(b) + both))
        return value, np.array([d_a * a, d_b * b])  # d/dlog(a) = a d/da

    x0 = np.array([np.log(0.5), np.log(m)]) if start is None else start
    return optimize.minimize(nll, x0, jac=True, method="L-BFGS-B", bounds=[(-8.0, 6.0), (-4.0, 25.0)]).x


def _exactly_one(log_ab: np.ndarray, n: int) -> float:
    """Expected share of predicates fitting exactly one of ``n`` rows: E[n w (1 - w)^(n - 1)], w ~ Beta(a, b)."""
    a, b = np.exp(log_ab)
    return float(np.exp(np.log(n) + special.betaln(a + 1, b + n - 1) - special.betaln(a, b)))


def control_rate(holdout_fits: np.ndarray, n: int, rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """The share of predicates that would single out a table of ``n`` unseen rows, from which holdout
    rows each fits (predicates x rows); and ``N_BOOTSTRAP`` draws of its uncertainty.

    No unbiased estimate exists for ``n > m`` holdout rows (``n w (1 - w)^(n - 1)`` has degree ``n``
    in ``w``; a binomial count on ``m`` rows pins down polynomials of degree ``m`` only), so a
    model of the shares carries the extrapolation, as in Anonymeter; ``MAX_SIZE_RATIO`` bounds how far.
    Each draw refits the model on predicates drawn with replacement, counted on a random half of
    the holdout rows: half-sampling rows without replacement varies a mean as much as drawing a
    new holdout would (``1/(m/2) - 1/m = 1/m``), without the doubled rows of a bootstrap that
    would turn single matches into pairs; the predicates are redrawn because they are a sample
    too. A half extrapolates twice as far, so the draws, centred on the estimate, are if anything
    too spread: the interval errs wide. docs/benchmarks.md has the null checks.
    """
    n_pred, m = holdout_fits.shape
    counts = holdout_fits.sum(axis=1)
    fitted = _fit_shares(*_grouped(counts), m)
    draws = np.empty(N_BOOTSTRAP)
    for i in range(N_BOOTSTRAP):
        half = rng.choice(m, m // 2, replace=False)
        drawn = holdout_fits[:, half].sum(axis=1)[rng.integers(n_pred, size=n_pred)]
        draws[i] = _exactly_one(_fit_shares(*_grouped(drawn), m // 2, fitted), n)
    return _exactly_one(fitted, n), _exactly_one(fitted, n) + draws - np.mean(draws)


def _grouped(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct counts and how many predicates have each (the likelihood is summed over those)."""
    values, weights = np.unique(counts, return_counts=True)
    return values.astype(float), weights.astype(float)


def singling_out(schema: Schema, synthetic: PreparedTable, real: PreparedTable, holdout: PreparedTable,
                 rng: np.random.Generator, level: float = 0.95) -> RiskEstimate | None:
    """Added risk of singling out training rows with synthetic predicates; None when none was found."""
    predicates = synthetic_predicates(schema, synthetic, rng)
    if not predicates:
        return None
    n, m = min(real.n_rows, MAX_SIZE_RATIO * holdout.n_rows), holdout.n_rows
    train = real if n == real.n_rows else real.take(rng.choice(real.n_rows, n, replace=False))
    hits = _fits(predicates, train).sum(axis=1) == 1
    if n <= m:  # a holdout as large as the training set: its own count is the unbiased baseline, no model needed
        control = holdout if n == m else holdout.take(rng.choice(m, n, replace=False))
        what = ("Of predicates read off the synthetic rows (each fits exactly one synthetic row), {train} fit exactly "
                f"one of {n} training rows and {{control}} exactly one of {n} rows the synthesizer never saw")
        detail = f"{len(predicates)} predicates of 1 to {MAX_CONDITIONS} conditions; {n} rows of each table"
        return estimate("singling out", detail, hits, _fits(predicates, control).sum(axis=1) == 1, rng, what, level)
    control_success, draws = control_rate(_fits(predicates, holdout), n, rng)
    what = ("Of predicates read off the synthetic rows (each fits exactly one synthetic row), {train} fit exactly "
            f"one of {n} training rows; of {n} rows the synthesizer never saw, {{control}} would (estimated "
            f"from {m} holdout rows)")
    detail = (f"{len(predicates)} predicates of 1 to {MAX_CONDITIONS} conditions; {n} training rows; the control "
              f"corrected from {m} holdout rows to {n} by a fitted model of the predicates' shares")
    return estimate_with_control_draws("singling out", detail, hits, control_success, draws, len(predicates), rng,
                                       what, level)
