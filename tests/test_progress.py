"""Progress for people (common/progress.py, issue 17): a rich bar on a terminal (k/N, elapsed,
time left, the latest facts); anywhere else a few plain lines with no ANSI codes and no redraws."""

import io

import pytest
from rich.console import Console

from fedsynth.common import progress as progress_module
from fedsynth.common.progress import StepProgress

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
