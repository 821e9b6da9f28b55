"""An RDP curve as (epsilon, delta): Opacus' conversion, without its warning to the user.

``opacus.accountants.analysis.rdp.get_privacy_spent`` warns when the best order is the smallest
one searched. The bound there is still an upper bound, if a loose one, and a noise calibration's
first probes (little noise for many steps, an epsilon far above any target) land there: the
warning was printed in ``simulate`` runs and said nothing about the plan they got.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

SMALLEST_ORDER_WARNING = "Optimal order is the smallest alpha"


def rdp_epsilon(orders: Sequence[float], rdp: np.ndarray, delta: float) -> float:
    """epsilon at ``delta`` of the RDP curve ``rdp`` (its value at each of ``orders``), as Opacus converts it."""
    # lazy: importing opacus loads torch (~2 s); accounting.py stays light for the CLI's argument checks
    from opacus.accountants.analysis.rdp import get_privacy_spent

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=SMALLEST_ORDER_WARNING, category=UserWarning)
        return float(get_privacy_spent(orders=list(orders), rdp=rdp, delta=delta)[0])
