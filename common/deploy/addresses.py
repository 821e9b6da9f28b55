"""Network addresses of a deployment: ``HOST:PORT`` options, loopback ports, who listens where.

The coordinator's SuperLink and an institution's SuperNode listen on ports given on the
command line (or picked free on loopback for local APIs); when one cannot listen, the
message should name the process that holds the port, which is read from Linux's /proc.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from fedsynth.common.deploy.pids import describe_pid
from fedsynth.common.errors import FedsynthError


def parse_address(address: str, option: str = "--address") -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 in brackets) as given to a coordinator or a client; a clear error otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FedsynthError(f"{option} {address!r}: expected HOST:PORT, e.g. 127.0.0.1:9092")
    return host.strip("[]"), int(port)


def free_loopback_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(host: str, port: int) -> bool:
    """Whether something accepts a TCP connection on ``host:port`` within a second."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def listening_pids(port: int) -> set[int] | None:
    """Pids of the processes holding a TCP socket that listens on ``port``; None where unknown.

    Linux only (/proc/net/tcp{,6} for the socket, /proc/*/fd for its owner); processes of
    other users are not readable and are left out.
    """
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        return None
    inodes = set()
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(f"socket:[{f[9]}]")
    pids: set[int] = set()
    if not inodes:
        return pids
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) in inodes for fd in fd_dir.iterdir()):
                pids.add(int(fd_dir.parent.name))
        except OSError:
            continue
    return pids


def port_holder(port: int) -> str | None:
    """'pid N: command' of a process listening on ``port``, if one can be named."""
    holders = listening_pids(port)
    return describe_pid(min(holders)) if holders else None
