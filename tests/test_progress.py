"""Progress for people (common/progress.py, issue 17): a rich bar on a terminal (k/N, elapsed,
time left, the latest facts); anywhere else a few plain lines with no ANSI codes and no redraws."""

import io

import pytest
from rich.console import Console

from fedsynth.common import progress as progress_module
from fedsynth.common.progress import StepProgress
from fedsynth.simulations.driver import _event_printer

ANSI = "\x1b["


class Clock:
    t = 0.0

    def monotonic(self) -> float:
        return self.t


@pytest.fixture()
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(progress_module, "time", fake)
    return fake


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    # force_interactive: the fake terminal redraws whatever TERM the test machine has
    return Console(file=buf, force_terminal=terminal, force_interactive=terminal, width=200), buf


def test_a_terminal_gets_a_bar_with_round_k_of_n_its_time_left_and_the_latest_facts(clock):
    c, buf = console(terminal=True)
    with StepProgress("round", 3, c, plain_lines=0) as bar:
        bar.line("3 institutions")
        bar.update(0)
        clock.t = 60
        bar.update(1, "3 updates securely aggregated; epsilon spent up to 0.41")
        clock.t = 120
        bar.update(2, "3 updates securely aggregated; epsilon spent up to 0.62")
        screen = buf.getvalue().split("\r")  # the bar is redrawn in place
        now = [s for s in screen if "round 2/3" in s]
        assert now, screen
        assert "about 60s left" in now[-1] and "epsilon spent up to 0.62" in now[-1]
        assert ANSI in buf.getvalue()
    assert buf.getvalue().startswith("3 institutions\n")  # a line, and the bar only from the first update


def test_every_completed_step_is_drawn_even_in_a_burst_with_the_same_facts(clock):
    """A poller that falls behind (a loaded machine) feeds several rounds at once, with the same
    facts and no time between them: each round's line still reaches the terminal."""
    c, buf = console(terminal=True)
    facts = "2 updates securely aggregated; epsilon spent up to 1"
    with StepProgress("round", 4, c, plain_lines=0) as bar:
        bar.update(0)
        clock.t = 30
        for done in (1, 2, 3):
            bar.update(done, facts)
        frames = buf.getvalue().split("\r")
        for done in (1, 2, 3):
            assert any(f"round {done}/4" in f and facts in f and "left" in f for f in frames), (done, frames)


def test_elsewhere_a_few_plain_lines_without_ansi_codes_or_redraws(clock):
    c, buf = console(terminal=False)
    with StepProgress("DP-SGD step", 100, c, plain_lines=5) as bar:
        bar.update(0)
        for k in range(1, 101):
            clock.t = k
            bar.update(k)
        bar.update(100)  # the last line once
    text = buf.getvalue()
    assert ANSI not in text and "\r" not in text
    lines = text.splitlines()
    assert [line.split(",")[0] for line in lines] == [f"DP-SGD step {k}/100" for k in (20, 40, 60, 80, 100)]
    assert lines[0] == "DP-SGD step 20/100, 20s elapsed, about 80s left"
    assert lines[-1] == "DP-SGD step 100/100, 2 min elapsed, done"


def _events(refuse_in_round_2: bool):
    def budget(r, refuse):
        second = {"can_train": not refuse, "epsilon_spent": 0.2, **({"reason": "budget exhausted"} if refuse else {})}
        return {"event": "budget_check", "round": r, "eligible": 1 if refuse else 2,
                "replies": {"1": {"can_train": True, "epsilon_spent": 0.1}, "2": second}}

    def done(r, contributors):
        return {"event": "round_done", "round": r, "seconds": 3.0, "contributors": contributors,
                "reports": {"1": {"epsilon_spent": 0.3 * r}, "2": {"epsilon_spent": 0.25 * r}}}

    return [budget(1, False), done(1, 2), budget(2, refuse_in_round_2), done(2, 2)]


def test_simulate_rounds_feed_the_bar_and_only_what_needs_attention_is_printed():
    lines, rounds = [], []
    on_event = _event_printer(lines.append, 2, on_round=lambda done, status: rounds.append((done, status)))
    for ev in _events(refuse_in_round_2=True):
        on_event(ev)
    assert rounds == [(0, None), (1, "2 updates securely aggregated; epsilon spent up to 0.3"),
                      (1, None), (2, "2 updates securely aggregated; epsilon spent up to 0.6")]
    assert len(lines) == 1 and lines[0].startswith("round 2/2: 1/2 clients") and "budget exhausted" in lines[0]


def test_simulate_without_a_bar_prints_a_plain_line_a_round_with_the_time_left():
    lines = []
    on_event = _event_printer(lines.append, 2)
    for ev in _events(refuse_in_round_2=False):
        on_event(ev)
    assert [line.split(":")[0] for line in lines] == ["round 1/2", "round 1/2 done in 3.0s, about 3s left",
                                                     "round 2/2", "round 2/2 done in 3.0s"]


def _coordinator_events() -> list[dict]:
    yes = {"can_train": True, "reason": "", "schema_hash": "h", "epsilon_spent": 0.1}
    no = {"can_train": False, "reason": "budget exhausted", "schema_hash": "h", "epsilon_spent": 1.0}
    return [{"event": "budget_check", "round": 1, "eligible": 2, "replies": {"11": yes, "12": yes}},
            {"event": "round_done", "round": 1, "seconds": 2.0, "contributors": 2,
             "reports": {"11": {"epsilon_spent": 0.4, "epsilon_alone": 2.5}, "12": {"epsilon_spent": 0.5}}},
            {"event": "budget_check", "round": 2, "eligible": 1, "replies": {"11": yes, "12": no}}]


def test_the_coordinator_shows_routine_rounds_on_its_bar_and_refusals_as_lines(clock):
    """`fedsynth coordinator` on a terminal: round k/N with the last round's facts on the bar; an
    institution refusing a round still gets a line of its own (server/events.show_event)."""
    from fedsynth.server.events import show_event

    c, buf = console(terminal=True)
    said: list[str] = []
    with StepProgress("round", 4, c, plain_lines=0) as bar:
        for ev in _coordinator_events():
            clock.t += 2.0
            show_event(ev, "h", {"11": "hospital-a"}, said.append, bar)
    text = buf.getvalue()
    assert "round 1/4" in text and "2 updates securely aggregated; epsilon spent up to 0.5" in text
    assert "2.5 if all other parties colluded" in text
    assert "node 12 refused: budget exhausted" in text  # above the bar, not hidden in it
    assert said == []  # everything went through the bar's console


def test_the_coordinator_off_a_terminal_prints_every_event_as_a_line():
    from fedsynth.server.events import show_event

    c, buf = console(terminal=False)
    said: list[str] = []
    with StepProgress("round", 4, c, plain_lines=0) as bar:
        for ev in _coordinator_events():
            show_event(ev, "h", {"11": "hospital-a"}, said.append, bar)
    assert buf.getvalue() == ""  # no bar and no plain progress lines: the event lines are the progress
    assert len(said) == 3 and said[1].startswith("round 1 done in 2.0s: 2 updates securely aggregated")
    assert "node 12 refused: budget exhausted" in said[2] and ANSI not in "".join(said)


def test_a_plain_round_is_never_reported_as_securely_aggregated():
    """The benchmark-only plain mode (no SecAgg+) says so in every progress line that names the
    aggregation: the simulation's lines and bar, and the coordinator's line."""
    from fedsynth.server.events import describe_event

    plain = {"event": "round_done", "round": 1, "seconds": 1.0, "contributors": 3, "aggregation": "plain",
             "reports": {"1": {"epsilon_spent": 0.2}}}
    lines, rounds = [], []
    _event_printer(lines.append, 2)(plain)
    _event_printer(lines.append, 2, on_round=lambda done, status: rounds.append(status))(plain)
    said = [lines[0], rounds[0], describe_event(plain, "h")]
    for line in said:
        assert "3 updates summed in plain (INSECURE, benchmark only)" in line
        assert "securely" not in line
