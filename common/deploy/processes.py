"""Starting and supervising Flower's own executables (SuperLink, SuperNode, ``flwr``) as child processes.

Flower's deployment pieces are separate programs that in turn start more programs
(``flower-superexec`` spawns a ``flwr-serverapp``/``flwr-clientapp`` process per run or
message) and find them on ``PATH``. So every child gets the environment of the Python that
runs fedsynth, with Flower's telemetry and update check switched off (a federation of
institutions should not report to third parties, and nothing is downloaded at run time).

A fedsynth command owns its Flower children (:class:`Supervisor`): however the command
ends, they end too. A SuperLink or SuperNode left running after its ``fedsynth`` parent was
killed would finish a run nobody watches, hold the port, keep a node's key "in use" and be
invisible to the next start. So each child

* runs in its own process group: a terminal's Ctrl-C or a signal to the command's group
  reaches the command, which stops its children in order (SuperNodes sign off);
* gets SIGTERM when its parent dies, even by SIGKILL: ``PR_SET_PDEATHSIG`` on Linux, a small
  watchdog process in the child's group elsewhere. Flower's own helpers follow: ``superexec``
  and the app processes watch their parent's pid and exit when it is gone;
* has its whole tree ended, however slowly a helper shuts down: Flower starts ``superexec``
  detached (its own session), and a ``flwr-serverapp`` whose SuperLink is gone may spend
  seconds pushing its output to nobody. So the watchdog always runs: it keeps a snapshot of
  the child's descendants and, once the parent is gone, SIGKILLs what is still there after a
  grace period. A stop does the same with the tree it sees;
* is recorded with its start time and command line in a pid file, so a restarted command
  finds survivors (a pid alone could have been recycled by an unrelated process) and stops
  them, and refuses to start while the command that owns them is still running.

Telling processes apart lives in :mod:`fedsynth.common.deploy.pids`, addresses and ports
(who listens where) in :mod:`fedsynth.common.deploy.addresses`.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fedsynth.common.atomic import atomic_write_text

from fedsynth.common.deploy.addresses import answers, listening_pids
from fedsynth.common.deploy.pids import descendants, descends_from, describe_pid, process_identity
from fedsynth.common.errors import FedsynthError

OFFLINE_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "PYTHONUNBUFFERED": "1",
}
PID_FILE = "fedsynth-children.json"  # in the coordinator's out/flower dir, in a client's state dir
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
SNAPSHOT_S = 0.5  # how often the watchdog records the child's process tree
PARENT_DEATH_SIGNAL = signal.SIGTERM  # graceful: a SuperNode signs off, a SuperLink frees its port


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


# ---------------------------------------------------------------------------- processes
def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()  # loaded before any fork: the child only calls it


def _die_with_parent(parent_pid: int) -> None:
    """preexec_fn: ask the kernel for SIGTERM when the parent dies; already dead -> now.

    The signal follows the *thread* that forked the child, so children are started from the
    command's main thread. Only async-signal-safe work happens here (a libc call, getppid).
    """
    assert _PRCTL is not None
    _PRCTL(PR_SET_PDEATHSIG, int(PARENT_DEATH_SIGNAL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died between fork and prctl
        os.kill(os.getpid(), PARENT_DEATH_SIGNAL)


def parent_death_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child signalled when the calling thread of this process
    dies (see :func:`_die_with_parent`); None where prctl is unavailable."""
    if _PRCTL is None:
        return None
    parent = os.getpid()
    return lambda: _die_with_parent(parent)


def stop(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGTERM the child's process group, then SIGKILL whatever is left after ``grace`` s."""
    if proc is not None:
        _terminate([proc], grace)


def _terminate(procs: list[subprocess.Popen], grace: float) -> None:
    """Stop several children at once: SIGTERM to each one's group, one shared grace (for the
    children and their detached helpers), then SIGKILL to whatever is left."""
    own = os.getpgid(0)
    groups, helpers = {}, {}
    for proc in procs:
        helpers.update(descendants(proc.pid))  # before the signal: an orphan leaves the tree
        try:
            groups[proc.pid] = os.getpgid(proc.pid)
        except ProcessLookupError:
            groups[proc.pid] = None
    for proc in procs:
        _signal(proc, groups[proc.pid], own, signal.SIGTERM)
    deadline = time.time() + grace
    while (any(p.poll() is None for p in procs) or _alive(helpers)) and time.time() < deadline:
        time.sleep(0.1)
    for proc in procs:
        _signal(proc, groups[proc.pid], own, signal.SIGKILL)  # its group's helpers too
        proc.wait(timeout=5)
    _kill(helpers)


def _alive(tree: dict[int, str]) -> dict[int, str]:
    """The processes of ``tree`` still running (same pid *and* identity)."""
    return {pid: ident for pid, ident in tree.items() if process_identity(pid) == ident}


def _kill(tree: dict[int, str]) -> None:
    for pid in _alive(tree):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _signal(proc: subprocess.Popen, pgid: int | None, own: int, sig: int) -> None:
    if pgid is not None and pgid != own:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    elif proc.poll() is None:
        proc.send_signal(sig)


def _stop_stray(pid: int, identity: str, grace: float) -> None:
    """Stop a process that is not our child (a survivor of an earlier run): no wait(), poll its identity."""
    try:
        group = os.getpgid(pid) == pid  # started as the leader of its own group
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if process_identity(pid) != identity:
            return
        try:
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.time() + wait
        while process_identity(pid) == identity and time.time() < deadline:
            time.sleep(0.1)


# ---------------------------------------------------------------------------- supervisor
@dataclass
class Child:
    name: str  # what messages call it: "SuperLink", "SuperNode"
    proc: subprocess.Popen
    identity: str
    log_file: Path | None = None
    watchdog: subprocess.Popen | None = None  # ends the child's tree if this command dies


class Supervisor:
    """The Flower processes of one fedsynth command (see the module docstring for the guarantees).

    ``pid_file`` lives in a folder only this command uses (the coordinator's ``out/flower``,
    an institution's state dir), so a second command on the same folder is refused and a
    restarted one finds what the previous one left.
    """

    def __init__(self, pid_file: Path, role: str, *, pdeathsig: bool | None = None, watchdog: bool = True) -> None:
        self.pid_file, self.role = Path(pid_file), role
        self.pdeathsig = _PRCTL is not None if pdeathsig is None else pdeathsig
        self.watchdog = watchdog or not self.pdeathsig  # without either, nothing would stop the children
        self.children: list[Child] = []

    # -- restart ---------------------------------------------------------------------
    def reclaim(self, grace: float = 10.0) -> list[str]:
        """Before starting anything: stop children an earlier, dead owner left running.

        Returns one message per process stopped. Raises if the owner recorded in the pid
        file is still running (two commands must not share a SuperLink port or a ledger).
        """
        try:
            record = json.loads(self.pid_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise FedsynthError(f"{self.pid_file}: unreadable ({exc}); delete it once no Flower process of an "
                                f"earlier {self.role} is left") from None
        owner = record.get("owner", {})
        if owner.get("pid") != os.getpid() and owner.get("identity") \
                and process_identity(int(owner["pid"])) == owner["identity"]:
            raise FedsynthError(f"another {self.role} (pid {owner['pid']}) is still running with "
                                f"{self.pid_file.parent}; stop it first")
        stopped = []
        for child in record.get("children", []):
            pid, identity = int(child["pid"]), str(child["identity"])
            if process_identity(pid) == identity:
                _stop_stray(pid, identity, grace)
                stopped.append(f"stopped a {child['name']} (pid {pid}) left running by an earlier {self.role} "
                               f"(pid {owner.get('pid', '?')}) that is gone")
        self.pid_file.unlink(missing_ok=True)
        return stopped

    # -- children --------------------------------------------------------------------
    def start(self, name: str, cmd: list[str], env: dict[str, str], log_file: Path | None = None, *,
              capture: bool = False) -> subprocess.Popen:
        """Start ``cmd`` as a supervised child: output to ``log_file`` (appended), or a text pipe
        with ``capture``, else inherited."""
        out = open(log_file, "ab") if log_file is not None else None  # noqa: SIM115 (owned by the child)
        stdout = out if out is not None else (subprocess.PIPE if capture else None)
        parent = os.getpid()
        try:
            proc = subprocess.Popen(
                cmd, env=env, stdout=stdout, stderr=subprocess.STDOUT if stdout is not None else None,
                stdin=subprocess.DEVNULL, text=capture, bufsize=1 if capture else -1, process_group=0,
                preexec_fn=parent_death_preexec() if self.pdeathsig else None)  # noqa: PLW1509 (see _die_with_parent)
        finally:
            if out is not None:
                out.close()
        child = Child(name, proc, process_identity(proc.pid) or "", log_file)
        if self.watchdog:
            child.watchdog = subprocess.Popen(
                [sys.executable, "-m", "fedsynth.common.deploy.processes", "watch", str(parent), str(proc.pid),
                 "signalled" if self.pdeathsig else "unsignalled"],
                stdin=subprocess.DEVNULL, process_group=proc.pid)
        self.children.append(child)
        self._record()
        return proc

    def exited(self) -> Child | None:
        """The first child that has exited on its own, if any."""
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def wait_any(self, poll: float = 0.2) -> Child:
        """Block until one child exits (the others are still running: call :meth:`stop`)."""
        while (child := self.exited()) is None:
            time.sleep(poll)
        return child

    def stop(self, grace: float = 10.0) -> None:
        """Stop every child (one shared grace period) and forget them; this command stays the owner."""
        procs = [c.proc for c in self.children] + [c.watchdog for c in self.children if c.watchdog is not None]
        _terminate(procs, grace)
        self.children = []
        self._record()

    def close(self, grace: float = 10.0) -> None:
        """Stop every child and remove the pid file: the command is done."""
        self.stop(grace)
        self.pid_file.unlink(missing_ok=True)

    def _record(self) -> None:
        me = os.getpid()
        atomic_write_text(self.pid_file, json.dumps({
            "role": self.role, "owner": {"pid": me, "identity": process_identity(me)},
            "children": [{"name": c.name, "pid": c.proc.pid, "identity": c.identity} for c in self.children],
        }, indent=1) + "\n")

    # -- readiness -------------------------------------------------------------------
    def wait_listening(self, child: Child | subprocess.Popen, host: str, port: int, timeout: float) -> None:
        """Return once *this* child listens on ``port``; a clear error if it exits or another process holds it.

        Something answering on the port is not enough: a SuperLink that failed to bind
        (``Errno 98``) exits a moment later, and whatever held the port would have answered.
        """
        child = child if isinstance(child, Child) else next(c for c in self.children if c.proc is child)
        where = f"{host}:{port}"
        deadline = time.time() + timeout
        while True:
            holders = listening_pids(port)
            if child.proc.poll() is not None:
                raise FedsynthError(self._exit_reason(child, where, holders))
            if holders is None:  # no /proc: something answers and our child is still alive a moment later
                if answers(host, port):
                    time.sleep(1.0)
                    if child.proc.poll() is None:
                        return
                    continue
            elif any(descends_from(pid, child.proc.pid) for pid in holders):
                return
            if time.time() > deadline:
                if holders:
                    raise FedsynthError(f"{where}: port in use by another process ({describe_pid(min(holders))}); "
                                        f"the {child.name} cannot listen there")
                raise FedsynthError(f"the {child.name} did not listen on {where} within {timeout:g}s")
            time.sleep(0.3)

    def _exit_reason(self, child: Child, where: str, holders: set[int] | None) -> str:
        tail = log_tail(child.log_file) if child.log_file is not None else ""
        if holders or "Errno 98" in tail or "address already in use" in tail.lower():
            who = f" ({describe_pid(min(holders))})" if holders else ""
            return f"{where}: port in use by another process{who}; the {child.name} could not listen there"
        return f"the {child.name} exited with status {child.proc.returncode}: {tail or '(no output)'}"


def log_tail(path: Path | None, n: int = 15) -> str:
    if path is None:
        return "(no log)"
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _watch(parent_pid: int, child_pid: int, signalled: bool, grace: float = 8.0) -> None:
    """The watchdog, run inside a child's process group beside the child.

    While the parent lives it keeps a snapshot of the child's tree. When the parent is gone
    (this process is re-parented) it SIGTERMs the group, unless the kernel already did
    (``signalled``: a second SIGTERM would cut a SuperNode's sign-off short, Flower's handler
    runs once), waits up to ``grace`` s for the tree to end, then SIGKILLs what is left,
    detached helpers and the group (itself included). A detached helper started within the last
    snapshot before the parent died escapes when the kernel's parent-death signal has already
    ended its parent (it is no longer in the child's tree); Flower's helpers live for the run.
    """
    tree = {child_pid: process_identity(child_pid) or ""}
    while os.getppid() == parent_pid:
        tree.update(descendants(child_pid))
        time.sleep(SNAPSHOT_S)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    tree.update(descendants(child_pid))
    if not signalled:
        os.killpg(0, signal.SIGTERM)
    deadline = time.time() + grace
    while _alive(tree) and time.time() < deadline:
        time.sleep(0.2)
    _kill(tree)
    os.killpg(0, signal.SIGKILL)


if __name__ == "__main__" and sys.argv[1:2] == ["watch"]:
    _watch(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "signalled")
