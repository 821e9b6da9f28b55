"""Singling out: predicates read off the synthetic rows that fit exactly one real person.

As in Anonymeter, the attacker writes predicates from synthetic rows: starting from a random
synthetic row, conditions on up to ``MAX_CONDITIONS`` of its values (equality for categories,
"is missing", or a threshold towards the nearer tail for numbers, e.g. ``age >= 71``), each
time the one that leaves the fewest synthetic rows, until the predicate fits exactly one
synthetic row. Such a
predicate *singles out* a table when it fits exactly one of its rows. It is checked on a sample
of training rows and on as many holdout rows (the control): the chance that a predicate fits
exactly one row depends on the table's size, so both tables are compared at the same size. A
synthetic table that copies its training rows turns rare training records into predicates that
fit them; a faithful generator's predicates fit training and holdout rows alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsynth.common.data.schema import Schema
from fedsynth.evaluation.added_risk import RiskEstimate, estimate
from fedsynth.evaluation.prepared import PreparedTable, is_discrete

MAX_CONDITIONS = 3
N_PREDICATES = 1_000
MAX_ATTEMPTS_PER_PREDICATE = 4
"""At most ``n * MAX_ATTEMPTS_PER_PREDICATE`` synthetic rows are tried: bounds the time on tables full of
duplicate rows, where few predicates fit exactly one row."""


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


def synthetic_predicates(schema: Schema, synthetic: PreparedTable, rng: np.random.Generator,
                         n: int = N_PREDICATES) -> list[tuple[Condition, ...]]:
    """Up to ``n`` distinct predicates, each fitting exactly one synthetic row."""
    names = schema.names
    medians = {c: (float(np.nanmedian(synthetic[c])) if not is_discrete(schema.column(c))
                   and not np.isnan(synthetic[c]).all() else 0.0) for c in names}
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
            options = [_condition(schema, c, float(synthetic[c][row]), medians[c]) for c in unused]
            kept = [fits[o.matches(synthetic[o.column][fits])] for o in options]
            best = min(range(len(options)), key=lambda i: kept[i].size)
            conditions.append(options[best])
            unused.remove(options[best].column)
            fits = kept[best]
        if fits.size == 1:
            found.setdefault(frozenset(conditions), tuple(conditions))
    return list(found.values())


def _singles_out(predicate: tuple[Condition, ...], table: PreparedTable) -> bool:
    fits = np.ones(table.n_rows, dtype=bool)
    for cond in predicate:
        fits &= cond.matches(table[cond.column])
    return int(fits.sum()) == 1


def singling_out(schema: Schema, synthetic: PreparedTable, real: PreparedTable, holdout: PreparedTable,
                 rng: np.random.Generator) -> RiskEstimate | None:
    """Added risk of singling out training rows with synthetic predicates; None when none was found."""
    predicates = synthetic_predicates(schema, synthetic, rng)
    if not predicates:
        return None
    m = min(real.n_rows, holdout.n_rows)
    train = real.take(rng.choice(real.n_rows, m, replace=False))
    control = holdout.take(rng.choice(holdout.n_rows, m, replace=False))
    hits = [np.array([_singles_out(p, t) for p in predicates]) for t in (train, control)]
    what = ("Of predicates read off the synthetic rows (each fits exactly one synthetic row), {train} fit exactly "
            f"one of {m} training rows and {{control}} exactly one of {m} rows the synthesizer never saw")
    detail = f"{len(predicates)} predicates of 1 to {MAX_CONDITIONS} conditions; {m} rows of each table"
    return estimate("singling out", detail, hits[0], hits[1], rng, what)
