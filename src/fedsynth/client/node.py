"""``fedsynth client``: one institution's Flower SuperNode, next to its own table.

Everything about the institution's data is configured here, on its own machine, and
reaches the ClientApp (``fedsynth.client.app:app``) through the SuperNode's node config:
the table, the schema, the privacy cap and the state folder that holds the ledger. The
coordinator never configures any of it.

Before the SuperNode starts, the table is validated against the schema (every violation
names file, column, row and value), the privacy cap is checked, and the TLS CA and the
authentication key are checked (the key must be private to its owner). Only then does the
SuperNode connect, over TLS, authenticating with the key the coordinator registered.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fedsynth.client.installed_app import AppExecutor
from fedsynth.common import flower_processes as fp
from fedsynth.common.errors import DataError, FedsynthError

NODE_CONFIG_FILE = "node_config.toml"
REFUSAL_RETRY_S = 60.0  # a just-started coordinator may still be registering keys


@dataclass(frozen=True)
class NodeOptions:
    data: Path
    schema: Path
    budget_epsilon: float
    budget_delta: float
    coordinator: str  # HOST:PORT of the coordinator's SuperLink
    state_dir: Path
    ca_cert: Path | None = None
    auth_key: Path | None = None
    insecure: bool = False
    batch_size: int | None = None
    threads: int = 1
    runtime_port: int = 0  # the SuperNode's local Runtime API port; 0 = pick a free one
    give_up_after: float | None = None  # stop retrying an unreachable coordinator after this many s
    init_ledger: bool = False  # first start only: create the privacy ledger in state_dir


@dataclass(frozen=True)
class PreparedNode:
    command: list[str]
    env: dict[str, str]
    runtime_address: str  # the SuperNode's local runtime API, polled by the AppExecutor
    rows: int
    schema_hash: str


def check_table(data: Path, schema_path: Path) -> tuple[int, str]:
    """Refuse to start on a table that does not match the schema: (rows, schema hash)."""
    from fedsynth.common.schema import Schema
    from fedsynth.common.tables import validate_file

    if not Path(schema_path).is_file():
        raise FedsynthError(f"--schema {schema_path}: no such file")
    if not Path(data).is_file():
        raise FedsynthError(f"--data {data}: no such file")
    schema = Schema.load(schema_path)
    report = validate_file(data, schema)
    if not report.ok:
        listed = "\n".join(f"  {v}" for v in report.violations[:20])
        more = len(report.violations) - 20
        extra = f"\n  ... and {more} more" if more > 0 else ""
        raise DataError(f"{data} does not match the schema {schema_path}; not starting the client:\n"
                        f"{listed}{extra}\n(list them all with `fedsynth schema validate {data} --schema "
                        f"{schema_path}`)", report.violations)
    return report.rows, schema.hash()


def _write_node_config(opts: NodeOptions, state: Path) -> Path:
    """The SuperNode's node config as a TOML file (paths with spaces survive, unlike k=v)."""
    import json

    from fedsynth.common.atomic import atomic_write_text

    values: dict[str, object] = {
        "data": str(Path(opts.data).resolve()), "schema": str(Path(opts.schema).resolve()),
        "state-dir": str(state), "budget-epsilon": float(opts.budget_epsilon),
        "budget-delta": float(opts.budget_delta), "threads": int(opts.threads),
    }
    if opts.batch_size:
        values["batch-size"] = int(opts.batch_size)
    text = "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
    path = state / NODE_CONFIG_FILE
    atomic_write_text(path, text)
    return path


def _ensure_ledger(opts: NodeOptions, state: Path) -> None:
    """Create the ledger on an explicit first start, else open it: refuse before connecting.

    A missing ledger is never created implicitly (a wiped state folder must not become a
    fresh budget), and a ledger whose cap or delta disagrees with the options is refused
    here rather than round after round at the coordinator.
    """
    from fedsynth.client.ledger import Ledger

    if opts.init_ledger:
        Ledger.create(state, opts.budget_epsilon, opts.budget_delta)
    else:
        Ledger.open(state, opts.budget_epsilon, opts.budget_delta)


def prepare_node(opts: NodeOptions) -> PreparedNode:
    from fedsynth.common.credentials import check_certificate, check_node_private_key
    from fedsynth.common.privacy import check_privacy_params
    from fedsynth.server.coordinator import parse_address

    parse_address(opts.coordinator, "--coordinator")
    check_privacy_params(opts.budget_epsilon, opts.budget_delta)
    if opts.threads < 1:
        raise FedsynthError(f"--threads {opts.threads}: must be at least 1")
    if opts.insecure:
        if opts.auth_key is not None:
            raise FedsynthError("--auth-key needs TLS: SuperNode authentication is impossible with --insecure")
    else:
        if opts.ca_cert is None or opts.auth_key is None:
            raise FedsynthError("--ca-cert and --auth-key are required (plain text only with --insecure)")
        check_certificate(opts.ca_cert, "--ca-cert")
        check_node_private_key(opts.auth_key, "--auth-key")
    rows, schema_hash = check_table(opts.data, opts.schema)
    check_privacy_params(opts.budget_epsilon, opts.budget_delta, rows)
    state = Path(opts.state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)  # the ledger and cached releases are the institution's own business
    _ensure_ledger(opts, state)
    node_config = _write_node_config(opts, state)
    port = opts.runtime_port or fp.free_loopback_port()
    # `--isolation process`: the SuperNode launches no app itself; fedsynth's AppExecutor runs
    # the installed ClientApp for each task and refuses every other app (installed_app.py).
    cmd = [fp.executable("flower-supernode"), "--superlink", opts.coordinator, "--node-config", str(node_config),
           "--isolation", "process", "--host", "127.0.0.1", "--port", str(port)]
    if opts.insecure:
        cmd += ["--insecure"]
    else:
        cmd += ["--root-certificates", str(Path(opts.ca_cert).resolve()),
                "--auth-supernode-private-key", str(Path(opts.auth_key).resolve())]
    if opts.give_up_after:
        cmd += ["--max-wait-time", str(float(opts.give_up_after))]
    # The SuperNode keeps its files under FLWR_HOME: one per institution.
    return PreparedNode(cmd, fp.child_env(state / "flower"), f"127.0.0.1:{port}", rows, schema_hash)


REFUSED = "Failed to activate SuperNode"


def explain_exit(code: int, recent: list[str]) -> str:
    """A clear reason for a SuperNode that stopped, from its exit status and last lines."""
    text = "\n".join(recent)
    if REFUSED in text:
        return ("the coordinator refused this SuperNode: its public key is not registered there "
                "(send the .pub file from `fedsynth keys` to the coordinator, which passes it with "
                "--authorized-key)")
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return "the coordinator's TLS certificate does not verify against --ca-cert (wrong CA, or a missing SAN)"
    if "Failed to initialize the connection" in text:
        return "could not connect to the coordinator: " + " ".join(text.split("Failed to initialize")[-1].split())[:300]
    return f"the SuperNode exited with status {code}" + (f": {recent[-1][:300]}" if recent else "")


def _run_once(prep: PreparedNode, recent: deque[str]) -> int:
    """Run the SuperNode until it exits, echoing its output; returns its exit status.

    Output is read on a thread and the process itself is waited on: Flower's helper
    processes inherit the pipe and may outlive the SuperNode by a moment.
    """
    proc = subprocess.Popen(prep.command, env=prep.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, bufsize=1)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            recent.append(line.rstrip())
            sys.stdout.write(line)
            sys.stdout.flush()

    reader = threading.Thread(target=pump, name="supernode-output", daemon=True)
    reader.start()
    executor = AppExecutor(prep.runtime_address)
    executor.start()
    try:
        code = proc.wait()
    finally:
        executor.stop()
        fp.stop(proc, grace=5)
    reader.join(timeout=2)
    return code


def run_node(opts: NodeOptions, say: Callable[[str], None]) -> int:
    """Start the SuperNode and keep it running; returns 0 after a clean stop.

    A refusal right after start-up is retried for a while (the coordinator may still be
    registering keys), then reported clearly: an unregistered institution cannot join.
    """
    prep = prepare_node(opts)
    mode = "plain text (INSECURE)" if opts.insecure else "TLS + key authentication"
    say(f"{opts.data}: {prep.rows} rows match {opts.schema} (schema hash {prep.schema_hash}); "
        f"budget epsilon {opts.budget_epsilon:g}, delta {opts.budget_delta:g}; ledger in {opts.state_dir}")
    say(f"connecting to {opts.coordinator} ({mode})")
    window = min(opts.give_up_after, REFUSAL_RETRY_S) if opts.give_up_after else REFUSAL_RETRY_S
    deadline = time.monotonic() + window
    while True:
        recent: deque[str] = deque(maxlen=40)
        try:
            code = _run_once(prep, recent)
        except KeyboardInterrupt:
            return 0
        if code == 0:
            return 0
        refused = any(REFUSED in line for line in recent)
        if refused and time.monotonic() < deadline:
            say(f"refused by the coordinator (key not registered, or registration still pending); "
                f"retrying for up to {max(0, int(deadline - time.monotonic()))}s")
            time.sleep(3)
            continue
        raise FedsynthError(explain_exit(code, list(recent)))
