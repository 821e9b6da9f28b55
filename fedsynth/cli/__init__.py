"""The ``fedsynth`` command line: one entry point, one module per command group.

Every command is registered here, behind the one error handler (:func:`shared.user_errors`):
errors a user can fix (bad files, impossible privacy settings) are printed as one clear
message and exit with status 2; anything else is a bug and keeps its traceback. Command
modules import their heavy dependencies (torch, Flower) inside the command, so that
``fedsynth --help`` stays quick.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from fedsynth.cli import data, deploy, report, simulate, synthesize
from fedsynth.cli.shared import out, user_errors
from fedsynth.common.version import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Federated, differentially private synthetic data.")
schema_app = typer.Typer(no_args_is_help=True, help="Draft and check the shared public schema.")
app.add_typer(schema_app, name="schema")


def _print_version(value: bool) -> None:
    if value:
        out.print(f"fedsynth {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the installed fedsynth version and exit.")] = False,
) -> None:
    """Options that come before any command."""


def _register(group: typer.Typer, command: Callable, name: str | None = None) -> None:
    group.command(name)(user_errors(command))


_register(schema_app, data.schema_draft, "draft")
_register(schema_app, data.schema_validate, "validate")
_register(app, synthesize.fit)
_register(app, synthesize.sample)
_register(app, synthesize.lineage)
_register(app, report.evaluate)
_register(app, simulate.simulate)
_register(app, deploy.certs)
_register(app, deploy.keys)
_register(app, data.split)
_register(app, deploy.coordinator)
_register(app, deploy.client)


def main() -> None:
    app()
