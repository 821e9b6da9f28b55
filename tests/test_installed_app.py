"""The app executor of `fedsynth client`: tasks run in one worker in turn, or apart while it is busy."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from fedsynth.client.installed_app import AppExecutor

NOBODY = "127.0.0.1:9"  # no runtime API listens here

# Stands in for `python -m fedsynth.client.installed_app` (same arguments): records each token it
# runs in LOG, taking a second per task; exits at once when FAIL is set.
FAKE = r"""
import os, sys, time
args = sys.argv[1:]
if os.environ.get("FAKE_FAIL"):
    sys.exit(1)
log = open(os.environ["FAKE_LOG"], "a", buffering=1)
if "--serve" not in args:
    log.write(f"own {os.getpid()} {sys.stdin.readline().strip()}\n")
    sys.exit(0)
ready = os.fdopen(int(args[args.index("--ready-fd") + 1]), "w", buffering=1)
while True:
    ready.write("ready\n")
    token = sys.stdin.readline().strip()
    if not token:
        sys.exit(0)
    time.sleep(1.0)
    log.write(f"worker {os.getpid()} {token}\n")
"""


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _fake_executor(monkeypatch, tmp_path: Path, fail: bool = False) -> tuple[AppExecutor, Path]:
    log = tmp_path / "tasks.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    if fail:
        monkeypatch.setenv("FAKE_FAIL", "1")
    executor = AppExecutor(NOBODY)
    monkeypatch.setattr(executor, "_cmd", lambda: [sys.executable, "-c", FAKE, "--runtime-api-address", NOBODY])
    return executor, log


def _started_worker(executor: AppExecutor):
    """Have the executor start its worker (or replace a dead one); return it once it is ready."""
    executor._keep_worker()
    worker = executor._worker
    assert _wait_for(worker.idle, 30)
    return worker


def test_tasks_run_in_the_worker_in_turn_and_one_that_comes_while_it_is_busy_runs_apart(monkeypatch, tmp_path):
    executor, log = _fake_executor(monkeypatch, tmp_path)
    try:
        worker = _started_worker(executor)
        executor._dispatch("first")
        executor._dispatch("second")  # the worker is busy with the first
        assert _wait_for(lambda: worker.idle() and worker.tasks_done == 1, 30)
        executor._dispatch("third")  # idle again: the same worker takes it
        assert _wait_for(lambda: worker.idle() and worker.tasks_done == 2, 30)
        assert _wait_for(lambda: all(p.poll() is not None for p in executor._tasks), 30)
        lines = sorted(line.split() for line in log.read_text().splitlines())
        assert [(kind, token) for kind, _, token in lines] == [("own", "second"), ("worker", "first"),
                                                               ("worker", "third")]
        assert lines[1][1] == lines[2][1] == str(worker.proc.pid)  # one process ran both
    finally:
        executor.stop()


def test_a_worker_that_dies_is_replaced_and_one_that_cannot_start_is_not_retried(monkeypatch, tmp_path):
    executor, log = _fake_executor(monkeypatch, tmp_path)
    try:
        first = _started_worker(executor)
        executor._dispatch("a")
        assert _wait_for(lambda: first.tasks_done == 1, 30)
        first.proc.kill()
        first.proc.wait(timeout=30)
        assert _started_worker(executor) is not first
    finally:
        executor.stop()
    broken, log = _fake_executor(monkeypatch, tmp_path, fail=True)
    try:
        broken._keep_worker()
        assert _wait_for(lambda: broken._worker.proc.poll() is not None, 30)
        broken._keep_worker()
        assert broken._worker is None  # tasks now get processes of their own
        broken._dispatch("b")
        assert len(broken._tasks) == 1
    finally:
        broken.stop()


def test_the_worker_imports_the_app_says_ready_and_ends_with_its_input():
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "fedsynth.client.installed_app", "--runtime-api-address", NOBODY,
                             "--serve", "--ready-fd", str(write_fd)], stdin=subprocess.PIPE, text=True,
                            pass_fds=(write_fd,), stderr=subprocess.PIPE)
    os.close(write_fd)
    with os.fdopen(read_fd) as ready:
        assert ready.readline() == "ready\n"
        proc.stdin.close()  # the executor stopped: no more tokens
        assert proc.wait(timeout=60) == 0
        assert ready.read() == ""
    assert "Traceback" not in proc.stderr.read()
