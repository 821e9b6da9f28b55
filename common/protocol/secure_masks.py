"""SecAgg+ with masks expanded by a CSPRNG keyed by the *full* shared secret.

Why: Flower 1.41's SecAgg+ expands every mask with ``pseudo_rand_gen``
(``flwr/common/secure_aggregation/secaggplus_utils.py``), which XOR-folds the secret into a
32-bit seed for numpy's Mersenne Twister. Anyone who sees masked vectors can therefore
search 2**32 seeds per mask, and two different secrets with the same fold give the same
mask. The ECDH keys and Shamir shares around it are sound; only the expansion is weak.

What this module changes, and nothing else: :func:`expand_masks` has
``pseudo_rand_gen``'s signature and semantics (secret, modulus, list of shapes -> int64
arrays in ``[0, modulus)``) but draws from ChaCha20 keyed by HKDF-SHA256 over all bytes of
the secret (:mod:`fedsynth.common.dp.rng`), uniform without modulo bias.

How it is wired in, with no Flower code copied and no global patch: Flower's client mod
(``flwr.client.mod.secure_aggregation.secaggplus_mod``) and server workflow
(``flwr.server.workflow.secure_aggregation.secaggplus_workflow``) look ``pseudo_rand_gen``
up as a module global at call time. :func:`_private_copy` executes each of those Flower
source files a second time into a *private* module object registered under a
fedsynth name, then rebinds ``pseudo_rand_gen`` in that copy only. Flower's own modules,
and anyone else using them in the same process, are untouched; the protocol, message
format, Shamir thresholds and dropout recovery are Flower's code, unchanged. Both sides
must use the same expansion or the masks do not cancel: fedsynth's ClientApp uses
:data:`secure_secaggplus_mod` and its coordinator :class:`SecureSecAggPlusWorkflow`.

If a Flower upgrade renames ``pseudo_rand_gen`` or stops calling it, :func:`_private_copy`
raises at import instead of silently falling back to the weak expansion.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any

import numpy as np

from fedsynth.common.dp.rng import ChaChaStream

MASK_INFO = b"fedsynth/secagg+/mask-expansion/v1"
_WEAK = "pseudo_rand_gen"


def expand_masks(seed: bytes, num_range: int, dimensions_list: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Expand ``seed`` into int64 arrays of the given shapes, uniform in ``[0, num_range)``.

    Drop-in for Flower's ``pseudo_rand_gen``. One keystream covers all arrays in order, so
    the same (seed, modulus, shapes) gives the same masks on every party.
    """
    stream = ChaChaStream.from_secret(bytes(seed), MASK_INFO + b"|" + str(int(num_range)).encode())
    out: list[np.ndarray] = []
    for shape in dimensions_list:
        size = int(np.prod(shape)) if len(shape) else 1
        values = stream.integers_below(int(num_range), size)
        out.append(np.array(values[0], dtype=np.int64) if len(shape) == 0 else values.reshape(shape))
    return out


def _private_copy(module_name: str) -> ModuleType:
    """Execute Flower's ``module_name`` again as a private module with the strong expansion."""
    original = importlib.import_module(module_name)
    if _WEAK not in vars(original):
        raise ImportError(f"{module_name} no longer imports {_WEAK}; re-check fedsynth.common.protocol.secure_masks "
                          "against this Flower version before using secure aggregation")
    users = [f for f in vars(original).values()
             if callable(f) and getattr(getattr(f, "__code__", None), "co_names", ())
             and _WEAK in f.__code__.co_names]
    users += [m for c in vars(original).values() if isinstance(c, type) and c.__module__ == module_name
              for m in vars(c).values() if _WEAK in getattr(getattr(m, "__code__", None), "co_names", ())]
    if not users:
        raise ImportError(f"nothing in {module_name} calls {_WEAK} any more; re-check fedsynth.common.protocol.secure_masks")
    spec = importlib.util.find_spec(module_name)
    assert spec is not None and spec.origin is not None
    # Registered under a fedsynth name (a child of this module), so that pickling the mod or
    # the workflow (Ray ships the ClientApp to its workers) re-imports this copy, not Flower's.
    private_name = f"{__name__}._{module_name.rsplit('.', 1)[1]}"
    copy_spec = importlib.util.spec_from_file_location(private_name, spec.origin)
    assert copy_spec is not None and copy_spec.loader is not None
    module = importlib.util.module_from_spec(copy_spec)
    module.__package__ = original.__package__  # Flower's relative imports resolve to Flower
    sys.modules[private_name] = module
    copy_spec.loader.exec_module(module)
    setattr(module, _WEAK, expand_masks)
    return module


_mod_module = _private_copy("flwr.client.mod.secure_aggregation.secaggplus_mod")
_workflow_module = _private_copy("flwr.server.workflow.secure_aggregation.secaggplus_workflow")

#: Flower's ``secaggplus_mod`` running in a module whose masks come from :func:`expand_masks`.
secure_secaggplus_mod: Any = _mod_module.secaggplus_mod

#: Flower's ``SecAggPlusWorkflow`` running in a module whose masks come from :func:`expand_masks`.
SecureSecAggPlusWorkflow: Any = _workflow_module.SecAggPlusWorkflow


def uses_secure_expansion(obj: Any) -> bool:
    """True if the mod function or workflow class ``obj`` expands masks with :func:`expand_masks`."""
    fn = obj if hasattr(obj, "__globals__") else next(m for m in vars(obj).values() if hasattr(m, "__globals__"))
    return fn.__globals__.get(_WEAK) is expand_masks
