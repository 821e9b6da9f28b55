"""Starting Flower's own executables (SuperLink, SuperNode, ``flwr``) as child processes.

Flower's deployment pieces are separate programs that in turn start more programs
(``flower-superexec`` spawns a ``flwr-serverapp``/``flwr-clientapp`` process per run or
message) and find them on ``PATH``. So every child gets the environment of the Python that
runs fedsynth, with Flower's telemetry and update check switched off (a federation of
institutions should not report to third parties, and nothing is downloaded at run time).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from fedsynth.common.errors import FedsynthError

OFFLINE_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "PYTHONUNBUFFERED": "1",
}


def executable(name: str) -> str:
    """The Flower executable installed beside this Python (a venv), else on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise FedsynthError(f"`{name}` not found next to {sys.executable} or on PATH; install flwr")
    return found


def child_env(flwr_home: Path | None = None) -> dict[str, str]:
    """Environment for Flower children: this Python's bin dir first, offline, own FLWR_HOME."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(OFFLINE_ENV)
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home)
    return env


def start(cmd: list[str], env: dict[str, str], log_file: Path | None = None) -> subprocess.Popen:
    """Start ``cmd`` in the caller's process group, so that a signal to the group (Ctrl-C, a
    supervisor stopping the container or a test's finalizer) reaches Flower's processes too."""
    out = open(log_file, "ab") if log_file is not None else None  # noqa: SIM115 (owned by the child)
    try:
        return subprocess.Popen(cmd, env=env, stdout=out or None, stderr=subprocess.STDOUT if out else None,
                                stdin=subprocess.DEVNULL)
    finally:
        if out is not None:
            out.close()


def stop(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGTERM the child's process group, then SIGKILL whatever is left after ``grace`` s."""
    if proc is None:
        return
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if pgid is not None and pgid != os.getpgid(0):
        _signal_group(pgid, signal.SIGTERM)
    elif proc.poll() is None:
        proc.terminate()
    deadline = time.time() + grace
    while proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    if pgid is not None and pgid != os.getpgid(0):
        _signal_group(pgid, signal.SIGKILL)  # grandchildren (superexec, app processes) too
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=5)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def free_loopback_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
