"""Following one submitted Flower run to its end: its events as they come, then how it ended.

``flwr run`` reports success even when the ServerApp fails, and a ServerApp that dies may write
no last event, so the SuperLink's status decides. Each ask is a ``flwr ls`` (a process start,
costly on 2 cores): it is made soon after the ServerApp's last event (the status may lag a
moment) and otherwise only when no event came for ``quiet_s``. ``fedsynth coordinator`` and
``fedsynth simulate`` both follow their runs with :func:`follow_run` and differ only in what
they make of the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from fedsynth.common.deploy.flwr_cli import FlwrCli
from fedsynth.common.deploy.processes import Child, Supervisor
from fedsynth.server.events import EVENT, Event, EventKind, EventTail

AFTER_END_S = 1.0  # the status is asked this soon after the ServerApp's finished/failed event


@dataclass(frozen=True)
class RunEnd:
    """How a followed run ended: by its status, a child process exiting first, or the time limit."""

    status: str = ""  # the SuperLink's, e.g. ``finished:completed``; empty when it never finished
    details: str = ""  # the status's details
    failure: str | None = None  # the reason in the ServerApp's own ``failed`` event
    dead: Child | None = None  # a Flower process of ours that exited before the run ended
    timed_out: bool = False

    @property
    def completed(self) -> bool:
        return self.status == "finished:completed" and self.failure is None and self.dead is None


def follow_run(flwr: FlwrCli, run_id: str, events: EventTail, children: Supervisor,
               on_event: Callable[[Event], None], quiet_s: float, timeout_s: float | None = None,
               poll_s: float = 0.25) -> RunEnd:
    """Give every new event to ``on_event`` until the run has finished, one of ``children``
    exited, or ``timeout_s`` passed (the run is then still going: the caller decides)."""
    deadline = None if timeout_s is None else time.time() + timeout_s
    last_check = last_event = time.time()
    ended, failure = False, None

    def new_events() -> None:
        nonlocal ended, failure, last_event
        for ev in events.new():
            on_event(ev)
            last_event = time.time()
            if ev.get(EVENT) == EventKind.FAILED:
                failure = str(ev.get("reason"))
            ended = ended or ev.get(EVENT) in (EventKind.FINISHED, EventKind.FAILED)

    while True:
        new_events()
        if (dead := children.exited()) is not None:
            return RunEnd(failure=failure, dead=dead)
        now = time.time()
        if now >= (last_check + AFTER_END_S if ended else max(last_check, last_event) + quiet_s):
            last_check = now
            status, details = flwr.status(run_id)
            if status.startswith("finished"):
                new_events()  # whatever the ServerApp wrote last
                return RunEnd(status, details, failure)
        if deadline is not None and now > deadline:
            return RunEnd(failure=failure, timed_out=True)
        time.sleep(poll_s)
