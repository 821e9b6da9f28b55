"""One-run canary audit of the shared-noise step: an empirical lower bound on its epsilon.

Steinke, Nasr & Jagielski 2023, "Privacy Auditing with One (1) Training Run" (NeurIPS),
Theorem 3.1: m canaries are each included independently with probability 1/2; after one run
the auditor guesses inclusion for r of them (abstaining on the rest) and gets W right. If the
mechanism is (eps, delta)-DP, then for every v

    P[W >= v] <= f(v) + 2 m delta * max_{i=1..v} (f(v - i) - f(v)) / i,
    f(v) = P[Binomial(r, e^eps / (1 + e^eps)) >= v].

So a run with v correct guesses rejects "(eps, delta)-DP" at level 1 - confidence whenever
the right-hand side is at most 1 - confidence; the largest such eps is the lower bound
(:func:`epsilon_lower_bound`). A lower bound above the accountant's claim means the code
does not do what the accountant assumes (or the accountant is wrong).

White-box gradient canaries through the real client step (:func:`audit_shared_noise`): a
``Linear(m, 1)`` model whose per-row loss is ``-output``, so row ``C e_j`` has gradient
``-C e_j`` (norm exactly the clip norm): canary j moves coordinate j only. The audited
institution holds the included canaries and runs ``shared_contribution`` at sample rate 1;
the other ``K_min - T - 1`` honest institutions send noise-only contributions; what the
coordinator and T colluders know is subtracted, so the sum holds the ``K_min - T`` honest
shares the coalition view accounts for. Scores are the coordinates of the sum as the coordinator
decodes it (:func:`~fedsynth.common.protocol.federation.shared_sums`), negated.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import binom
from torch import nn

from fedsynth.common.dp.accounting import epsilon_spent
from fedsynth.common.dp.rng import ChaChaStream
from fedsynth.common.dp.shared_noise import SharedNoise
from fedsynth.common.dp.shared_step import parameter_dim, shared_contribution
from fedsynth.common.protocol.federation import pack_shared_update, shared_sums

_EPS_MAX = 60.0  # e^60 / (1 + e^60) is 1 in float64: no count of guesses supports more


@dataclass(frozen=True)
class AuditResult:
    """One audit run: what was guessed, how well, and the two epsilons to compare."""

    canaries: int  # m: each included with probability 1/2
    guesses: int  # r: half on the highest scores (included), half on the lowest (excluded)
    correct: int  # v: correct guesses
    epsilon_lower_bound: float  # holds with probability >= confidence (Theorem 3.1)
    claimed_epsilon: float  # the accountant's, coalition view, for the one audited step
    confidence: float
    delta: float
    seconds: float  # wall time of the run (canaries, contributions, decoding, bound)

    @property
    def consistent(self) -> bool:
        """False when the audit proves more leakage than the accountant claims."""
        return self.epsilon_lower_bound <= self.claimed_epsilon


def p_value(canaries: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """Theorem 3.1's bound on P[W >= correct] for an (epsilon, delta)-DP mechanism."""
    if not 0 <= correct <= guesses <= canaries:
        raise ValueError(f"need 0 <= correct <= guesses <= canaries, got {correct}, {guesses}, {canaries}")
    q = 1.0 / (1.0 + math.exp(-epsilon))  # accuracy of epsilon-DP randomized response
    tail = float(binom.sf(correct - 1, guesses, q))  # f(v)
    if correct == 0 or delta == 0:
        return min(1.0, tail)
    i = np.arange(1, correct + 1)
    below = binom.cdf(correct - 1, guesses, q) - binom.cdf(correct - 1 - i, guesses, q)  # f(v - i) - f(v)
    return min(1.0, tail + 2 * canaries * delta * float(np.max(below / i)))


def epsilon_lower_bound(canaries: int, guesses: int, correct: int, delta: float, confidence: float) -> float:
    """The largest epsilon that ``correct`` of ``guesses`` rejects at level 1 - ``confidence``
    (0 if none does), by bisection: the p-value grows with epsilon."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    level = 1.0 - confidence
    if p_value(canaries, guesses, correct, 0.0, delta) > level:
        return 0.0
    lo, hi = 0.0, _EPS_MAX
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if p_value(canaries, guesses, correct, mid, delta) <= level else (lo, mid)
    return lo


def _canary_loss(module: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """Per-row loss -<w, row>: each row's gradient is -row."""
    return -module(rows).sum(dim=1)


def audit_shared_noise(shared: SharedNoise, canaries: int, guesses: int, delta: float = 1e-5,
                       confidence: float = 0.95, clip_norm: float = 1.0) -> AuditResult:
    """Audit one shared-noise step with ``canaries`` gradient canaries (see the module docstring).

    ``shared.sample_rate`` must be 1 so that every included canary is in the step; the coin
    flips come from the OS, the mechanism's randomness is the client step's own."""
    if shared.sample_rate != 1.0:
        raise ValueError("the audit needs sample_rate 1.0: every included canary must be in the step")
    if not 0 < guesses <= canaries:
        raise ValueError(f"need 0 < guesses <= canaries, got {guesses} and {canaries}")
    start = time.perf_counter()
    module = nn.Linear(canaries, 1, bias=False)
    grid = shared.grid(parameter_dim(module), clip_norm)
    mu = shared.share_mu(grid)
    claimed = epsilon_spent([shared.release(grid, 1)], delta)
    included = ChaChaStream.from_os().uniform(canaries) < 0.5
    rows = clip_norm * torch.eye(canaries)[torch.from_numpy(included)]
    holders = [rows] + [rows[:0]] * (shared.honest_shares - 1)  # the audited institution, then noise-only ones
    packed = [pack_shared_update(shared_contribution(module, _canary_loss, x, 1.0, grid, mu).gradient)
              for x in holders]
    mean = [np.mean(np.stack(parts), axis=0) for parts in zip(*packed)]  # what SecAgg+ hands the coordinator
    gradient = shared_sums(mean, len(packed))[:-1]  # the tail (no counts here, the contributor count) dropped
    scores = -np.concatenate([np.ravel(g) for g in gradient]).astype(np.float64)
    order = np.argsort(scores, kind="stable")
    high = guesses // 2
    guessed_in, guessed_out = order[canaries - high:], order[: guesses - high]
    correct = int(included[guessed_in].sum() + (~included[guessed_out]).sum())
    bound = epsilon_lower_bound(canaries, guesses, correct, delta, confidence)
    return AuditResult(canaries, guesses, correct, bound, claimed, confidence, delta, time.perf_counter() - start)
