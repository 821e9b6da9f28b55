"""An institution trains only under the SecAgg+ terms its plan was accounted for.

The fit instruction states the plan and a clipping range; SecAgg+'s own setup message,
earlier in the same round, states the terms the masking actually runs with (reconstruction
threshold, clipping and quantisation ranges, mask modulus). Both come from the coordinator,
so nothing makes them agree unless the institution checks. Under shared noise the
disagreement is a privacy matter, not a quality one:

* a threshold below the plan's K_min would let SecAgg+ unmask a round carrying fewer noise
  shares than the epsilon against the coordinator plus T colluders assumes;
* a clipping range, quantisation or modulus other than the field's changes each share before
  it is summed, so the coordinator no longer sees the accounted Skellam sum.

:func:`secagg_terms_mod` sits inside Flower's SecAgg+ mod and refuses such a fit before
the client trains or charges anything. Under local noise it checks only that the update is
packed for the clipping range the masking uses (a mismatch would clip it, not leak).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flwr.app import Context, Message
from flwr.app.message_type import MessageType
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_STATE
from flwr.compat.common import recorddict_compat as compat

from fedsynth.common.errors import FedsynthError
from fedsynth.common.protocol.federation import FIELD_CLIPPING_RANGE, FIELD_QUANTIZATION_RANGE
from fedsynth.common.protocol.messages import FitConfig


def secagg_terms_problem(fit: FitConfig, terms: Mapping[str, Any]) -> str | None:
    """Why ``fit`` must not run under the SecAgg+ ``terms`` (Flower's mod state), or None."""
    clipping, threshold = float(terms.get("clipping_range", 0.0)), int(terms.get("threshold", 0))
    if clipping != fit.clipping_range:
        return (f"SecAgg+ runs with clipping range {clipping:g}, the fit instruction says {fit.clipping_range:g}")
    shared = fit.plan.shared_noise
    if shared is None:
        return None
    if threshold < shared.min_contributors:
        return (f"SecAgg+'s reconstruction threshold {threshold} is below the plan's min_contributors "
                f"{shared.min_contributors}: a round with fewer noise shares could be unmasked")
    quantization, modulus = int(terms.get("target_range", 0)), int(terms.get("mod_range", 0))
    if clipping != FIELD_CLIPPING_RANGE or quantization != FIELD_QUANTIZATION_RANGE:
        return (f"SecAgg+ quantises [-{clipping:g}, {clipping:g}] to {quantization} levels; shared noise needs "
                f"[-{FIELD_CLIPPING_RANGE:g}, {FIELD_CLIPPING_RANGE:g}] to {FIELD_QUANTIZATION_RANGE}, so that each "
                f"share passes unchanged")
    if modulus <= 0 or modulus % FIELD_QUANTIZATION_RANGE:
        return (f"SecAgg+'s mask modulus {modulus} is not a multiple of the field's {FIELD_QUANTIZATION_RANGE}: "
                f"the unmasked sum would not be the sum of the shares")
    return None


def secagg_terms_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Client mod, placed after Flower's SecAgg+ mod: refuse a fit whose plan the SecAgg+ terms
    of this round break (:func:`secagg_terms_problem`), before anything is trained or charged."""
    terms = ctxt.state.config_records.get(RECORD_KEY_STATE)
    if msg.metadata.message_type != MessageType.TRAIN or terms is None:
        return call_next(msg, ctxt)
    fit = FitConfig.from_config(compat.recorddict_to_fitins(msg.content, keep_input=True).config)
    problem = secagg_terms_problem(fit, terms)
    if problem is not None:
        raise FedsynthError(f"refusing round {fit.round}: {problem}")
    return call_next(msg, ctxt)
