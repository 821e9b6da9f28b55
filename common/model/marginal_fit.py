"""Marginal fitting: the trained generator made to agree with measured 2-way marginals.

DP-SGD at epsilon ~1 teaches a generator every column's marginal but little of the relations
between columns: a 1:1 pair such as Adult's education and education-num comes out nearly
independent. A few 2-way marginals measured directly (a Gaussian release each party can sum
through SecAgg+) carry those relations far more cheaply. As in GEM (Liu, Vietri, Wu 2021), the
generator is then fine-tuned so that its *expected* 2-way marginals, computed exactly from its
softmax outputs over a batch of latent draws, match the measured ones. That is post-processing
of accounted releases: no private row is read here.

* Pairs are between the columns' first softmax segments in the encoder's public layout
  (categories, small integers, a numerical's point masses and coarse bins; a timestamp's
  day and its time of day are two), so every party
  counts into the same cells. :func:`column_segments` lists them.
* Which pairs: the caller measures the ones where the model is furthest from the data
  (:func:`pair_errors`, released with noise: AIM and MST select by the same kind of score).
* Pairs not measured keep the model's own estimate (an anchor term in the loss), so fixing
  the measured relations does not erase what DP-SGD learned about the others.
* The rows conditioned on each column are fitted as a group of their own: fitting only the
  mixture let one condition's rows drift, and conditional sampling then missed rare combinations.
* A step over every column costs D squared for D encoded cells a side; a table wider than
  ``MarginalFitConfig.step_width`` fits each step on the measured pairs' columns and a random
  few of the others (:class:`_ColumnDraw`), an unbiased estimate of the whole step's loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch

from fedsynth.common.data.encoding import Segment, TableEncoder
from fedsynth.common.dp.accounting import Release, frequencies_from_counts, gaussian_counts_release
from fedsynth.common.dp.dp_sgd import csprng_torch_rng
from fedsynth.common.dp.shared_noise import SharedNoiseRelease, shared_counts_release
from fedsynth.common.model.tabular import TabularModel

Pair = tuple[int, int]  # indices into column_segments()
JOINT_DRAWS = 16_384  # latent draws behind the model's 2-way marginals when pairs are scored
FIT_LOSSES = ("kl", "l1")
#: the fine-tune's learning rate over its steps: held, or a half cosine from ``lr`` down to 0
FIT_SCHEDULES = ("constant", "cosine")
_LOG_FLOOR = 1e-6  # keeps log() finite where a table's cell is empty


@dataclass(frozen=True)
class MarginalFitConfig:
    """How many pairs are measured and how the generator is fitted to them.

    Defaults chosen by the table suite's mean (docs/benchmarks.md)."""

    pairs: int = 20  # 2-way marginals measured; 0 = no marginal fit
    steps: int = 1000  # Adam steps of the fine-tune
    lr: float = 6e-3  # 3e-3 before 2026-11-28: paired over the suite, docs/benchmarks.md ("The fine-tune's rate")
    batch: int = 2048  # latent draws per step
    anchor: float = 0.1  # weight of keeping the unmeasured pairs where the model had them
    # "kl": KL(target || model) per 2-way table; "l1": absolute differences (before 2026-11-27)
    loss: str = "kl"
    schedule: str = "constant"  # FIT_SCHEDULES
    # noise multipliers of the two releases, as multiples of the category-frequency release's
    # (fedsynth.common.dp.accounting.frequency_noise): the error vector only ranks pairs
    score_noise: float = 2.0
    pair_noise: float = 1.0
    # federated only: random +-1 projections of each pair's residual an institution releases in
    # place of its error, so that their sum estimates the *pooled* error (see project_residuals)
    projections: int = 16
    # a step's tables span at most this many encoded cells a side (0: always every column): a
    # wider table fits a random subset of its columns each step (see _ColumnDraw), since a step
    # over all D cells costs D squared (docs/benchmarks.md, "A wide table's fine-tune")
    step_width: int = 512

    def __post_init__(self) -> None:
        if (self.pairs < 0 or self.steps < 0 or self.batch < 1 or not self.lr > 0 or self.anchor < 0
                or self.step_width < 0
                or not self.score_noise > 0 or not self.pair_noise > 0 or self.projections < 1
                or self.loss not in FIT_LOSSES or self.schedule not in FIT_SCHEDULES):
            raise ValueError(f"invalid marginal fit settings: {self}")


def release_noises(config: MarginalFitConfig, frequency_noise: float) -> tuple[float, float]:
    """Noise multipliers of the error-vector release and of the pair-count release."""
    return config.score_noise * frequency_noise, config.pair_noise * frequency_noise


def planned_pairs(config: MarginalFitConfig, segments: list[Segment]) -> int:
    """Pairs a fit will measure at most: none when the table has fewer than two columns."""
    return min(config.pairs, len(all_pairs(segments)))


def planned_releases(config: MarginalFitConfig, frequency_noise: float, segments: list[Segment]) -> list[Release]:
    """The two releases of a marginal fit, as privacy-history entries (none if it measures no pair):
    what a party's noise calibration must count before DP-SGD is given the rest."""
    if not planned_pairs(config, segments):
        return []
    return [gaussian_counts_release(s) for s in release_noises(config, frequency_noise)]


def shared_planned_releases(config: MarginalFitConfig, counts_noise: float, segments: list[Segment],
                            honest_shares: int, chosen: int | None = None) -> list[SharedNoiseRelease]:
    """The two releases as noise shares (shared-noise runs: :mod:`fedsynth.common.dp.shared_noise`),
    each at its planned noise multiplier over its unit-sensitivity blocks: one per pair and
    projection for the errors, one per chosen pair for the counts.

    ``chosen``: the pairs the coordinator actually asked for. Without it (a plan, a reserve) the
    counts release is the costliest one the plan allows, a single pair: the coordinator asks only
    for pairs worth measuring, possibly fewer than planned, and the Skellam bound's correction term
    grows as the blocks shrink at the same noise multiplier (Gaussian releases do not depend on it)."""
    k = planned_pairs(config, segments)
    if not k:
        return []
    score, pair = release_noises(config, counts_noise)
    return [shared_counts_release(score, len(all_pairs(segments)) * config.projections, honest_shares),
            shared_counts_release(pair, 1 if chosen is None else chosen, honest_shares)]


def column_segments(encoder: TableEncoder) -> list[Segment]:
    """Each column's first softmax segment (a timestamp's day's and its time of day's), in schema
    order: the axes of the 2-way marginals."""
    out: list[Segment] = []
    for seg in encoder.segments:
        if seg.kind == "softmax" and (not out or (out[-1].column, out[-1].part) != (seg.column, seg.part)):
            out.append(seg)
    return out


def all_pairs(segments: list[Segment]) -> list[Pair]:
    return list(combinations(range(len(segments)), 2))


def _offsets(segments: list[Segment]) -> np.ndarray:
    return np.cumsum([0] + [s.size for s in segments])


def real_joint_counts(x: np.ndarray, segments: list[Segment]) -> np.ndarray:
    """Exact (D x D) co-occurrence counts of the encoded rows ``x``: block (a, b) is the 2-way
    count table of columns a and b. Private: only ever released with noise."""
    onehot = np.concatenate([x[:, s.start : s.end] for s in segments], axis=1).astype(np.float64)
    return onehot.T @ onehot


def block(joint: np.ndarray | torch.Tensor, segments: list[Segment], pair: Pair):
    """The (size_a x size_b) 2-way table of ``pair`` inside a (D x D) joint matrix."""
    off = _offsets(segments)
    a, b = pair
    return joint[off[a] : off[a + 1], off[b] : off[b + 1]]


class _Gram(torch.autograd.Function):
    """``a.T @ a`` whose backward is one product, ``a @ (g + g.T)``: autograd's generic matmul
    backward takes two, and these products are most of a fine-tune step."""

    @staticmethod
    def forward(ctx, a: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(a)
        return a.T @ a

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (a,) = ctx.saved_tensors
        return a @ (grad + grad.T)


def _layout(model: TabularModel, segments: list[Segment]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For the (D)-wide row of the segments' probabilities: the generator output column of each
    entry, the conditioner's segment index owning it (-1 where the column is not conditionable),
    where the condition's entries sit in that row, and which entries of the condition's one-hot
    they are (all of them unless ``segments`` leaves a conditionable column out)."""
    off = _offsets(segments)
    position = {s.start: i for i, s in enumerate(segments)}
    owner = torch.full((int(off[-1]),), -1, dtype=torch.long)
    spans, picked, start = [], [], 0
    for j, seg in enumerate(model.conditioner.segments):  # the one-hot's order
        i = position.get(seg.start)
        if i is not None:
            owner[off[i] : off[i + 1]] = j
            spans.append(np.arange(off[i], off[i + 1]))
            picked.append(np.arange(start, start + seg.size))
        start += seg.size
    cols = np.concatenate([np.arange(s.start, s.end) for s in segments])
    at = np.concatenate(spans) if spans else np.zeros(0, dtype=np.int64)
    taken = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    return torch.as_tensor(cols), owner, torch.as_tensor(at), torch.as_tensor(taken)


def model_joint(model: TabularModel, segments: list[Segment], n: int, g: torch.Generator,
                grad: bool = False, by_condition: bool = False) -> torch.Tensor:
    """(D x D) expected 2-way marginals of the model's rows, over ``n`` latent draws.

    Given its latent draw and condition, a generated row's columns are sampled independently
    from their softmaxes, so E[onehot_a onehot_b^T] = E[p_a p_b^T]; the conditioned column is
    one-hot on its condition, as :meth:`Conditioner.impose` makes it. ``by_condition``: one
    (D x D) per conditionable column, over the rows conditioned on it (G x D x D)."""
    cnd = model.conditioner
    cond, col, _ = cnd.sample(n, g)
    cols, owner, cond_at, cond_taken = _layout(model, segments)
    with torch.set_grad_enabled(grad):
        raw = model.logits(cond, g)
        # one gather and a split: slicing each segment out of ``raw`` would zero-fill a
        # full-size gradient per segment in the backward pass
        parts = torch.split(raw.index_select(1, cols), [s.size for s in segments], dim=1)
        p = torch.cat([torch.softmax(part, dim=1) for part in parts], dim=1)
        if cnd.segments:
            onehot = torch.zeros_like(p)
            onehot[:, cond_at] = cond[:, cond_taken]
            p = torch.where(owner.unsqueeze(0) == col.unsqueeze(1), onehot, p)
        if not by_condition or not cnd.segments:
            return _Gram.apply(p) / n
        # rows grouped by condition with one sort: a split's backward is a concatenation, where
        # indexing each group out of p would zero-fill a full-size gradient per group
        sizes = torch.bincount(col, minlength=len(cnd.segments)).tolist()
        groups = torch.split(p[torch.argsort(col)], sizes)
        return torch.stack([_Gram.apply(part) / max(1, part.shape[0]) for part in groups])


def pair_errors(counts: np.ndarray, joint: np.ndarray, rows: float, segments: list[Segment],
                pairs: list[Pair]) -> np.ndarray:
    """For each pair, sum |real count - rows * model frequency| over its cells.

    One row added or removed changes one cell of every pair's table by 1, so each error by at
    most 1: the vector's L2 sensitivity is sqrt(#pairs), as for a counts release of that many
    blocks. ``rows`` must be public (a released estimate), not the private row count."""
    return np.array([np.abs(block(counts, segments, p) - rows * block(joint, segments, p)).sum() for p in pairs])


def worth_measuring(errors: np.ndarray, segments: list[Segment], pairs: list[Pair], k: int,
                    noise_multiplier: float) -> list[Pair]:
    """At most ``k`` pairs, largest (noisy) error first, each with more error than measuring it would add.

    Measuring n tables adds Gaussian noise of std ``noise_multiplier * sqrt(n)`` to every cell, so a
    table of c cells gains about c * std * sqrt(2/pi) absolute error: a pair the model already has
    closer than that (small tables, large tables or small data) is better left to the model.
    Post-processing of the released ``errors``."""
    return _largest_worth(errors, [_cells(segments, p) * np.sqrt(2 / np.pi) for p in pairs], noise_multiplier,
                          pairs, k)


def project_residuals(counts: np.ndarray, joint: np.ndarray, rows: float, segments: list[Segment],
                      pairs: list[Pair], projections: int, seed: int) -> list[np.ndarray]:
    """For each pair, ``projections`` random +-1 combinations of its residual cells (real count -
    rows * model frequency), as one-value blocks (pair by pair).

    Why: an institution's own error |residual| adds up its table's difference from everyone
    else's (a region, a period) as if it were the model's, and summed errors then chose pairs
    that only tell institutions apart. Residuals add up: with the same public signs everywhere
    (``seed``), the sum of the institutions' projections is the projection of the *pooled*
    residual, and its mean square estimates the pooled residual's squared L2 norm (:func:`sketched_errors`).
    One row changes one cell of each pair's residual by 1, so each value by 1: the release's L2
    sensitivity is sqrt(#pairs x projections), as for that many count blocks."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    for p in pairs:
        residual = (block(counts, segments, p) - rows * block(joint, segments, p)).ravel()
        signs = rng.integers(0, 2, size=(projections, residual.size)) * 2.0 - 1.0
        out.extend(np.atleast_1d(v) for v in signs @ residual)
    return out


def sketched_errors(sums: np.ndarray, pairs: int, projections: int, noise_std: float) -> np.ndarray:
    """Each pair's pooled residual L2 norm, estimated from the summed noisy projections
    (``pairs`` x ``projections`` values, each with Gaussian noise of std ``noise_std``):
    E[(s + z)^2] = |residual|^2 + noise_std^2 for +-1 signs. Post-processing."""
    squares = np.asarray(sums, dtype=float).reshape(pairs, projections) ** 2
    return np.sqrt(np.maximum(squares.mean(axis=1) - noise_std**2, 0.0))


def worth_measuring_l2(norms: np.ndarray, segments: list[Segment], pairs: list[Pair], k: int,
                       noise_multiplier: float) -> list[Pair]:
    """:func:`worth_measuring` for L2 norms: at most ``k`` pairs, largest first, whose residual is
    longer than the noise vector measuring them would add (std ``noise_multiplier * sqrt(n)`` in
    each cell of n tables: length about std * sqrt(cells))."""
    return _largest_worth(norms, [np.sqrt(_cells(segments, p)) for p in pairs], noise_multiplier, pairs, k)


def _largest_worth(values: np.ndarray, per_std: list[float], noise_multiplier: float, pairs: list[Pair],
                   k: int) -> list[Pair]:
    """The most pairs n <= ``k`` (largest value first) that each beat the noise of measuring n.

    A pair's threshold is ``per_std`` times the cell noise std of a release of n tables,
    ``noise_multiplier * sqrt(n)``. Judging every pair against k tables' noise (before 2026-11-27)
    measured the few that passed at a far lower noise and left out pairs that this lower noise
    would have measured well (docs/benchmarks.md, "Which pairs the marginal fit measures")."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(-values)
    for n in range(k, 0, -1):
        std = noise_multiplier * np.sqrt(n)
        passing = [i for i in order if values[i] > per_std[i] * std]
        if len(passing) >= n:
            return [pairs[i] for i in passing[:n]]
    return []


def measured_frequencies(segments: list[Segment], chosen: list[Pair], noisy: list[np.ndarray]
                         ) -> dict[Pair, np.ndarray]:
    """The chosen pairs' noisy counts (flat, one per pair, in ``chosen``'s order) as frequency
    tables for :func:`fit_marginals`; post-processing."""
    shapes = [(segments[a].size, segments[b].size) for a, b in chosen]
    return {p: f.reshape(shape) for p, shape, f in zip(chosen, shapes, frequencies_from_counts(noisy))}


def _cells(segments: list[Segment], pair: Pair) -> int:
    return segments[pair[0]].size * segments[pair[1]].size


def _table_loss(joint: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, kind: str) -> torch.Tensor:
    """Weighted distance of the model's 2-way tables from the targets, summed over cells.

    Why KL by default: an absolute difference pulls every cell with the same force, so a cell the
    model leaves nearly empty (the diagonal of two scheduled times when DP-SGD trained them
    nearly independent) fills slowly; KL(target || model) pulls it in proportion to the target
    over the model's mass there. Every table, measured or anchored, sums to 1 (docs/benchmarks.md)."""
    if kind == "l1":
        return (weight * (joint - target).abs()).sum()
    log_ratio = torch.log(target + _LOG_FLOOR) - torch.log(joint + _LOG_FLOOR)
    return (weight * target * log_ratio).sum()


@dataclass(frozen=True)
class _ColumnDraw:
    """The columns one step of a wide table's fit sees: every measured pair's columns and
    ``extra`` of the others drawn at random, so that a step costs about ``step_width`` squared
    instead of D squared. An anchored pair is in a step's tables with probability
    :meth:`chance`; its term is weighted by the inverse, which keeps every step's expected loss
    the loss over all pairs."""

    fixed: frozenset[int]
    rest: tuple[int, ...]
    extra: int

    @classmethod
    def plan(cls, segments: list[Segment], measured: Iterable[Pair], width: int) -> _ColumnDraw | None:
        """None where every column fits within ``width`` cells, or would be drawn anyway."""
        sizes = [s.size for s in segments]
        if not width or sum(sizes) <= width:
            return None
        fixed = frozenset(c for pair in measured for c in pair)
        rest = tuple(i for i in range(len(segments)) if i not in fixed)
        room = width - sum(sizes[i] for i in fixed)
        extra = max(2, int(room * len(rest) // max(1, sum(sizes[i] for i in rest))))
        return None if extra >= len(rest) else cls(fixed, rest, extra)

    def chance(self, a: int, b: int) -> float:
        """The probability that a step's columns hold both ``a`` and ``b``."""
        drawn, r, n = (a not in self.fixed) + (b not in self.fixed), self.extra, len(self.rest)
        return 1.0 if drawn == 0 else r / n if drawn == 1 else r * (r - 1) / (n * (n - 1))

    def draw(self, g: torch.Generator) -> list[int]:
        """One step's columns, in the segments' order."""
        pick = torch.randperm(len(self.rest), generator=g)[: self.extra].tolist()
        return sorted([*self.fixed, *(self.rest[i] for i in pick)])


def fit_marginals(model: TabularModel, segments: list[Segment], measured: dict[Pair, np.ndarray],
                  config: MarginalFitConfig, seed: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> tuple[float, float]:
    """Fine-tune ``model``'s generator so its 2-way marginals match ``measured`` (pair ->
    frequency table summing to 1) and its other pairs stay where they were.

    Returns the measured pairs' mean total variation distance (model vs measurement) before and
    after. The latent draws are the only randomness; ``seed`` fixes them. ``progress(done, total)``
    is called after every step (a wide table's fit takes minutes even with ``step_width``)."""
    g = torch.Generator().manual_seed(seed) if seed is not None else csprng_torch_rng()
    params = model.generator_parameters()
    for p in params:
        p.requires_grad_(True)
    off = _offsets(segments)
    mask = torch.zeros(int(off[-1]), int(off[-1]))
    target = torch.zeros_like(mask)
    for (a, b), table in measured.items():
        mask[off[a] : off[a + 1], off[b] : off[b + 1]] = 1.0
        target[off[a] : off[a + 1], off[b] : off[b + 1]] = torch.as_tensor(table, dtype=torch.float32)
    wide = _ColumnDraw.plan(segments, measured, config.step_width)
    anchor = torch.zeros_like(mask)
    for a, b in all_pairs(segments):
        if (a, b) not in measured:
            anchor[off[a] : off[a + 1], off[b] : off[b + 1]] = 1.0 / (wide.chance(a, b) if wide else 1.0)
    target = target + (anchor > 0) * model_joint(model, segments, 8 * config.batch, g)

    def tvd() -> float:
        with torch.no_grad():
            joint = model_joint(model, segments, 8 * config.batch, g)
        return float(0.5 * ((joint - target) * mask).abs().sum() / max(1, len(measured)))

    before = tvd()
    opt = torch.optim.Adam(params, lr=config.lr)
    steps = config.steps if measured else 0
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if config.schedule == "cosine" and steps else None
    weight = mask + config.anchor * anchor
    for step in range(steps):
        cols, part, wanted = segments, target, weight
        if wide is not None:
            drawn = wide.draw(g)
            cols = [segments[i] for i in drawn]
            cells = torch.as_tensor(np.concatenate([np.arange(off[i], off[i + 1]) for i in drawn]))
            part, wanted = target[cells][:, cells], weight[cells][:, cells]
        # Every group of rows conditioned on one column (its category drawn from its released
        # frequencies) should show the whole table's marginals: fitting only their mixture let a
        # condition's own rows drift (a rare combination under a condition became unreachable).
        joint = model_joint(model, cols, config.batch, g, grad=True, by_condition=True)
        loss = _table_loss(joint, part, wanted, config.loss) / (joint.shape[0] if joint.dim() == 3 else 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if decay is not None:
            decay.step()
        if progress is not None:
            progress(step + 1, steps)
    for m in model.modules():
        for p in m.parameters():
            p.grad = None
    return before, tvd()
