"""Schema drafting and checking, and demo silo files: what every party prepares first."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from fedsynth.cli.shared import (DataOption, OverwriteOption, SchemaForDataOption, TableArgument, TableOption, err,
                                 load_schema, out, the_table)

# lazy: each command imports what it runs (pandas, torch, Flower, cryptography) inside its function,
# so that `fedsynth --help` and the other commands do not load it.


def schema_draft(
    table: TableArgument = None,
    data: TableOption = None,
    name: Annotated[str, typer.Option(help="Name recorded in the schema.")] = "table",
    from_sdv: Annotated[Optional[Path], typer.Option(
        "--from-sdv", help="SDV single-table metadata to follow for column types (left unchanged).")] = None,
) -> None:
    """Propose a schema from a local table; prints JSON on stdout, warnings on stderr.

    Bounds and category lists read off private rows must be coarsened or replaced with public
    knowledge before the schema is shared with other parties.
    """
    from fedsynth.common.data.schema_draft import draft_file

    draft = draft_file(the_table(table, data), name=name, sdv=from_sdv)
    for w in draft.warnings:
        err.print(f"[yellow]warning:[/] {w}", highlight=False)
    sys.stdout.write(draft.schema.dumps() + "\n")


def schema_validate(
    schema: Annotated[Path, typer.Option("--schema", "-s", help="Schema JSON (fedsynth or SDV metadata).")],
    table: TableArgument = None,
    data: TableOption = None,
) -> None:
    """Check a table against the schema; list every violation with file, column, row, value."""
    from fedsynth.common.data.tables import validate_file

    data = the_table(table, data)
    sch = load_schema(schema)
    report = validate_file(data, sch)
    if report.ok:
        out.print(f"[green]ok[/]: {data} matches {schema} ({report.rows} rows, {len(sch.columns)} columns, "
                  f"schema hash {sch.hash()})")
        return
    for v in report.violations:
        err.print(str(v), highlight=False, markup=False)
    more = " (stopped counting)" if report.truncated else ""
    err.print(f"[red]{len(report.violations)} violation(s){more}[/]")
    raise typer.Exit(1)


def split(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for schema.json and client-<i>.csv.")],
    data: DataOption = "adult",
    schema: SchemaForDataOption = None,
    clients: Annotated[int, typer.Option(min=1, help="Number of silo files.")] = 3,
    rows: Annotated[int, typer.Option("--rows-per-silo", min=1, help="Rows in each silo file (--rows is synthetic rows elsewhere).")] = 400,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    overwrite: OverwriteOption = False,
) -> None:
    """Cut disjoint demo silo files out of a table, to try a deployment on one machine."""
    from fedsynth.simulations.silos import SiloRequest, write_silos

    paths = write_silos(SiloRequest(out_dir=out_dir, data=data, schema=str(schema) if schema else None,
                                    clients=clients, rows=rows, seed=seed, overwrite=overwrite))
    out.print(f"[green]wrote[/] {out_dir / 'schema.json'} and {len(paths)} silos of {rows} rows", highlight=False)
