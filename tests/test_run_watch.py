"""Following a submitted run (server/run_watch.py): the loop `fedsynth coordinator` and
`fedsynth simulate` share, with the SuperLink and its processes replaced by stand-ins."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

from fedsynth.common.deploy.flwr_cli import FlwrCli
from fedsynth.server.events import EventTail
from fedsynth.server.run_watch import follow_run


class _Link(FlwrCli):
    """A SuperLink whose run reports ``status`` once ``finished_after`` status asks were made."""

    def __init__(self, status: str = "finished:completed", finished_after: int = 0) -> None:
        super().__init__({}, Path("."), "local")
        self.asked, self.final, self.finished_after = [], status, finished_after

    def status(self, run_id: str) -> tuple[str, str]:
        self.asked.append(time.time())
        return (self.final, "details") if len(self.asked) > self.finished_after else ("running", "")


class _Children:
    def __init__(self, dead=None) -> None:
        self.dead = dead

    def exited(self):
        return self.dead


def _events(tmp_path: Path, *events: dict) -> EventTail:
    path = tmp_path / "events.jsonl"
    path.write_text("")
    tail = EventTail(path)
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return tail


def test_a_finished_run_is_asked_about_soon_after_its_last_event_and_every_event_is_given(tmp_path):
    seen = []
    link = _Link()
    start = time.time()
    end = follow_run(link, "1", _events(tmp_path, {"event": "round_done", "round": 1}, {"event": "finished"}),
                     _Children(), seen.append, quiet_s=60, poll_s=0.01)
    assert end.completed and end.status == "finished:completed"
    assert [e["event"] for e in seen] == ["round_done", "finished"]
    assert len(link.asked) == 1 and link.asked[0] - start < 10  # not after the 60 s quiet wait


def test_a_serverapp_failure_is_not_a_completed_run_even_if_flower_says_completed(tmp_path):
    end = follow_run(_Link(), "1", _events(tmp_path, {"event": "failed", "reason": "schema hash mismatch"}),
                     _Children(), lambda ev: None, quiet_s=60, poll_s=0.01)
    assert not end.completed and end.failure == "schema hash mismatch"


def test_a_silent_run_is_asked_about_after_the_quiet_time_and_a_dead_process_ends_the_watch(tmp_path):
    link = _Link("finished:failed", finished_after=1)  # running, then failed without an event
    end = follow_run(link, "1", _events(tmp_path), _Children(), lambda ev: None, quiet_s=0.05, poll_s=0.01)
    assert end.status == "finished:failed" and not end.completed and len(link.asked) == 2
    dead = SimpleNamespace(name="SuperLink")
    end = follow_run(_Link(), "1", _events(tmp_path), _Children(dead), lambda ev: None, quiet_s=60, poll_s=0.01)
    assert end.dead is dead and not end.completed


def test_a_run_past_its_time_limit_ends_the_watch_as_timed_out(tmp_path):
    link = _Link(finished_after=10**6)
    end = follow_run(link, "1", _events(tmp_path), _Children(), lambda ev: None, quiet_s=0.02, timeout_s=0.2,
                     poll_s=0.01)
    assert end.timed_out and not end.completed and end.status == ""
