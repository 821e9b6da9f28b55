"""Evaluation of a synthetic table: fidelity, utility and empirical privacy, in one report.

``evaluate`` takes the rows the synthesizer was trained on, real rows it never saw (the
holdout) and the synthetic rows, all typed as ``load_table`` returns them, and returns a plain
JSON-serialisable dict; ``write_report`` turns that dict into ``report.json`` and a
self-contained ``report.html``. The holdout is what makes the numbers interpretable: it is the
test set for utility, the "never trained on" baseline for distances and exact copies, the
non-members and background knowledge for membership attacks, and the sampling-noise reference
for fidelity and detection. The training rows with every column shuffled separately are the
other reference (no relations kept), so that no score looks good only because every table
gets it.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from importlib import metadata

import pandas as pd
from threadpoolctl import threadpool_limits

from fedsynth.common.data.schema import Schema
from fedsynth.evaluation.attacks import MembershipInference
from fedsynth.evaluation.detection import Detection, detection
from fedsynth.evaluation.fidelity import Fidelity, fidelity
from fedsynth.evaluation.guarantee import compare_with_guarantee, describe_guarantee
from fedsynth.evaluation.jsonable import JsonObject, to_jsonable
from fedsynth.evaluation.overlap import holdout_overlap
from fedsynth.evaluation.prepared import PreparedTable, measured_schema, prepare
from fedsynth.evaluation.privacy import Privacy, privacy
from fedsynth.evaluation.report import write_report
from fedsynth.evaluation.risks import Risks, risks
from fedsynth.evaluation.utility import Utility, UtilitySkipped, utility

FORMAT = "fedsynth-evaluation/1"
PARALLEL_MIN_ROWS = 5_000
"""From this many training rows, the risks section runs in a second process beside the others when the
machine has two cores: it is the longest section and mostly Python (the GIL rules out a thread), and
below this size starting a process costs more than it saves."""
_LIBRARIES = ("fedsynth", "numpy", "pandas", "scipy", "scikit-learn", "matplotlib")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed" if name != "fedsynth" else "source tree"
    return out


@dataclass(frozen=True)
class Summary:
    """The headline numbers, so that a pipeline can gate on them without parsing sections.

    Every key is always present; a number that was not measured (no target, no attack) is null.
    """

    fidelity_1way_score: float
    mean_tvd_1way: float
    mean_tvd_2way: float
    association_similarity: float
    mean_tvd_2way_no_relations: float
    association_similarity_no_relations: float
    mean_tvd_2way_holdout: float
    association_similarity_holdout: float
    detection_auc: float | None
    detection_score: float | None
    detection_auc_no_relations: float | None
    detection_auc_holdout: float | None
    strong_pairs: int
    strong_pairs_kept: int
    utility_auc_ratio: float | None
    strongest_attack: str | None
    attack_auc: float | None
    attack_auc_ci95: tuple[float, float] | None
    attack_tpr_at_1pct_fpr: float | None
    exact_copy_rate: float
    dcr_share_closer_to_train: float
    max_added_risk: float | None
    max_added_risk_ci95: tuple[float, float] | None
    max_added_risk_attack: str | None


def _summary(fid: Fidelity, det: Detection, util: Utility | UtilitySkipped, priv: Privacy, risk: Risks) -> Summary:
    mia = priv.membership_inference
    strongest = mia.strongest if isinstance(mia, MembershipInference) else None
    highest = risk.highest
    return Summary(
        fidelity_1way_score=1.0 - fid.mean_tvd_1way,
        mean_tvd_1way=fid.mean_tvd_1way,
        mean_tvd_2way=fid.two_way.mean_tvd,
        association_similarity=fid.associations.similarity,
        mean_tvd_2way_no_relations=fid.baseline_no_relations.mean_tvd_2way,
        association_similarity_no_relations=fid.baseline_no_relations.association_similarity,
        mean_tvd_2way_holdout=fid.baseline_holdout.mean_tvd_2way,
        association_similarity_holdout=fid.baseline_holdout.association_similarity,
        detection_auc=det.synthetic.auc,
        detection_score=det.synthetic.score,
        detection_auc_no_relations=det.no_relations.auc,
        detection_auc_holdout=det.holdout.auc,
        strong_pairs=len(fid.strong_pairs),
        strong_pairs_kept=sum(p.kept for p in fid.strong_pairs),
        utility_auc_ratio=util.mean_auc_ratio if isinstance(util, Utility) else None,
        strongest_attack=strongest.attack if strongest else None,
        attack_auc=strongest.auc if strongest else None,
        attack_auc_ci95=strongest.auc_ci95 if strongest else None,
        attack_tpr_at_1pct_fpr=mia.max_tpr_at_1pct_fpr if isinstance(mia, MembershipInference) else None,
        exact_copy_rate=priv.exact_copies.exact_copy_rate,
        dcr_share_closer_to_train=priv.dcr.share_closer_to_train,
        max_added_risk=highest.added_risk if highest else None,
        max_added_risk_ci95=highest.added_risk_ci95 if highest else None,
        max_added_risk_attack=f"{highest.attack}: {highest.detail}" if highest else None,
    )


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _timed_risks(args: tuple, one_thread: bool) -> tuple[Risks, float]:
    """:func:`risks` and its seconds; on one thread beside the other sections, which have the other core."""
    start = time.perf_counter()
    with threadpool_limits(limits=1 if one_thread else None):
        return risks(*args), time.perf_counter() - start


class _RisksBeside:
    """The risks section in a second (spawned) process, or here when ``enabled`` is false or that
    process cannot be had; the same numbers either way, every attack being seeded by its arguments."""

    def __init__(self, args: tuple, enabled: bool) -> None:
        self._args = args
        self._pool: ProcessPoolExecutor | None = None
        self._future: Future | None = None
        if enabled:
            try:
                self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
                self._future = self._pool.submit(_timed_risks, args, True)
            except (OSError, BrokenProcessPool):
                self.close()

    def result(self) -> tuple[Risks, float]:
        if self._future is not None:
            try:
                return self._future.result()  # an error of the attacks themselves is raised as it is
            except BrokenProcessPool:  # the process died: the section runs here instead
                pass
            finally:
                self.close()
        return _timed_risks(self._args, False)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool, self._future = None, None


def evaluate(real: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema,
             target: str | None = None, guarantee: dict | None = None, seed: int = 0,
             sensitive: tuple[str, ...] | None = None, parallel: bool | None = None) -> JsonObject:
    """Compare ``synthetic`` with ``real`` (its training rows) and ``holdout`` (unseen real rows).

    Args:
        real: the rows the synthesizer was trained on (all institutions' rows together).
        holdout: real rows from the same population that the synthesizer never saw.
        synthetic: generated rows.
        schema: the public schema; its bounds (not the data's) scale distances.
        target: a categorical/boolean column to predict for the utility test, or None.
        guarantee: the model card's DP guarantee, e.g. ``{"clients": [{"client": "0",
            "epsilon": 0.99, "delta": 1e-5}], "accountant": "rdp", "mechanism": "DP-SGD"}``.
        seed: seeds every subsample, bootstrap and model, so reruns give identical numbers.
        sensitive: the columns an attribute-inference attack tries to guess (default: the target,
            if any; ``()`` runs none).
        parallel: run the risks section in a second process beside the others (default: from
            ``PARALLEL_MIN_ROWS`` training rows on a machine with two or more cores); same result.

    Returns a JSON-serialisable dict with ``summary``, ``fidelity``, ``detection``, ``utility``,
    ``privacy``, ``risks`` (:mod:`~fedsynth.evaluation.risks`), ``guarantee`` and ``meta`` (``meta.holdout_overlap``: holdout rows also in ``real``, with a
    ``warning`` when there are any). Raises ValueError on unusable input (missing columns, empty
    tables, unknown target or sensitive column, malformed guarantee), and ``OverlappingHoldout`` (a ``DataError``)
    when the holdout repeats more training rows than natural duplicates explain
    (:class:`~fedsynth.evaluation.overlap.HoldoutOverlap`), before any work is done.
    """
    start = time.perf_counter()
    if target is not None and target not in schema.names:
        raise ValueError(f"target {target!r} is not a schema column (columns: {schema.names})")
    if sensitive is None:
        sensitive = (target,) if target is not None else ()
    unknown = [c for c in sensitive if c not in schema.names]
    if unknown:
        raise ValueError(f"sensitive column(s) {unknown} are not schema columns (columns: {schema.names})")
    guarantee_info = describe_guarantee(guarantee)
    measured = measured_schema(schema)  # with each timestamp's time of day
    tables = {label: prepare(df, measured, label)
              for label, df in (("real", real), ("holdout", holdout), ("synthetic", synthetic))}
    overlap = holdout_overlap(tables["real"], tables["holdout"])
    overlap.check()
    seconds: dict[str, float] = {"prepare": time.perf_counter() - start}

    if parallel is None:
        parallel = len(real) >= PARALLEL_MIN_ROWS and _cores() >= 2
    beside = _RisksBeside((tables["real"], tables["holdout"], tables["synthetic"], measured,
                           tuple(dict.fromkeys(sensitive)), target, seed), enabled=parallel)
    try:
        fid, det, util, priv = _sections(tables, measured, target, seed, guarantee_info, seconds)
        risk, seconds["risks"] = beside.result()
    finally:
        beside.close()
    seconds["total"] = time.perf_counter() - start

    result = {
        "format": FORMAT,
        "summary": _summary(fid, det, util, priv, risk),
        "fidelity": fid,
        "detection": det,
        "utility": util,
        "privacy": priv,
        "risks": risk,
        "guarantee": guarantee_info,
        "meta": {
            "table": schema.name,
            "schema_hash": schema.hash(),
            "rows": {"real": len(real), "holdout": len(holdout), "synthetic": len(synthetic)},
            "holdout_overlap": dict(asdict(overlap), warning=overlap.warning),
            "target": target,
            "sensitive": list(sensitive),
            "seed": seed,
            "seconds": seconds,
            "versions": _versions(),
            "created_utc": datetime.now(UTC).replace(microsecond=0).isoformat(),
        },
    }
    return to_jsonable(result)


def _sections(tables: dict[str, PreparedTable], schema: Schema, target: str | None, seed: int,
              guarantee_info: JsonObject | None, seconds: dict[str, float]
              ) -> tuple[Fidelity, Detection, Utility | UtilitySkipped, Privacy]:
    """Fidelity, detection, utility and privacy, each timed into ``seconds``."""
    t = time.perf_counter()
    no_relations = tables["real"].independent_columns(seed)
    fid = fidelity(tables["real"], tables["synthetic"], schema, holdout=tables["holdout"], no_relations=no_relations)
    seconds["fidelity"] = time.perf_counter() - t

    t = time.perf_counter()
    det = detection(tables["real"], tables["holdout"], tables["synthetic"], no_relations, schema, seed)
    seconds["detection"] = time.perf_counter() - t

    t = time.perf_counter()
    if target is None:
        util: Utility | UtilitySkipped = UtilitySkipped(skipped="no target column was given")
    else:
        util = utility(tables["real"], tables["holdout"], tables["synthetic"], schema, target, seed)
    seconds["utility"] = time.perf_counter() - t

    t = time.perf_counter()
    priv = privacy(tables["real"], tables["holdout"], tables["synthetic"], schema, seed)
    if guarantee_info is not None:
        priv = replace(priv, compared_with_guarantee=compare_with_guarantee(priv.membership_inference, guarantee_info))
    seconds["privacy"] = time.perf_counter() - t
    return fid, det, util, priv


__all__ = ["evaluate", "write_report"]
