"""Run the real ``fedsynth`` command line in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys


def fedsynth(*args: str, cwd=None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", **(env or {})}  # a real terminal's width; rich truncates at 80
    return subprocess.run([sys.executable, "-m", "fedsynth.cli", *args], capture_output=True, text=True, timeout=600,
                          env=env, cwd=cwd)
