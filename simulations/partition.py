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
_ALPHA_GRID = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)  # tried when a Dirichlet split fails


def partition(df: pd.DataFrame, scheme: str, clients: int, *, label: str | None = None, alpha: float = 0.5,
              column: str | None = None, seed: int = 0, min_rows: int = 50) -> list[pd.DataFrame]:
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # lazy: `datasets` reads the HF_*_OFFLINE switches once, when imported: after they are set just above
    from datasets import Dataset
    from flwr_datasets.partitioner import IidPartitioner, LinearPartitioner, NaturalIdPartitioner

    if scheme not in PARTITIONS:
        raise FedsynthError(f"unknown partition {scheme!r}; choose one of {PARTITIONS}")
    frame = df.reset_index(drop=True).copy()
    frame["__row__"] = np.arange(len(frame))
    if scheme == "iid":
        part = IidPartitioner(num_partitions=clients)
    elif scheme == "dirichlet":
        if not label or label not in frame:
            raise FedsynthError("--partition dirichlet needs --label COLUMN (a column of the table)")
        frame["__key__"] = frame[label].astype(str)  # partitioned below: the split may be impossible
    elif scheme == "quantity":
        part = LinearPartitioner(num_partitions=clients)
    else:
        if not column or column not in frame:
            raise FedsynthError("--partition natural needs --column COLUMN (a column of the table)")
        frame["__key__"] = frame[column].astype(str)
        part = NaturalIdPartitioner(partition_by="__key__")
    keep = ["__row__"] + (["__key__"] if "__key__" in frame else [])
    ds = Dataset.from_pandas(frame[keep], preserve_index=False)
    if scheme in ("iid", "quantity", "dirichlet"):
        # flwr-datasets' Dirichlet partitioner hands each label's rows out in table order: on a
        # table sorted by time (flights) every institution got a period of its own as well as
        # its label mix. Shuffled first, the silos differ only in what the scheme says.
        ds = ds.shuffle(seed=seed)
    if scheme == "dirichlet":
        part = _dirichlet(ds, clients, alpha, seed, min_rows, label)
    else:
        part.dataset = ds
    silos = []
    for i in range(part.num_partitions):
        # an Arrow column, whole: a `datasets` column turns into an array one row at a time
        rows = part.load_partition(i).with_format("arrow")["__row__"].to_numpy().astype(np.int64)
        silos.append(df.iloc[np.sort(rows)].reset_index(drop=True))
    if scheme == "natural" and clients and clients != len(silos):
        raise FedsynthError(f"column {column!r} has {len(silos)} distinct values, so a natural split gives "
                            f"{len(silos)} institutions, not {clients}; omit --clients or pick another column")
    return silos


def _dirichlet(ds, clients: int, alpha: float, seed: int, min_rows: int, label: str):
    """flwr-datasets' Dirichlet partitioner, split drawn; a clear error when ``alpha`` is too small.

    The partitioner redraws up to 10 times until every institution has ``min_rows`` rows; with
    very small alpha each label lands almost entirely on one institution, so with more
    institutions than labels that never happens. The error names the smallest alpha on a
    grid that does work for this table, number of institutions and seed.
    """
    part = _try_dirichlet(ds, clients, alpha, seed, min_rows)
    if part is not None:
        return part
    works = next((a for a in _ALPHA_GRID if a > alpha and _try_dirichlet(ds, clients, a, seed, min_rows)), None)
    hint = (f"the smallest --alpha that works here (this table, {clients} institutions, --seed {seed}) is "
            f"{works:g}; larger values split more evenly" if works is not None
            else f"no --alpha up to {_ALPHA_GRID[-1]:g} works with {clients} institutions: use fewer --clients")
    raise FedsynthError(f"--alpha {alpha:g}: the Dirichlet split by --label {label} cannot give each of {clients} "
                        f"institutions at least {min_rows} rows (smaller alpha = more skew: some institutions get "
                        f"almost nothing); {hint}")


def _try_dirichlet(ds, clients: int, alpha: float, seed: int, min_rows: int):
    from flwr_datasets.partitioner import DirichletPartitioner  # lazy: after partition() set HF_*_OFFLINE

    part = DirichletPartitioner(num_partitions=clients, partition_by="__key__", alpha=alpha,
                                min_partition_size=min_rows, self_balancing=False, seed=seed)
    part.dataset = ds.with_format("arrow")  # the labels read whole (see partition())
    try:
        part.num_partitions  # draws the split (raises ValueError after its attempts)
    except ValueError:
        return None
    return part


def holdout_split(df: pd.DataFrame, fraction: float = 0.2, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout): the holdout exists only in simulation and no client ever sees it."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(df))
    cut = int(round(len(df) * (1 - fraction)))
    return df.iloc[np.sort(perm[:cut])].reset_index(drop=True), df.iloc[np.sort(perm[cut:])].reset_index(drop=True)
