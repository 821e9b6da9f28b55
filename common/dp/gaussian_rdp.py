"""One step of the subsampled Gaussian mechanism in RDP, remembered per (sigma, q, orders).

Opacus' RDP accountant recomputes every entry of a history at every order each time it is
asked (``opacus.accountants.analysis.rdp.compute_rdp``), and the subsampled orders are a series
each. A ledger repeats the same (sigma, q) round after round, and a noise calibration
re-accounts the same prior at every candidate sigma: in-process federated runs spent most of
their time there. RDP composes by addition, so ``steps`` times one step's curve is exactly
what Opacus returns for ``steps``; only the repetition is saved.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np


@functools.lru_cache(maxsize=4096)
def _step_rdp(noise_multiplier: float, sample_rate: float, orders: tuple[float, ...]) -> np.ndarray:
    # lazy: importing opacus loads torch (~2 s); accounting.py stays light for the CLI's argument checks
    from opacus.accountants.analysis.rdp import compute_rdp

    out = np.asarray(compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=list(orders)),
                     dtype=float)
    out.flags.writeable = False
    return out


def gaussian_rdp(noise_multiplier: float, sample_rate: float, steps: int, orders: Sequence[float]) -> np.ndarray:
    """RDP of ``steps`` subsampled Gaussian steps at each of ``orders``: Opacus' ``compute_rdp``."""
    return _step_rdp(float(noise_multiplier), float(sample_rate), tuple(orders)) * int(steps)
