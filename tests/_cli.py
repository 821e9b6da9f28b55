"""Run the real ``fedsynth`` command line in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys


def fedsynth(*args: str, cwd=None, env: dict[str, str] | None = None, timeout: float = 600
             ) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", **(env or {})}  # a real terminal's width; rich truncates at 80
    if os.environ.get("PYTEST_XDIST_WORKER") and args[:1] in (("fit",), ("simulate",)) and "--threads" not in args:
        # each test worker has one of the two cores (conftest.py): a default of 2 torch threads beside
        # the other worker oversubscribed them (a fit took 442 s of this call's 600 s timeout)
        args = (*args, "--threads", "1")
    return subprocess.run([sys.executable, "-m", "fedsynth.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=cwd)
