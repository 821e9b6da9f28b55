"""Split a table into institution silos, using flwr-datasets' partitioners.

The split runs on the simulation host only; it stands in for how real institutions'
tables differ (IID, label skew, quantity skew, a natural key such as a region).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from fedsynth.common.errors import FedsynthError

PARTITIONS = ("iid", "dirichlet", "quantity", "natural")


def partition(df: pd.DataFrame, scheme: str, clients: int, *, label: str | None = None, alpha: float = 0.5,
              column: str | None = None, seed: int = 0, min_rows: int = 50) -> list[pd.DataFrame]:
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datasets import Dataset
    from flwr_datasets.partitioner import (
        DirichletPartitioner,
        IidPartitioner,
        LinearPartitioner,
        NaturalIdPartitioner,
    )

    if scheme not in PARTITIONS:
        raise FedsynthError(f"unknown partition {scheme!r}; choose one of {PARTITIONS}")
    frame = df.reset_index(drop=True).copy()
    frame["__row__"] = np.arange(len(frame))
    if scheme == "iid":
        part = IidPartitioner(num_partitions=clients)
    elif scheme == "dirichlet":
        if not label or label not in frame:
            raise FedsynthError("--partition dirichlet needs --label COLUMN (a column of the table)")
        frame["__key__"] = frame[label].astype(str)
        part = DirichletPartitioner(num_partitions=clients, partition_by="__key__", alpha=alpha,
                                    min_partition_size=min_rows, self_balancing=False, seed=seed)
    elif scheme == "quantity":
        part = LinearPartitioner(num_partitions=clients)
    else:
        if not column or column not in frame:
            raise FedsynthError("--partition natural needs --column COLUMN (a column of the table)")
        frame["__key__"] = frame[column].astype(str)
        part = NaturalIdPartitioner(partition_by="__key__")
    keep = ["__row__"] + (["__key__"] if "__key__" in frame else [])
    ds = Dataset.from_pandas(frame[keep], preserve_index=False)
    if scheme in ("iid", "quantity"):
        ds = ds.shuffle(seed=seed)
    part.dataset = ds
    silos = []
    for i in range(part.num_partitions):
        rows = np.asarray(part.load_partition(i)["__row__"], dtype=np.int64)
        silos.append(df.iloc[np.sort(rows)].reset_index(drop=True))
    if scheme == "natural" and clients and clients != len(silos):
        raise FedsynthError(f"column {column!r} has {len(silos)} distinct values, so a natural split gives "
                            f"{len(silos)} institutions, not {clients}; omit --clients or pick another column")
    return silos


def holdout_split(df: pd.DataFrame, fraction: float = 0.2, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout): the holdout exists only in simulation and no client ever sees it."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(df))
    cut = int(round(len(df) * (1 - fraction)))
    return df.iloc[np.sort(perm[:cut])].reset_index(drop=True), df.iloc[np.sort(perm[cut:])].reset_index(drop=True)
