"""What every command group of the CLI uses: the consoles, the one error handler, shared options."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, Optional, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from fedsynth.common.data.schema import Schema
from fedsynth.common.errors import FedsynthError
from fedsynth.common.progress import StepProgress

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

# Options shared by the commands that read a bundled dataset or a user's table.
DataOption = Annotated[str, typer.Option(help="Bundled dataset name (adult, flights, taxi) or a CSV/Parquet path.")]
SchemaForDataOption = Annotated[Optional[Path], typer.Option(help="Schema JSON; required when --data is a file.")]
# A user's own table: --data, as every command names it; fit and schema draft/validate also take it
# as their first argument (how they first took it).
TableArgument = Annotated[Optional[Path], typer.Argument(help="The table (CSV or Parquet); same as --data.",
                                                        show_default=False)]
TableOption = Annotated[Optional[Path], typer.Option("--data", help="The table (CSV or Parquet).", show_default=False)]
# fit and simulate: the marginal fine-tune's steps (MarginalFitConfig.steps; stated here without importing torch)
FitStepsOption = Annotated[int, typer.Option(min=1, help="Adam steps of the generator's fine-tune to the measured marginals: post-processing, no privacy cost; wide tables may need more (docs/benchmarks.md).")]


def the_table(positional: Path | None, option: Path | None) -> Path:
    """The table given as the first argument or as ``--data`` (once)."""
    if positional is not None and option is not None and positional != option:
        raise FedsynthError(f"the table is given twice, as {positional} and as --data {option}; give it once")
    table = option or positional
    if table is None:
        raise FedsynthError("no table given: pass it as --data FILE")
    return table


# Every command with --out: an existing path is only ever an earlier output of the same command,
# replaced with this flag (see fedsynth.common.outputs); anything else there is refused.
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace what an earlier run of this command wrote at --out (never anything else).")]

P = ParamSpec("P")
R = TypeVar("R")


def fail(exc: Exception) -> NoReturn:
    """One red line on stderr and exit status 2."""
    # the message is text, not markup: a file name or an install line may hold [brackets]
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(2)


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """The one error handler: an error the user can fix (a FedsynthError: a bad file, an
    impossible privacy setting) becomes one clear line and status 2; anything else is a bug
    and keeps its traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except FedsynthError as exc:
            fail(exc)

    return run


# The optional dependencies of each pyproject extra that a command imports (the base install
# runs `fedsynth client`, the coordinator, fit, sample and split without them).
EXTRAS = {"simulation": ("ray", "flwr_datasets"), "report": ("sklearn", "matplotlib", "threadpoolctl")}


def need_extras(command: str, *extras: str) -> None:
    """Refuse ``command`` with the install line when an extra it needs is missing, before any work."""
    missing = []
    for extra in extras:
        try:
            for module in EXTRAS[extra]:
                importlib.import_module(module)
        except ImportError:
            missing.append(extra)
    if missing:
        spec = ",".join(missing)
        raise FedsynthError(f"`fedsynth {command}` needs the optional dependencies of fedsynth[{spec}]: "
                            f"pip install 'fedsynth[{spec}]' (or 'fedsynth[all]')")


def progress(label: str, total: int, plain_lines: int = 10) -> StepProgress:
    """``label k/N`` on the CLI's stderr console: a bar on a terminal, plain lines (no ANSI codes) elsewhere."""
    return StepProgress(label, total, console=err, plain_lines=plain_lines)


def load_schema(path: Path) -> Schema:
    """The schema given with ``--schema``."""
    return Schema.load(path)
