"""Supervision of Flower child processes (fedsynth.common.deploy.processes), with real processes.

A parent Python process starts children through a Supervisor exactly as `fedsynth
coordinator` / `fedsynth client` start the SuperLink / SuperNode; the tests SIGKILL that
parent and look at what is left. Children are plain Python sleepers, so this runs in
seconds; tests/test_deployment_faults.py does the same with Flower itself.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedsynth.common.errors import FedsynthError
from fedsynth.common.deploy.pids import descendants, process_identity
from fedsynth.common.deploy.processes import PID_FILE, SNAPSHOT_S, Supervisor

PARENT = """
import os, sys, time
from pathlib import Path
from fedsynth.common.deploy.processes import Supervisor
mode = sys.argv[2]  # "pdeathsig" or "watchdog" alone, or "both" (the default)
sup = Supervisor(Path(sys.argv[1]), "test parent", pdeathsig=mode != "watchdog", watchdog=mode != "pdeathsig")
for name in ("first", "second"):
    print(sup.start(name, [sys.executable, "-c", sys.argv[3]], dict(os.environ)).pid, flush=True)
time.sleep(600)
"""
SLEEPER = "import time; time.sleep(600)"
# A hung child: ignores SIGTERM (so the parent-death signal), as a stuck Flower process might.
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
# A child that starts a helper in a session of its own, as the SuperLink starts superexec; the helper
# ignores SIGTERM and does not watch its parent, like a flwr-serverapp stuck pushing its output.
DETACHES = f"""
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", {STUBBORN!r}], start_new_session=True)
time.sleep(600)
"""

linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="uses /proc")


def start_parent(tmp_path: Path, mode: str, child: str) -> tuple[subprocess.Popen, list[int]]:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path / PID_FILE), mode, child],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    pids = [int(parent.stdout.readline()) for _ in range(2)]
    return parent, pids


def gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if all(process_identity(p) is None for p in pids):
            return True
        time.sleep(0.1)
    return False


def ignores_sigterm(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")), 16)
    return bool(mask & (1 << (signal.SIGTERM - 1)))


def kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@linux_only
@pytest.mark.parametrize("mode", ["both", "pdeathsig", "watchdog"])
def test_children_stop_when_their_parent_is_killed(tmp_path, mode):
    parent, children = start_parent(tmp_path, mode, SLEEPER)
    try:
        assert all(process_identity(p) for p in children)
        assert all(os.getpgid(p) == p for p in children)  # own groups: a signal to the parent's group spares them
        os.killpg(parent.pid, signal.SIGKILL)  # the parent and its whole group, no chance to clean up
        parent.wait(timeout=5)
        assert gone_within(children, 5), [process_identity(p) for p in children]
    finally:
        kill(children)


def helpers_of(children: list[int]) -> list[int]:
    """The detached helpers the children started (waits until each child has one)."""
    deadline = time.time() + 20
    while time.time() < deadline:
        found = [list(descendants(c)) for c in children]
        if all(found) and all(ignores_sigterm(h[0]) for h in found):
            return [h[0] for h in found]
        time.sleep(0.1)
    raise AssertionError(f"no helper started: {found}")


@linux_only
@pytest.mark.parametrize("mode", ["both", "watchdog"])
def test_detached_helpers_that_ignore_sigterm_end_when_the_parent_is_killed(tmp_path, mode):
    parent, children = start_parent(tmp_path, mode, DETACHES)
    helpers = []
    try:
        helpers = helpers_of(children)
        assert all(os.getsid(h) == h for h in helpers)  # out of every group a signal of ours reaches
        # the watchdog's snapshots of the tree come every SNAPSHOT_S: a helper born in the last one before
        # the parent dies can be missed once the kernel's signal has ended its parent (processes._watch)
        time.sleep(3 * SNAPSHOT_S)
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(timeout=5)
        assert gone_within(children, 5)
        time.sleep(2)
        assert all(process_identity(h) for h in helpers)  # given their grace: nobody SIGKILLs at once
        assert gone_within(helpers, 15), [process_identity(h) for h in helpers]
    finally:
        kill(children + helpers)


@linux_only
def test_a_stop_ends_detached_helpers_too(tmp_path):
    sup = Supervisor(tmp_path / PID_FILE, "test")
    helpers = []
    try:
        child = sup.start("SuperLink", [sys.executable, "-c", DETACHES], dict(os.environ))
        helpers = helpers_of([child.pid])
        sup.close(grace=1)
        assert child.poll() is not None and gone_within(helpers, 5)
    finally:
        kill(helpers)


@linux_only
def test_restart_stops_what_a_dead_owner_left_and_spares_a_recycled_pid(tmp_path):
    parent, children = start_parent(tmp_path, "pdeathsig", STUBBORN)  # no watchdog: the children survive
    try:
        deadline = time.time() + 10
        while not all(ignores_sigterm(p) for p in children) and time.time() < deadline:
            time.sleep(0.05)
        record = json.loads((tmp_path / PID_FILE).read_text())
        assert [c["pid"] for c in record["children"]] == children and record["owner"]["pid"] == parent.pid
        # the second recorded pid now stands for an unrelated process (a recycled pid)
        record["children"][1]["identity"] = "12345 some other program"
        (tmp_path / PID_FILE).write_text(json.dumps(record))
        parent.kill()
        parent.wait(timeout=5)
        time.sleep(0.5)
        assert all(process_identity(p) for p in children)  # they ignored the parent-death SIGTERM: stale

        messages = Supervisor(tmp_path / PID_FILE, "test parent").reclaim(grace=1)

        assert gone_within(children[:1], 5)
        assert process_identity(children[1]) is not None  # not ours any more: left alone
        assert len(messages) == 1 and f"pid {children[0]}" in messages[0] and f"(pid {parent.pid})" in messages[0]
        assert not (tmp_path / PID_FILE).exists()
    finally:
        kill(children)


@linux_only
def test_a_second_command_on_the_same_folder_is_refused(tmp_path):
    parent, children = start_parent(tmp_path, "pdeathsig", SLEEPER)
    try:
        with pytest.raises(FedsynthError, match=f"another test parent \\(pid {parent.pid}\\) is still running"):
            Supervisor(tmp_path / PID_FILE, "test parent").reclaim()
        assert all(process_identity(p) for p in children)  # nothing of the running owner was touched
        assert (tmp_path / PID_FILE).exists()
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(timeout=5)
        kill(children)


@pytest.fixture()
def held_port():
    """A port some other process (this test) listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


# Listens on the port given (0: one the kernel picks, so no other process can take it first) and prints it.
BIND = """
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); print(s.getsockname()[1], flush=True)
time.sleep(600)
"""


@linux_only
def test_an_open_port_is_not_enough_our_child_must_be_the_listener(tmp_path, held_port):
    sup = Supervisor(tmp_path / PID_FILE, "test")
    try:
        alive_but_not_listening = sup.start("SuperLink", [sys.executable, "-c", SLEEPER], dict(os.environ))
        with pytest.raises(FedsynthError, match=f"port in use by another process \\(pid {os.getpid()}"):
            sup.wait_listening(alive_but_not_listening, "127.0.0.1", held_port, timeout=2)
    finally:
        sup.close(grace=1)


@linux_only
def test_a_child_that_cannot_bind_names_the_process_holding_the_port(tmp_path, held_port):
    sup = Supervisor(tmp_path / PID_FILE, "test")
    try:
        failing = sup.start("SuperLink", [sys.executable, "-c", BIND, str(held_port)], dict(os.environ),
                            tmp_path / "child.log")
        started = time.time()
        with pytest.raises(FedsynthError, match=f"port in use by another process \\(pid {os.getpid()}"):
            sup.wait_listening(failing, "127.0.0.1", held_port, timeout=30)
        assert time.time() - started < 10  # reported when the child exits, not at the timeout
    finally:
        sup.close(grace=1)


def test_our_listening_child_is_accepted(tmp_path):
    sup = Supervisor(tmp_path / PID_FILE, "test")
    try:
        child = sup.start("SuperLink", [sys.executable, "-c", BIND, "0"], dict(os.environ), capture=True)
        port = int(child.stdout.readline())
        sup.wait_listening(child, "127.0.0.1", port, timeout=30)
        assert child.poll() is None
    finally:
        sup.close(grace=1)
    assert not (tmp_path / PID_FILE).exists()
