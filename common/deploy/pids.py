"""Telling live processes apart: identity, ancestry and a one-line description.

A pid alone names a process only while it lives: once it exits the number can be given to
an unrelated process. A supervisor that finds a pid in a file written by an earlier command
(or a port held by some process) therefore compares identities, start time plus command
line, which two processes never share.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def process_identity(pid: int) -> str | None:
    """Start time and command line of a live process; None if there is none (or a zombie).

    Two different processes never share both, so comparing identities tells a survivor from
    an unrelated process that was given a recycled pid.
    """
    proc = Path("/proc") / str(pid)
    if Path("/proc/self/stat").exists():
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            return None
        after_name = stat.rsplit(")", 1)[1].split()  # the name may contain spaces and ')'
        if after_name[0] in ("Z", "X"):  # state; exited, not yet reaped
            return None
        command = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
        return f"{after_name[19]} {command}"  # field 22 of stat: start time in clock ticks since boot
    res = subprocess.run(["ps", "-o", "lstart=,command=", "-p", str(pid)], capture_output=True, text=True,
                         check=False)
    return res.stdout.strip() or None


def _parent_pid(pid: int) -> int | None:
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def descends_from(pid: int, ancestor: int) -> bool:
    """Whether ``pid`` is ``ancestor`` or one of its descendants (Linux /proc)."""
    seen = 0
    while pid > 1 and seen < 64:
        if pid == ancestor:
            return True
        pid, seen = _parent_pid(pid) or 0, seen + 1
    return False


def descendants(pid: int) -> dict[int, str]:
    """Every live descendant of ``pid`` with its identity (Linux /proc; empty elsewhere).

    Flower's SuperLink starts its helpers detached (``start_new_session``), so they are in no
    process group of ours: a supervisor can only reach them through the process tree, and only
    while they still hang under it (an orphan is re-parented).
    """
    if not Path("/proc/self/stat").exists():
        return {}
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        if (ppid := _parent_pid(int(stat.parent.name))) is not None:
            children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if (ident := process_identity(child)) is not None:
                tree[child] = ident
                todo.append(child)
    return tree


def describe_pid(pid: int) -> str:
    """'pid N: command' for messages; '?' for a process that is gone."""
    ident = process_identity(pid)
    cmd = ident.split(" ", 1)[1] if ident and " " in ident else "?"
    return f"pid {pid}: {cmd[:160]}"
