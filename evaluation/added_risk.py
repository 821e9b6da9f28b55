"""Added risk over the holdout baseline: one attack's success on training rows against its success on
rows the synthesizer never saw (the control), as in Anonymeter (Giomi et al., PETS 2023).

An attack that predicts a sensitive value, singles a record out or links two halves of a record
succeeds some of the time on *any* row of the population: the synthetic data teach the attacker
what the population looks like, which is their purpose. Only the excess on training rows is
privacy leakage. With success rates ``t`` (training rows) and ``c`` (control rows) the added risk
is ``(t - c) / (1 - c)``: the share of the attack's room for improvement over the baseline that the
training rows' presence bought (0 = none, 1 = every training row falls to the attack).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_DRAWS = 4_000
"""Draws of each success rate for the interval (cheap: two vectors of beta draws)."""
FAMILY_LEVEL = 0.95
"""Confidence that *every* interval of a report holds at once: with m attacks each interval is
drawn at ``1 - (1 - FAMILY_LEVEL) / m`` (Bonferroni), so a report with no leakage flags any
attack at most 5 % of the time, not 1 - 0.95**m (26 % for six)."""


def simultaneous_level(attacks: int) -> float:
    """Each interval's level so that ``attacks`` intervals hold together at :data:`FAMILY_LEVEL`."""
    return 1.0 - (1.0 - FAMILY_LEVEL) / max(1, attacks)


@dataclass(frozen=True)
class RiskEstimate:
    """One attack on training rows and on control rows, and the risk it adds over the control."""

    attack: str
    detail: str
    train_success: float
    control_success: float
    added_risk: float
    added_risk_ci95: tuple[float, float]  # at `level`; 95 % for all of a report's intervals together
    n_train: int
    n_control: int
    sentence: str
    level: float = 0.95

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0: the attack does measurably better on training rows."""
        return self.added_risk_ci95[0] > 0.0


def _added(train: np.ndarray | float, control: np.ndarray | float) -> np.ndarray:
    train, control = np.asarray(train, dtype=float), np.asarray(control, dtype=float)
    room = np.maximum(1.0 - control, 1e-12)
    return np.where(control < 1.0, (train - control) / room, 0.0)


def estimate(attack: str, detail: str, train_hits: np.ndarray, control_hits: np.ndarray,
             rng: np.random.Generator, what: str, level: float = 0.95) -> RiskEstimate:
    """Added risk of one attack from its per-attempt successes (booleans) on training and control rows.

    The interval (at ``level``; :func:`simultaneous_level` for one of several) propagates both rates' uncertainty through the formula: each rate is drawn
    from its Jeffreys distribution Beta(hits + 1/2, misses + 1/2), whose central 95 % is the
    Jeffreys binomial interval; unlike a bootstrap it does not collapse to a point when an attack
    succeeds on every row (or none). ``what`` is the plain sentence's first half, with ``{train}`` and ``{control}``
    where the two success rates go.
    """
    n_t, n_c = int(train_hits.size), int(control_hits.size)
    if n_t == 0 or n_c == 0:
        raise ValueError(f"{attack}: no attempts on {'training' if n_t == 0 else 'control'} rows")
    k_c = int(np.sum(control_hits))
    t_draws = _jeffreys(train_hits, rng)
    c_draws = rng.beta(k_c + 0.5, n_c - k_c + 0.5, N_DRAWS)
    return _result(attack, detail, train_hits, float(np.mean(control_hits)), t_draws, c_draws, n_c, what, level)


def estimate_with_control_draws(attack: str, detail: str, train_hits: np.ndarray, control: float,
                                control_draws: np.ndarray, n_control: int, rng: np.random.Generator,
                                what: str, level: float = 0.95) -> RiskEstimate:
    """Added risk when the control's success rate is itself an estimate, given with draws of its uncertainty.

    For an attack whose baseline is not a plain count of successes (singling out corrects the
    control to the training set's size with a fitted model): ``control_draws`` (e.g. a bootstrap)
    enter the interval where a counted rate's Jeffreys draws would; the training rate keeps its Jeffreys draws.
    """
    if train_hits.size == 0:
        raise ValueError(f"{attack}: no attempts on training rows")
    t_draws = _jeffreys(train_hits, rng)
    c_draws = np.asarray(control_draws, dtype=float)
    if c_draws.size != N_DRAWS:
        c_draws = rng.choice(c_draws, N_DRAWS)
    return _result(attack, detail, train_hits, control, t_draws, c_draws, n_control, what, level)


def _jeffreys(hits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    k, n = int(np.sum(hits)), int(hits.size)
    return rng.beta(k + 0.5, n - k + 0.5, N_DRAWS)


def _result(attack: str, detail: str, train_hits: np.ndarray, c: float, t_draws: np.ndarray,
            c_draws: np.ndarray, n_control: int, what: str, level: float) -> RiskEstimate:
    t = float(np.mean(train_hits))
    draws = _added(t_draws, c_draws)
    ci = (float(np.quantile(draws, (1 - level) / 2)), float(np.quantile(draws, (1 + level) / 2)))
    risk = float(_added(t, c))
    return RiskEstimate(attack=attack, detail=detail, train_success=t, control_success=c, added_risk=risk,
                        added_risk_ci95=ci, n_train=int(train_hits.size), n_control=n_control,
                        sentence=_sentence(what, t, c, risk, ci, level), level=level)


def _sentence(what: str, t: float, c: float, risk: float, ci: tuple[float, float], level: float) -> str:
    base = what.format(train=f"{100 * t:.1f} %", control=f"{100 * c:.1f} %")
    interval = f"{100 * level:.3g} % CI {100 * ci[0]:.1f} % to {100 * ci[1]:.1f} %"
    if ci[0] > 0.0:
        return (f"{base}: the synthetic data add a measurable risk of {100 * risk:.1f} % "
                f"({interval}) over what the population reveals.")
    return (f"{base}: no risk beyond what the population reveals was measured (added risk "
            f"{100 * risk:.1f} %, {interval}).")
