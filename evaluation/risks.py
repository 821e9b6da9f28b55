"""Re-identification risks: the three of the EU's anonymisation opinion (WP29 05/2014), measured.

*Singling out* (:mod:`~fedsynth.evaluation.singling_out`), *linkability*
(:mod:`~fedsynth.evaluation.linkability`) and *inference* (:mod:`~fedsynth.evaluation.inference`),
each run on training rows and, as the control, on holdout rows, and reported as the risk the
synthetic data add over that baseline, with a 95 % interval (:mod:`~fedsynth.evaluation.added_risk`).
This is Anonymeter's method (Giomi et al., PETS 2023), implemented here because Anonymeter
cannot be installed beside this project's numpy 2 stack. Like the membership attacks, these
can show leakage, never prove its absence; the DP guarantee is the statement about all attacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fedsynth.common.data.schema import Schema
from fedsynth.evaluation.added_risk import RiskEstimate, simultaneous_level
from fedsynth.evaluation.inference import attribute_inference, model_inference
from fedsynth.evaluation.jsonable import OMIT_IF_NONE
from fedsynth.evaluation.linkability import default_halves, linkability
from fedsynth.evaluation.prepared import PreparedTable
from fedsynth.evaluation.singling_out import singling_out

MAX_TARGETS = 1_000
"""Training rows attacked, and as many holdout rows: enough for a ~±3 % interval, and fast."""


@dataclass(frozen=True, kw_only=True)
class Risks:
    """The ``risks`` section: every attack's added risk; a ``*_skipped`` reason where one did not run."""

    targets: int
    attribute_inference: list[RiskEstimate]
    attribute_inference_skipped: str | None = field(default=None, metadata=OMIT_IF_NONE)
    singling_out: RiskEstimate | None = field(default=None, metadata=OMIT_IF_NONE)
    singling_out_skipped: str | None = field(default=None, metadata=OMIT_IF_NONE)
    linkability: RiskEstimate | None = field(default=None, metadata=OMIT_IF_NONE)
    linkability_skipped: str | None = field(default=None, metadata=OMIT_IF_NONE)

    @property
    def estimates(self) -> list[RiskEstimate]:
        return [*self.attribute_inference, *(e for e in (self.singling_out, self.linkability) if e is not None)]

    @property
    def highest(self) -> RiskEstimate | None:
        """The attack with the largest added risk (the headline number), None when none ran."""
        return max(self.estimates, key=lambda e: e.added_risk, default=None)


def risks(real: PreparedTable, holdout: PreparedTable, synthetic: PreparedTable, schema: Schema,
          sensitive: tuple[str, ...], target: str | None, seed: int = 0) -> Risks:
    """All three attacks; ``sensitive`` names the inference targets, ``target`` is left out of linking.

    Attribute inference and linkability attack ``min(MAX_TARGETS, rows)`` training rows and as many
    holdout rows; singling out checks its predicates on the whole training set (up to 4 times the
    holdout's rows) and corrects the holdout's rate to that size.
    """
    rng = np.random.default_rng(seed)
    linkable = [c for c in schema.names if c != target]
    # every interval at the level that keeps all of them together at 95 % (added_risk.FAMILY_LEVEL)
    level = simultaneous_level(2 * len(sensitive) + 1 + int(len(linkable) >= 2))
    n = min(MAX_TARGETS, real.n_rows, holdout.n_rows)
    members = real.take(rng.choice(real.n_rows, n, replace=False))
    control = holdout.take(rng.choice(holdout.n_rows, n, replace=False))
    inferred = [attack(schema, synthetic, members, control, s, tuple(c for c in schema.names if c != s), rng, level)
                for s in sensitive for attack in (attribute_inference, model_inference)]
    single = singling_out(schema, synthetic, real, holdout, rng, level)
    link = (linkability(schema, synthetic, members, control, default_halves(linkable), rng, level=level)
            if len(linkable) >= 2 else None)
    return Risks(
        targets=n,
        attribute_inference=inferred,
        attribute_inference_skipped=None if sensitive else "no sensitive column and no target was given",
        singling_out=single,
        singling_out_skipped=None if single else "no predicate fitting exactly one synthetic row was found",
        linkability=link,
        linkability_skipped=None if link else "the table has fewer than two columns besides the target",
    )
