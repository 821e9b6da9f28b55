"""The ``flwr`` CLI, as the coordinator and the simulation drive a SuperLink they started.

Flower's Control API is reached through its own CLI (``flwr run``, ``flwr ls``, ``flwr stop``,
``flwr supernode register``) with ``--format json``: its output is the CLI's stable surface,
where its Python client is internal. Every call runs against one ``FLWR_HOME`` (the
connection written by :func:`fedsynth.server.run_config.write_flwr_config`).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from fedsynth.common.deploy.processes import executable
from fedsynth.common.errors import FedsynthError


class FlwrCli:
    """``flwr`` commands with one environment and working directory; a failure is a FedsynthError."""

    def __init__(self, env: dict[str, str], cwd: Path, connection: str) -> None:
        # its JSON is read, not shown: never coloured, even where our own output is a terminal
        self.env = {k: v for k, v in env.items() if k not in ("FORCE_COLOR", "TTY_INTERACTIVE")} | {"NO_COLOR": "1"}
        self.cwd, self.connection = cwd, connection

    def _run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([executable("flwr"), *args], env=self.env, capture_output=True, text=True,
                                  timeout=timeout, cwd=self.cwd)
        except subprocess.TimeoutExpired:
            raise FedsynthError(f"`flwr {args[0]}` did not answer within {timeout}s") from None

    def __call__(self, *args: str, timeout: float = 120) -> dict[str, Any]:
        res = self._run([*args, "--format", "json"], timeout)
        payload = last_json(res.stdout)
        if payload is None or not payload.get("success", False):
            detail = (payload or {}).get("error-message") or (res.stdout + res.stderr).strip()[-800:]
            raise FedsynthError(f"`flwr {' '.join(args[:2])}` failed: {detail}")
        return payload

    def once_up(self, *args: str, within: float = 30, every: float = 0.5) -> dict[str, Any]:
        """``self(*args)``, retried for ``within`` seconds: a SuperLink's Control API may answer
        a moment after its port opens."""
        deadline = time.time() + within
        while True:
            try:
                return self(*args)
            except FedsynthError:
                if time.time() > deadline:
                    raise
                time.sleep(every)

    def submit(self, app: Path, run_config: Path, *extra: str, within: float = 0) -> str:
        """``flwr run``: the run id (retried for ``within`` seconds, see :meth:`once_up`)."""
        args = ("run", str(app), self.connection, "--run-config", str(run_config), *extra)
        return str(self.once_up(*args, within=within).get("run-id"))

    def status(self, run_id: str) -> tuple[str, str]:
        """The run's status (``finished:completed`` when it ended well) and its details."""
        res = self("ls", self.connection, "--run-id", run_id, timeout=60)
        run = (res.get("runs") or [{}])[0]
        return str(run.get("status", "")), str(run.get("status-details", ""))

    def stop(self, run_id: str) -> None:
        self("stop", run_id, self.connection, timeout=60)

    def logs(self, run_id: str, timeout: float = 60) -> str:
        """The run's own log lines as the SuperLink keeps them (``flwr log --show``: text, no JSON form)."""
        res = self._run(["log", run_id, self.connection, "--show"], timeout)
        if res.returncode != 0:
            raise FedsynthError(f"`flwr log` failed: {(res.stdout + res.stderr).strip()[-800:]}")
        return res.stdout


def last_json(text: str) -> dict[str, Any] | None:
    """The CLI's JSON answer: the last line that parses, or the whole text."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None
