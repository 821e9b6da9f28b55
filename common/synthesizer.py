"""Single-party DP synthesizer: the unit every federated client runs, and the centralized
baseline the federation is measured against.

``Synthesizer(schema, epsilon=1, delta=1e-5).fit(df)`` spends its budget in accounted
releases, composed by one Opacus accountant:

1. the category frequencies of the categorical columns and a fine histogram of every
   numerical and datetime column (one Gaussian mechanism), needed to draw sampling
   conditions without touching private counts, to place the encoder's numerical bins at equal
   released masses (``ModelConfig.binning``) and to calibrate samples
   (:mod:`fedsynth.common.calibration`); its noise is chosen from epsilon
   (:func:`fedsynth.common.dp.accounting.frequency_noise`), so small budgets remain possible;
2. DP-SGD on the model (:mod:`fedsynth.common.dp.trainer`), its noise multiplier calibrated
   so that the planned steps land on the target epsilon (from below);
3. the marginal fit (:mod:`fedsynth.common.model.marginal_fit`): how far the trained model is
   from the data on every 2-way marginal (one Gaussian release of that error vector), then the
   worst ``pairs`` 2-way marginals themselves (another); the generator is fine-tuned to them.

The epsilon the object reports is recomputed from that history, never copied from the
target. Saving and loading go through :mod:`fedsynth.common.artifact`.

The schema's id columns are never learned from; every sample gets fresh ones, unique within
it (:func:`fedsynth.common.data.cells.with_ids`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import asdict, astuple, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fedsynth.common.artifact import (
    FederationRecord,
    ModelMeta,
    PrivacyRecord,
    model_state,
    read_model,
    write_model,
)
from fedsynth.common.calibration import POOL_FACTOR, calibrated_rows, rebalanced
from fedsynth.common.data.cells import coerce, with_ids
from fedsynth.common.data.constraints import FixedCombinations, Rejections, columns_of, repair
from fedsynth.common.data.encoding import Segment, TableEncoder
from fedsynth.common.data.schema import Schema
from fedsynth.common.dp.accounting import (
    Release,
    calibrate_noise,
    check_privacy_params,
    epsilon_spent,
    frequencies_from_counts,
    frequency_noise,
    gaussian_counts_release,
    noisy_counts,
    rows_from_counts,
)
from fedsynth.common.dp.dp_sgd import csprng_torch_rng
from fedsynth.common.dp.plan import TrainingConfig, sampling_plan
from fedsynth.common.errors import DataError, FedsynthError, PrivacyError
from fedsynth.common.model.marginal_fit import (
    JOINT_DRAWS,
    MarginalFitConfig,
    Pair,
    all_pairs,
    block,
    column_segments,
    fit_marginals,
    measured_frequencies,
    model_joint,
    pair_errors,
    planned_pairs,
    planned_releases,
    real_joint_counts,
    release_noises,
    worth_measuring,
)
from fedsynth.common.model.tabular import MODELS, ModelConfig, TabularModel, build_model
from fedsynth.common.progress import StepProgress
from fedsynth.common.timestamps import utc_now

SAMPLE_CHUNK_ROWS = 50_000  # rows per pass of the model: bounds memory (~ 0.5 KB a row encoded) for any n
MAX_SAMPLE_ROWS = 10_000_000  # sample() returns one DataFrame, held in memory
MAX_STREAM_ROWS = 100_000_000  # iter_sample(): bounded by time and disk (~ 10 GB of CSV), not memory
FRAME_LABEL = "DataFrame"  # stands for the file name in the violations of a frame given to fit()


@dataclass
class PrivacyState:
    epsilon_target: float
    delta: float
    accountant: str
    history: list[Release] = field(default_factory=list)
    # Federated models: the largest epsilon any client's own accountant reported. The
    # coordinator holds no history of its own (each client keeps its ledger).
    reported: float | None = None

    @property
    def epsilon(self) -> float:
        if not self.history and self.reported is not None:
            return self.reported
        return epsilon_spent(self.history, self.delta, self.accountant)


class Synthesizer:
    """Differentially private synthetic data for one table.

    Args:
        schema: the public schema: a ``Schema``, a path to its JSON, or the JSON as a dict
            (fedsynth's, or SDV single-table metadata with its public bounds; an SDV metadata
            object is read through its ``to_dict()``).
        model: ``"vae"`` (default; conditional VAE) or ``"gan"`` (conditional GAN).
        epsilon, delta: the privacy target for the whole fit.
    """

    def __init__(self, schema: Schema | str | Path | Mapping[str, Any], model: str = "vae", epsilon: float = 1.0,
                 delta: float = 1e-5, training: TrainingConfig | None = None,
                 model_config: ModelConfig | None = None, marginal_fit: MarginalFitConfig | None = None) -> None:
        self.schema = as_schema(schema)
        if model not in MODELS:
            raise FedsynthError(f"unknown model {model!r}; choose one of {MODELS}")
        check_privacy_params(epsilon, delta)
        self.training = training or TrainingConfig()
        self.model_config = model_config or ModelConfig(model=model)
        self.model_config.model = model
        self.marginal_fit = marginal_fit or MarginalFitConfig()
        self.encoder = TableEncoder(self.schema)
        self.privacy = PrivacyState(epsilon, delta, self.training.accountant)
        self.model: TabularModel | None = None
        # released histograms, one per encoder.histograms entry (empty: samples are not
        # calibrated, as in models saved before they existed); see fedsynth.common.calibration
        self.marginals: list[np.ndarray] = []
        self.calibrate = True  # unconditional samples agree with the released marginals
        self.info: dict[str, Any] = {}
        self._plans: dict[tuple, dict[str, float]] = {}  # plan() per (rows, budget, training settings)
        # The privacy record load() read: saved back as it was (load() cannot hold every record
        # in PrivacyState: a federated epsilon nobody reported, a zero target), so that the model
        # id a loaded model states (sidecars of its samples) is the model card's.
        self._loaded_privacy: PrivacyRecord | None = None

    # ------------------------------------------------------------------ training
    @property
    def epsilon_spent(self) -> float:
        return self.privacy.epsilon

    def plan(self, n_rows: int) -> dict[str, float]:
        """Sample rate, steps and noise multiplier for a fit on ``n_rows`` rows.

        Calibrating the noise runs the accountant some sixty times (seconds): the plan is kept per
        settings, so the CLI's announcement and the fit that follows it calibrate once."""
        key = (n_rows, self.privacy.epsilon_target, self.privacy.delta, astuple(self.training),
               astuple(self.marginal_fit))
        if key not in self._plans:
            self._plans[key] = self._calibrated_plan(n_rows)
        return dict(self._plans[key])

    def _calibrated_plan(self, n_rows: int) -> dict[str, float]:
        check_privacy_params(self.privacy.epsilon_target, self.privacy.delta, n_rows)
        batch, q, steps = sampling_plan(n_rows, self.training.epochs, self.training.batch_size)
        freq_noise = frequency_noise(self.privacy.epsilon_target, self.privacy.delta, self.training.accountant,
                                     floor=self.training.marginal_noise)
        segments = column_segments(self.encoder)
        prior = [gaussian_counts_release(freq_noise)] + planned_releases(self.marginal_fit, freq_noise, segments)
        pairs = planned_pairs(self.marginal_fit, segments)
        score_noise, pair_noise = release_noises(self.marginal_fit, freq_noise)
        cal = calibrate_noise(self.privacy.epsilon_target, self.privacy.delta, q, steps, prior,
                              self.training.accountant)
        return {"sample_rate": q, "steps": steps, "noise_multiplier": cal.noise_multiplier,
                "expected_batch": batch, "planned_epsilon": cal.epsilon, "frequency_noise": freq_noise,
                "marginal_pairs": pairs, "score_noise": score_noise, "pair_noise": pair_noise}

    def fit(self, data: pd.DataFrame, progress: Callable[[int, int], None] | None = None,
            verbose: bool = False, fit_progress: Callable[[int, int], None] | None = None) -> Synthesizer:
        """Train on a table: raw cells (text, as a CSV holds them) or the typed output of
        :func:`fedsynth.common.data.tables.load_table`.

        The frame is checked and typed against the schema exactly as a file is
        (:func:`fedsynth.common.data.cells.coerce`): a bad cell raises the DataError listing
        every violation that ``fedsynth schema validate`` reports for the same rows, before
        any budget is spent. ``progress(done, total)`` is called after every DP step,
        ``fit_progress(done, total)`` after every step of the marginal fit that follows them;
        ``verbose`` shows both on stderr, one after the other: a bar with the steps done and the time
        left on a terminal, a few plain lines elsewhere (:class:`fedsynth.common.progress.StepProgress`).
        """
        if self.privacy.history:
            raise PrivacyError("this synthesizer has already spent its budget; create a new one")
        df = self._checked(data)
        self._loaded_privacy = None  # this fit's releases make a new record
        plan = self.plan(len(df))
        started = time.time()
        x_np = self.encoder.encode(df)
        x = torch.from_numpy(x_np)
        # one release: category counts and numerical histograms (common/data/histogram.py)
        # Spend first, then use: the history records each release before its result is used.
        self.privacy.history.append(gaussian_counts_release(plan["frequency_noise"]))
        counts = noisy_counts(self.encoder.count_blocks(df, x_np), plan["frequency_noise"])
        cond_probs, self.marginals = self.encoder.split_counts(
            frequencies_from_counts(counts, ordered=self.encoder.counts_layout.ordered))
        if self.model_config.binning == "measured":  # bins from the release just made
            self.encoder = TableEncoder.measured(self.schema, self.marginals)
            x_np = self.encoder.encode(df)
            x = torch.from_numpy(x_np)
        self.model = build_model(self.encoder, self.model_config, cond_probs=cond_probs)
        self.privacy.history.append((plan["noise_multiplier"], plan["sample_rate"], int(plan["steps"])))
        steps, done = int(plan["steps"]), 0
        bar = StepProgress("training: DP-SGD step", steps) if verbose else None
        with bar if bar is not None else nullcontext():
            if bar is not None:
                bar.update(0)  # the time left counts from here

            def tick(k: int) -> None:
                nonlocal done
                done += k
                if bar is not None:
                    bar.update(done)
                if progress:
                    progress(done, steps)

            self.model.train_steps(x, steps, plan["sample_rate"], plan["noise_multiplier"], tick)
        fitted = None
        if plan["marginal_pairs"]:
            fine = StepProgress("marginal fit: step", self.marginal_fit.steps) if verbose else None
            with fine if fine is not None else nullcontext():

                def fit_tick(done: int, total: int) -> None:
                    if fine is not None:
                        fine.update(done)
                    if fit_progress:
                        fit_progress(done, total)

                fitted = self._fit_marginals(x_np, plan, rows_from_counts(counts), fit_tick)
        spent = self.epsilon_spent
        if spent > self.privacy.epsilon_target + 1e-9:  # cannot happen if calibration is right
            raise PrivacyError(f"internal error: spent epsilon {spent} exceeds target")
        self.info = {"fit_seconds": round(time.time() - started, 2), "plan": plan,
                     "trained_at": utc_now()}
        if fitted is not None:
            self.info["marginal_fit"] = fitted
        return self

    def _fit_marginals(self, x_np: np.ndarray, plan: Mapping[str, float], rows: float | None,
                       progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Release 2-way errors, then the worst pairs' 2-way counts, and fit the generator to them
        (module docstring, step 3). ``rows`` is the released row-count estimate."""
        segments, measured = self._measure_marginals(x_np, plan, rows)
        before, after = fit_marginals(self.model, segments, measured, self.marginal_fit, progress=progress)
        return {"pairs": [[segments[a].label, segments[b].label] for a, b in measured],
                "tvd_before": round(before, 4), "tvd_after": round(after, 4),
                "steps": self.marginal_fit.steps if measured else 0}

    def _measure_marginals(self, x_np: np.ndarray, plan: Mapping[str, float], rows: float | None
                           ) -> tuple[list[Segment], dict[Pair, np.ndarray]]:
        """The two releases of the marginal fit, each recorded before it is used: the noisy errors
        of every pair against the trained model, then the chosen pairs' noisy 2-way frequencies."""
        segments = column_segments(self.encoder)
        pairs = all_pairs(segments)
        counts = real_joint_counts(x_np, segments)
        g = csprng_torch_rng()
        joint = model_joint(self.model, segments, JOINT_DRAWS, g).numpy()
        self.privacy.history.append(gaussian_counts_release(plan["score_noise"]))
        errors = np.concatenate(noisy_counts([np.atleast_1d(e) for e in pair_errors(counts, joint, rows or 0.0,
                                                                                    segments, pairs)],
                                             plan["score_noise"]))
        chosen = worth_measuring(errors, segments, pairs, int(plan["marginal_pairs"]), plan["pair_noise"])
        self.privacy.history.append(gaussian_counts_release(plan["pair_noise"]))
        noisy = noisy_counts([block(counts, segments, p).ravel() for p in chosen], plan["pair_noise"])
        return segments, measured_frequencies(segments, chosen, noisy)

    def _checked(self, data: pd.DataFrame) -> pd.DataFrame:
        """``data`` typed against the schema, or the DataError a table file with these cells gets."""
        if not isinstance(data, pd.DataFrame):
            raise DataError(f"fit() takes a pandas DataFrame, got {type(data).__name__}")
        # a typed frame (load_table's) holds no ids; they are checked when present, never learned from
        df, report = coerce(data, self.schema, FRAME_LABEL, require_ids=False)
        report.raise_if_bad()
        return df

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int | None = None, conditions: Mapping[str, Any] | None = None, seed: int | None = None,
               max_tries: int = 50, *, num_rows: int | None = None) -> pd.DataFrame:
        """``n`` synthetic rows in one DataFrame; with ``conditions`` every row satisfies all of them.

        ``num_rows`` is SDV's name for ``n``. The first categorical condition is fed to the
        model as its condition vector (exact); further conditions are met by rejection
        sampling, at most ``max_tries`` batches per chunk. More than :data:`MAX_SAMPLE_ROWS`
        rows are refused: stream them with :meth:`iter_sample` instead.
        """
        n = _row_count(n, num_rows)
        if n > MAX_SAMPLE_ROWS:
            raise FedsynthError(f"{n} rows is more than sample() holds in memory (at most {MAX_SAMPLE_ROWS:,}); "
                                "use iter_sample(), which yields them in chunks, or `fedsynth sample`")
        chunks = list(self.iter_sample(n, conditions, seed, max_tries))
        return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)

    def sample_from_conditions(self, conditions: Iterable[Any], seed: int | None = None,
                               max_tries: int = 50) -> pd.DataFrame:
        """SDV's spelling: the rows of every condition in one DataFrame, in order.

        Each condition is SDV's ``Condition`` (its ``column_values`` and ``num_rows``) or a
        dict with those keys; all of them are checked before any row is generated.
        """
        wanted = [_condition(c) for c in conditions]
        for values, rows in wanted:
            if rows < 0:
                raise FedsynthError(f"condition {values}: num_rows must be >= 0, got {rows}")
            self._parse_conditions(values)
        self._check_id_room(sum(rows for _, rows in wanted))
        frames = [self.sample(rows, conditions=values, seed=_chunk_seed(seed, i), max_tries=max_tries)
                  for i, (values, rows) in enumerate(wanted)]
        rows = pd.concat(frames, ignore_index=True) if frames else self.sample(0)
        # each frame numbered its ids from 0: renumbered over the whole table, so they stay unique
        return with_ids(rows.drop(columns=[c.name for c in self.schema.ids]), self.schema)

    def iter_sample(self, n: int, conditions: Mapping[str, Any] | None = None, seed: int | None = None,
                    max_tries: int = 50, chunk_rows: int = SAMPLE_CHUNK_ROWS) -> Iterator[pd.DataFrame]:
        """``n`` synthetic rows as DataFrames of at most ``chunk_rows`` rows, generated one at a time.

        Memory stays bounded whatever ``n`` is (up to :data:`MAX_STREAM_ROWS`). Everything
        that can be refused (``n``, the conditions, ids beyond their format's room) is checked before
        the first chunk. A seeded
        run is reproducible, and its first chunk is what a single call with that seed gives.
        """
        if self.model is None:
            raise FedsynthError("the synthesizer is not trained yet: call fit() or load()")
        if n < 0:
            raise FedsynthError(f"number of rows must be >= 0, got {n}")
        if n > MAX_STREAM_ROWS:
            raise FedsynthError(f"{n:,} rows is more than one call generates (at most {MAX_STREAM_ROWS:,}); "
                                "generate fewer, or several files with different seeds")
        parsed = self._parse_conditions(conditions) if conditions else None
        self._check_id_room(n)
        starts = range(0, n, chunk_rows) if n else range(1)
        return (with_ids(self._sample_chunk(min(chunk_rows, n - start), conditions, parsed, _chunk_seed(seed, i),
                                            max_tries), self.schema, start)
                for i, start in enumerate(starts))

    def _check_id_room(self, n: int) -> None:
        for col in self.schema.ids:
            col.check_room(n)

    def _sample_chunk(self, n: int, conditions: Mapping[str, Any] | None, parsed: Mapping[str, Any] | None,
                      seed: int | None, max_tries: int) -> pd.DataFrame:
        if n == 0:
            return self.encoder.decode(np.zeros((0, self.encoder.dim), dtype=np.float32))
        if not conditions and all(isinstance(c, FixedCombinations) for c in self.schema.constraints):
            return repair(self.schema.constraints, self._draw(n, seed))  # kept by construction: nothing to redraw
        first = next(iter(parsed.values())) if parsed else None
        fixed = (self.model.conditioner.index(first[0]), first[1]) if first else None
        rng = np.random.default_rng(seed)
        kept: list[pd.DataFrame] = []
        have = drawn = 0
        rejected = Rejections.empty()
        # rows drawn at most: a combination kept by under ~1 row in 4 * max_tries (200 at the default) fails
        budget = max_tries * 4 * max(n, 64)
        # an unconditional calibrated sample keeps a pool of valid rows and rakes it back to the
        # draws' marginals, which rejection would otherwise skew (calibration.rebalanced)
        rebalance = not conditions and self.calibrate
        wanted = POOL_FACTOR * n if rebalance else n
        reference: pd.DataFrame | None = None
        for _ in range(max_tries):
            size = _batch_rows(wanted - have, have, drawn, budget - drawn)
            if size == 0:
                break
            batch = self._draw(size, int(rng.integers(2**62)), fixed)
            drawn += size
            # schema constraints (common/data/constraints.py): FixedCombinations repaired, rows breaking the rest redrawn
            batch = repair(self.schema.constraints, batch)
            reference = batch if reference is None else reference
            mask = rejected.keep_valid(self.schema.constraints, batch)
            for col, value in (conditions or {}).items():
                mask &= batch[col].astype(str).str.lower().to_numpy() == str(value).lower()
            kept.append(batch[mask])
            have += int(mask.sum())
            if have >= wanted:
                break
        if have >= n:  # n > 0 here, so the first batch is the reference
            rows = pd.concat(kept, ignore_index=True)
            if not rebalance:
                return rows.iloc[:n].reset_index(drop=True)
            selected = {col for c in self.schema.constraints if not isinstance(c, FixedCombinations)
                        for col in columns_of(c)}
            return rebalanced(rows, reference, n, rng, [col for col in reference.columns if col in selected])
        raise FedsynthError(
            f"could only generate {have} of {n} rows satisfying {dict(conditions or {})} and the schema's constraints "
            f"from {drawn:,} rows drawn by rejection sampling (at most {max_tries} rounds): the combination is too rare "
            f"under the model{rejected.worst()}"
        )

    def _draw(self, n: int, seed: int | None, cond: tuple[int, int] | None = None) -> pd.DataFrame:
        """``n`` decoded model rows; unconditional ones calibrated to the released marginals."""
        if cond is not None or not self.calibrate or not self.marginals:
            return self.encoder.decode(self.model.generate(n, seed=seed, cond=cond), seed=seed)
        rng = np.random.default_rng(seed)
        step = max(1, SAMPLE_CHUNK_ROWS // POOL_FACTOR)  # a pool per pass of the model, as bounded as a plain chunk
        parts = [calibrated_rows(lambda m: self.model.generate(m, seed=int(rng.integers(2**62))), self.encoder,
                                 self.model.conditioner.probs, self.marginals, min(step, n - start), rng)
                 for start in range(0, n, step)]
        return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)

    def _parse_conditions(self, conditions: Mapping[str, Any]):
        parsed = {}
        for col, value in conditions.items():
            try:
                parsed[col] = self.encoder.condition_index(col, value)
            except ValueError as exc:
                raise FedsynthError(f"condition {col}={value}: {exc}") from None
        return parsed

    # ------------------------------------------------------------------ persistence
    def artifact_meta(self) -> ModelMeta:
        """What :mod:`fedsynth.common.artifact` saves besides the weights."""
        if self.model is None:
            raise FedsynthError("nothing to save: the synthesizer is not trained")
        federation = self.info.get("federation")
        return ModelMeta(
            # the bins the model was trained on (an unfitted model's are the schema's whatever was asked)
            schema=self.schema, model_config=replace(self.model_config, binning=self.encoder.binning),
            training=self.training,
            cond_probs=self.model.conditioner.probs, marginals=self.marginals,
            privacy=self._loaded_privacy or PrivacyRecord(
                self.privacy.epsilon_target, self.privacy.delta, self.privacy.accountant, list(self.privacy.history),
                self.epsilon_spent, per_client=self.privacy.reported is not None),
            info=self.info,
            # a federated model keeps its provenance (round, federation) through load/save
            round=self.info.get("round"),
            federation=FederationRecord.from_json(federation) if federation is not None else None,
        )

    def to_state(self) -> tuple[dict[str, Any], bytes]:
        """(metadata JSON, weights bytes) — the weights are a torch state of numpy arrays."""
        meta = self.artifact_meta()
        return model_state(meta, self.model.get_arrays())

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``path/`` (synthesizer.json + weights.pt) atomically: all or nothing.

        An existing ``path`` must be empty, or an earlier fedsynth model folder and
        ``overwrite=True``; anything else is refused and left untouched.
        """
        meta = self.artifact_meta()
        write_model(Path(path), meta, self.model.get_arrays(), overwrite=overwrite)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Synthesizer:
        meta, arrays = read_model(Path(path))
        mc, priv = meta.model_config, meta.privacy
        obj = cls(meta.schema, model=mc.model, epsilon=max(priv.epsilon_target, 1e-9),
                  delta=max(priv.delta, 1e-12), training=meta.training, model_config=mc)
        obj.privacy.history = list(priv.history)
        obj._loaded_privacy = priv
        if priv.per_client:
            obj.privacy.reported = priv.epsilon_spent
        obj.marginals = list(meta.marginals)
        timestamps = [h.column for h in obj.encoder.histograms if h.part == "time"]
        if obj.marginals and timestamps and len(obj.marginals) == len(obj.encoder.histograms) - len(timestamps):
            raise FedsynthError(f"{path}: this model was saved by an earlier fedsynth, which laid out a timestamp "
                                f"({', '.join(map(repr, timestamps))}) in days alone; today's lays out its day and its "
                                "time of day apart: fit it again")
        if obj.marginals and [m.size for m in obj.marginals] != [h.size for h in obj.encoder.histograms]:
            raise FedsynthError(f"{path}: the saved marginals do not fit the schema's numerical and datetime columns "
                                f"({[m.size for m in obj.marginals]} cells, expected "
                                f"{[h.size for h in obj.encoder.histograms]}); the model folder is damaged")
        if mc.binning == "measured":  # the fit's bins, derived again from the histograms it released
            if not obj.marginals:
                raise FedsynthError(f"{path}: the model's bins were measured, but its histograms are missing; "
                                    "the model folder is damaged")
            obj.encoder = TableEncoder.measured(obj.schema, obj.marginals)
        obj.model = build_model(obj.encoder, mc, cond_probs=meta.cond_probs)
        obj.model.set_arrays(arrays)
        obj.info = dict(meta.info)
        obj.info["model_id"] = meta.model_id
        if meta.round is not None:
            obj.info["round"] = meta.round
        if meta.federation is not None:
            obj.info["federation"] = asdict(meta.federation)
        return obj


def as_schema(schema: Schema | str | Path | Mapping[str, Any]) -> Schema:
    """The public schema from what a user holds: a Schema, a path, a dict (fedsynth's JSON or
    SDV single-table metadata) or an object with ``to_dict()`` (SDV's metadata classes)."""
    if isinstance(schema, Schema):
        return schema
    if isinstance(schema, (str, Path)):
        return Schema.load(schema)
    to_dict = getattr(schema, "to_dict", None)
    raw = to_dict() if callable(to_dict) else schema
    if not isinstance(raw, Mapping):
        raise FedsynthError(f"schema: expected a Schema, a path to its JSON or a metadata dict, "
                            f"got {type(schema).__name__}")
    return Schema.from_json(dict(raw), source=f"{type(schema).__name__} metadata")


def _condition(condition: Any) -> tuple[dict[str, Any], int]:
    """(column values, rows) of an SDV ``Condition`` or a dict with its two keys."""
    if isinstance(condition, Mapping):
        values, rows = condition.get("column_values"), condition.get("num_rows")
    else:
        values, rows = getattr(condition, "column_values", None), getattr(condition, "num_rows", None)
    if not isinstance(values, Mapping) or not isinstance(rows, int):
        raise FedsynthError(f"condition {condition!r}: expected column_values (a dict) and num_rows (an int), "
                            "as in SDV's Condition")
    return dict(values), rows


def _row_count(n: int | None, num_rows: int | None) -> int:
    """``n``, or SDV's ``num_rows`` for it: one of them, or both the same."""
    if n is None and num_rows is None:
        raise FedsynthError("sample() needs the number of rows: n (or num_rows)")
    if n is not None and num_rows is not None and n != num_rows:
        raise FedsynthError(f"sample(): n={n} and num_rows={num_rows} disagree; give one of them")
    return n if n is not None else num_rows  # type: ignore[return-value]


def _batch_rows(missing: int, accepted: int, drawn: int, left: int) -> int:
    """Rows to draw for ``missing`` more, sized by the share kept so far (at most ``left``).

    A fixed batch (twice what is missing) needed dozens of rounds where a constraint keeps
    few rows; sizing by the observed share (one pseudo-row each side, so a first round
    that keeps nothing still gives a finite estimate) asks for about what is missing, plus
    a fifth, in one or two rounds.
    """
    if drawn == 0:
        want = 2 * max(missing, 64)
    else:
        share = (accepted + 1) / (drawn + 2)
        want = int(np.ceil(1.2 * missing / share))
    return int(min(max(want, 64), 2 * SAMPLE_CHUNK_ROWS, max(left, 0)))


def _chunk_seed(seed: int | None, chunk: int) -> int | None:
    """Seed of one chunk of a seeded sample: the seed itself for the first, independent ones after."""
    if seed is None or chunk == 0:
        return seed
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1, np.uint64)[0] >> 2)
