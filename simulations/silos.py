"""Demo silo files for trying a real deployment on one machine (``fedsynth split``).

In a real federation each institution already has its own table; this only stands in for
them, cutting disjoint random samples out of a bundled public table (or a CSV/Parquet file
with its schema), so that the deployment walkthrough and its test need no private data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedsynth.common.data.cells import with_ids
from fedsynth.common.data.tables import write_table
from fedsynth.common.errors import FedsynthError
from fedsynth.common.outputs import SILO_FOLDER, replace_dir
from fedsynth.simulations.datasets import load_dataset


@dataclass(frozen=True)
class SiloRequest:
    out_dir: Path
    data: str = "adult"
    schema: str | None = None
    clients: int = 3
    rows: int = 400  # rows per institution
    seed: int = 0
    overwrite: bool = False  # replace the silos of an earlier `fedsynth split` in out_dir


def write_silos(req: SiloRequest) -> list[Path]:
    """``<out>/schema.json`` and ``<out>/client-<i>.csv`` (disjoint samples); returns the tables.

    The folder is written whole, with the rules of :func:`fedsynth.common.outputs.replace_dir`.
    """
    if req.clients < 1:
        raise FedsynthError(f"--clients {req.clients}: must be at least 1")
    if req.rows < 1:
        raise FedsynthError(f"--rows {req.rows}: must be at least 1")
    df, schema, _ = load_dataset(req.data, req.schema)
    need = req.clients * req.rows
    if need > len(df):
        raise FedsynthError(f"--clients {req.clients} x --rows {req.rows} = {need} rows, but {req.data} has {len(df)}")
    picked = df.sample(need, random_state=req.seed).reset_index(drop=True)
    out = Path(req.out_dir)
    with replace_dir(out, SILO_FOLDER, overwrite=req.overwrite, option="--out") as new:
        schema.save(new / "schema.json")
        for i in range(req.clients):  # typed rows hold no ids: fresh ones, distinct across the silos
            rows = picked.iloc[i * req.rows:(i + 1) * req.rows].reset_index(drop=True)
            write_table(with_ids(rows, schema, start=i * req.rows), new / f"client-{i + 1}.csv", schema=schema)
    return [out / f"client-{i + 1}.csv" for i in range(req.clients)]
