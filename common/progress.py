"""Progress bars on stderr: the CLI's commands and the Python API's ``verbose=True`` share one look."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)


def progress_bar(description: str, console: Console | None = None) -> Progress:
    """A bar with done/total and the time left; stdout stays free for results (and piped JSON)."""
    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console or Console(stderr=True), transient=False)
