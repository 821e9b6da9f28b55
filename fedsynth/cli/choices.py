"""The CLI's choice options as enums: typer lists their values in ``--help`` and refuses any
other value with the allowed list, before a command runs.

The values are the library's own (``MODELS``, ``ACCOUNTANTS``, ``BINNINGS``, ``AGGREGATION_WEIGHTS``,
``PARTITIONS``), spelled out again here because those modules import torch, Opacus, Flower or
pandas, which the CLI loads only inside a command; tests/test_cli.py checks that they agree.
"""

from __future__ import annotations

from enum import Enum


class Model(str, Enum):
    """The generator (``fedsynth.common.model.tabular.MODELS``)."""

    VAE = "vae"
    GAN = "gan"


class Accountant(str, Enum):
    """The privacy accountant (``fedsynth.common.dp.accounting.ACCOUNTANTS``)."""

    RDP = "rdp"
    PRV = "prv"


class Binning(str, Enum):
    """Where a numerical column's bins lie (``fedsynth.common.model.tabular.BINNINGS``)."""

    MEASURED = "measured"
    SCHEMA = "schema"


class ClientWeighting(str, Enum):
    """How client updates are combined (``fedsynth.common.protocol.federation.AGGREGATION_WEIGHTS``)."""

    ROWS = "rows"
    EQUAL = "equal"


class Noise(str, Enum):
    """Where the DP noise of a federated run is added (``fedsynth.common.protocol.federation.NOISE_MODES``)."""

    LOCAL = "local"
    SHARED = "shared"


class Partition(str, Enum):
    """How simulate splits rows over institutions (``fedsynth.simulations.partition.PARTITIONS``)."""

    IID = "iid"
    DIRICHLET = "dirichlet"
    QUANTITY = "quantity"
    NATURAL = "natural"
