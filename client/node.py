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

import json
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from flwr.proto.fleet_pb2 import DeactivateNodeRequest
from flwr.supercore.interceptors.http.runtime_version import RuntimeVersionHttpInterceptor
from flwr.supernode.fleet_http_client import FleetHttpClient
from flwr.supernode.node_auth_http_interceptor import NodeAuthHttpInterceptor

from fedsynth.client.installed_app import AppExecutor
from fedsynth.client.ledger import Ledger
from fedsynth.common.atomic import atomic_write_text
from fedsynth.common.data.schema import Schema
from fedsynth.common.data.tables import validate_file
from fedsynth.common.deploy import processes as fp
from fedsynth.common.deploy.addresses import free_loopback_port, parse_address
from fedsynth.common.deploy.credentials import check_certificate, check_node_private_key
from fedsynth.common.dp.accounting import check_privacy_params
from fedsynth.common.errors import DataError, FedsynthError

NODE_CONFIG_FILE = "node_config.toml"
# A refusal is retried this long: a just-started coordinator may still be registering keys, and a
# SuperNode of ours that was killed without signing off stays "connected" at the coordinator
# until it misses two heartbeats (Flower: 2 x 30 s).
REFUSAL_RETRY_S = 90.0
REFUSAL_PAUSE_S = 3.0
RESTART_PAUSE_S = 2.0  # after a SuperNode that had been accepted stopped on its own
MAX_RESTART_PAUSE_S = 30.0


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
    if opts.init_ledger:
        Ledger.create(state, opts.budget_epsilon, opts.budget_delta)
    else:
        Ledger.open(state, opts.budget_epsilon, opts.budget_delta)


def prepare_node(opts: NodeOptions) -> PreparedNode:
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
    port = opts.runtime_port or free_loopback_port()
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
CONNECTED = re.compile(r"SuperNode ID: (\d+)")  # logged once the coordinator has accepted this node
# The node id of our SuperNode while it may count as connected at the coordinator; see sign_off.
NODE_ID_FILE = "supernode-id"
# After signing a node off: more than two of Flower's 3 s polls (the ServerApp's own: 0.5 s), so that it
# sees the node go before the next SuperNode brings the same node id back.
SIGN_OFF_PAUSE_S = 8.0
TLS_FAILURES = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed")


def explain_exit(code: int, recent: list[str]) -> str:
    """A clear reason for a SuperNode that stopped, from its exit status and last lines."""
    text = "\n".join(recent)
    if REFUSED in text:
        return ("the coordinator refused this SuperNode: its public key is not registered there "
                "(send the .pub file from `fedsynth keys` to the coordinator, which passes it with "
                "--authorized-key), or a SuperNode with this key is still connected to it")
    if any(t in text for t in TLS_FAILURES):
        return "the coordinator's TLS certificate does not verify against --ca-cert (wrong CA, or a missing SAN)"
    if "Failed to initialize the connection" in text:
        return "could not connect to the coordinator: " + " ".join(text.split("Failed to initialize")[-1].split())[:300]
    return f"the SuperNode exited with status {code}" + (f": {recent[-1][:300]}" if recent else "")


@dataclass(frozen=True)
class Attempt:
    """How one SuperNode process ended."""

    code: int
    connected: bool  # the coordinator accepted it at some point
    seconds: float
    recent: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.recent)


def _run_once(prep: PreparedNode, children: fp.Supervisor, state: Path) -> Attempt:
    """Run the SuperNode (and the AppExecutor that runs its tasks) until it exits, echoing its output.

    Output is read on a thread and the process itself is waited on. The node id it is given
    is kept in ``state`` until :func:`sign_off` has made sure it is signed off.
    """
    started = time.monotonic()
    recent: deque[str] = deque(maxlen=40)
    connected = threading.Event()
    proc = children.start("SuperNode", prep.command, prep.env, capture=True)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            recent.append(line.rstrip())
            if (m := CONNECTED.search(line)) is not None:
                atomic_write_text(state / NODE_ID_FILE, m.group(1) + "\n")
                connected.set()
            sys.stdout.write(line)
            sys.stdout.flush()

    reader = threading.Thread(target=pump, name="supernode-output", daemon=True)
    reader.start()
    executor = AppExecutor(prep.runtime_address)
    executor.start()
    try:
        ended = children.wait_any()
    finally:
        executor.stop()
        children.stop(grace=5)
    reader.join(timeout=2)
    return Attempt(ended.proc.returncode, connected.is_set(), time.monotonic() - started, list(recent))


@dataclass
class Reconnect:
    """Whether, and after how long, to start the SuperNode again once it stopped on its own.

    Only a deliberate stop (Ctrl-C, SIGTERM) ends ``fedsynth client`` with 0. A SuperNode
    that had been accepted and then stopped (the coordinator restarted and forgot this node,
    or went away) is started again, with a growing pause if that keeps happening at once; one
    that is refused is retried for a while (the coordinator may still be registering keys);
    one that never got in otherwise is an error: it gave up connecting after ``give_up_after``
    (its --max-wait-time; without it, it retries for ever) or failed for good (TLS). So an
    unreachable coordinator ends the client after give_up_after to 2 x give_up_after seconds.
    """

    give_up_after: float | None
    refused_since: float | None = None
    pause: float = RESTART_PAUSE_S

    def next_pause(self, attempt: Attempt, now: float) -> float:
        """Seconds to wait before the next start; raises FedsynthError when it is time to stop."""
        if attempt.connected:
            self.refused_since = None
            # a node that keeps being dropped at once backs off; one that ran a while starts fresh
            self.pause = RESTART_PAUSE_S if attempt.seconds > 60 else min(self.pause * 2, MAX_RESTART_PAUSE_S)
            return self.pause
        if REFUSED in attempt.text:
            self.refused_since = self.refused_since if self.refused_since is not None else now
            if self.refusal_left(now) > 0:
                return REFUSAL_PAUSE_S
        raise FedsynthError(explain_exit(attempt.code, attempt.recent))

    def refusal_left(self, now: float) -> float:
        """Seconds left to retry refusals in a row (--give-up-after shortens the window)."""
        window = min(self.give_up_after or REFUSAL_RETRY_S, REFUSAL_RETRY_S)
        return window - (now - self.refused_since) if self.refused_since is not None else window


def sign_off(opts: NodeOptions, state: Path, say: Callable[[str], None]) -> None:
    """Make sure our previous SuperNode no longer counts as connected before starting another.

    A SuperNode killed while busy (its parent SIGKILLed, a crash) cannot sign off, and the
    coordinator keeps it "online" until it misses two heartbeats. If the next SuperNode
    came back with the same node id just as that expires, the ServerApp might never see
    the node go and would wait for ever for the replies the dead one owed. So the node is
    signed off here (DeactivateNode, authenticated with this institution's key, as the
    SuperNode itself does on a clean exit) and the coordinator is given a moment to notice.
    Without a key (``--insecure``) every SuperNode is a new, anonymous node: nothing to do.
    """
    path = state / NODE_ID_FILE
    if not path.exists():
        return
    node_id = int(path.read_text().strip())
    if opts.auth_key is not None and opts.ca_cert is not None:
        try:
            _deactivate(opts.coordinator, Path(opts.ca_cert), Path(opts.auth_key), node_id)
            say(f"signed off node {node_id} (left connected by a SuperNode that was stopped)")
        except Exception:  # noqa: BLE001, S110 - already offline, forgotten by a restarted coordinator, unreachable
            pass
        time.sleep(SIGN_OFF_PAUSE_S)
    path.unlink(missing_ok=True)


def _deactivate(coordinator: str, ca_cert: Path, auth_key: Path, node_id: int) -> None:
    """Sign ``node_id`` off with Flower's own Fleet client and node-auth signing, as flower-supernode does (flwr 1.41)."""
    key = load_ssh_private_key(auth_key.read_bytes(), None)
    interceptors = [RuntimeVersionHttpInterceptor(component_name="SuperNode"),
                    NodeAuthHttpInterceptor(key, key.public_key())]  # type: ignore[arg-type]
    with FleetHttpClient.from_server_address(coordinator, False, str(ca_cert), interceptors=interceptors) as fleet:
        fleet.DeactivateNode(DeactivateNodeRequest(node_id=node_id))


def run_node(opts: NodeOptions, say: Callable[[str], None]) -> int:
    """Start the SuperNode and keep it running; returns 0 after a deliberate stop (Ctrl-C, SIGTERM).

    The SuperNode runs as a supervised child (it ends with this process, however that ends;
    a restart stops what a killed predecessor left). When it stops on its own it is started
    again as :class:`Reconnect` decides, so the institution survives a coordinator restart.
    """
    prep = prepare_node(opts)
    state = Path(opts.state_dir).resolve()
    children = fp.Supervisor(state / fp.PID_FILE, "fedsynth client")
    for stale in children.reclaim():
        say(stale)
    mode = "plain text (INSECURE)" if opts.insecure else "TLS + key authentication"
    say(f"{opts.data}: {prep.rows} rows match {opts.schema} (schema hash {prep.schema_hash}); "
        f"budget epsilon {opts.budget_epsilon:g}, delta {opts.budget_delta:g}; ledger in {opts.state_dir}")
    say(f"connecting to {opts.coordinator} ({mode})")
    policy = Reconnect(opts.give_up_after)
    try:
        while True:
            sign_off(opts, state, say)
            attempt = _run_once(prep, children, state)
            pause = policy.next_pause(attempt, time.monotonic())
            if attempt.connected:
                say(f"the SuperNode stopped (status {attempt.code}): the coordinator restarted, forgot this "
                    f"node or went away; reconnecting in {pause:g}s")
            else:
                say(f"refused by the coordinator (key not registered, registration still pending, or a "
                    f"previous SuperNode of ours not yet released); retrying for up to "
                    f"{max(0, int(policy.refusal_left(time.monotonic())))}s")
            time.sleep(pause)
    except KeyboardInterrupt:
        return 0
    finally:
        children.close(grace=5)
