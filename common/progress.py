"""Progress for people, on stderr: the CLI's commands and the Python API's ``verbose=True`` share it.

:class:`StepProgress` follows a job of N steps (DP-SGD steps, federated rounds). On a terminal it
is a rich bar redrawn in place: "round k/N", the bar, the time elapsed, the time left (estimated
from the steps seen so far) and the latest status (coarse facts: contributors, epsilon so far);
:meth:`StepProgress.line` prints a line above it. Anywhere else (a pipe, CI, a log file) nothing
is redrawn: plain lines only, with no ANSI codes and no carriage returns, a few over the job
rather than one per step. stdout stays free for results (and piped JSON).
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

UNKNOWN = "time left unknown"
REDRAW_SECONDS = 0.1  # an update redraws the bar at once if a step completed, its status changed or this long has passed


def duration(seconds: float) -> str:
    """``45s``, ``3 min``, ``1 h 05 min``: a time as people read it."""
    if seconds < 90:
        return f"{seconds:.0f}s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def is_live(console: Console) -> bool:
    """Whether ``console`` can redraw a bar in place: rich's interactive (a terminal, not a dumb
    one; ``TTY_INTERACTIVE=0`` or ``1`` decides otherwise)."""
    return console.is_interactive


class StepProgress:
    """``label k/N`` with the time elapsed and left: a rich bar on a terminal, a few plain lines elsewhere.

    ``update(done, status)`` after each step (``done`` counts steps completed). The time left is
    estimated from the steps completed since the first update (so a resumed job's earlier steps,
    or a slow start before the first step, do not skew it). ``plain_lines``: how many progress
    lines a non-terminal gets over the whole job (the last step's always among them); 0 prints
    none (the caller prints its own lines through :meth:`line`).
    """

    def __init__(self, label: str, total: int, console: Console | None = None, *, plain_lines: int = 10) -> None:
        self.label, self.total = label, max(int(total), 1)
        self.console = console or Console(stderr=True)
        self.live = is_live(self.console)
        self.plain_lines = plain_lines
        self.done, self.status = 0, ""
        self._first: tuple[float, int] | None = None  # (time, done) at the first update
        self._started = time.monotonic()
        self._every = -(-self.total // plain_lines) if plain_lines > 0 else 0  # ceil: at most plain_lines lines
        self._next_line = min(self._every, self.total)  # the next step count that earns a plain line
        self._bar: Progress | None = None
        self._drawn = 0.0  # when the bar was last redrawn by an update
        self._closed = False
        self._task = None

    # ---------------------------------------------------------------- context
    def __enter__(self) -> StepProgress:
        self._started = time.monotonic()
        return self

    def _start_bar(self) -> None:
        """The bar appears at the first update, so that a job refused before its first step leaves none."""
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                             TextColumn("{task.fields[left]}"), TextColumn("{task.fields[status]}"),
                             console=self.console, transient=False)
        self._task = self._bar.add_task(self._described(), total=self.total, left=UNKNOWN, status="")
        self._bar.tasks[0].start_time = self._bar.get_time() - (time.monotonic() - self._started)  # the job's
        self._bar.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop the bar (idempotent): rich draws one live bar at a time, so a job's next phase
        closes this one before its own bar starts."""
        self._closed = True
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    # ---------------------------------------------------------------- reporting
    def _described(self) -> str:
        return f"{self.label} {self.done}/{self.total}"

    def seconds_left(self) -> float | None:
        """The time left at the pace of the steps completed since the first update (None: unknown yet)."""
        if self._first is None:
            return None
        t0, done0 = self._first
        if self.done <= done0:
            return None
        return (self.total - self.done) * (time.monotonic() - t0) / (self.done - done0)

    def left(self) -> str:
        """``about 3 min left``, ``done`` or :data:`UNKNOWN`."""
        if self.done >= self.total:
            return "done"
        secs = self.seconds_left()
        return UNKNOWN if secs is None else f"about {duration(secs)} left"

    def update(self, done: int, status: str | None = None) -> None:
        """``done`` steps completed; ``status``: the latest coarse facts (shown beside the bar; None keeps them)."""
        if self._first is None:
            self._first = (time.monotonic(), int(done))
        status = self.status if status is None else status
        done = min(int(done), self.total)
        # a step completed or new facts: drawn at once, so that every step's line reaches the
        # terminal even when updates come in a burst (a poller catching up under load)
        changed = status != self.status or done != self.done
        self.done, self.status = done, status
        if self.live and self._bar is None and not self._closed:
            self._start_bar()
        if self._bar is not None:
            now = time.monotonic()
            redraw = changed or self.done >= self.total or now - self._drawn >= REDRAW_SECONDS
            self._bar.update(self._task, completed=self.done, description=self._described(), left=self.left(),
                             status=status, refresh=redraw)
            if redraw:
                self._drawn = now
        elif self._every and self.done >= self._next_line:
            following = min((self.done // self._every + 1) * self._every, self.total)
            self._next_line = self.total + 1 if self.done >= self.total else following  # the last line once
            elapsed = duration(time.monotonic() - self._started)
            self.line(f"{self._described()}, {elapsed} elapsed, {self.left()}" + (f": {status}" if status else ""))

    def line(self, text: str) -> None:
        """One line of text: above the bar on a terminal, plain (no markup, no colour) elsewhere."""
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)
