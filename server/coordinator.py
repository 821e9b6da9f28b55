"""``fedsynth coordinator``: a Flower SuperLink with TLS and SuperNode authentication, one run.

What it does, in order:

1. reads the federation config (TOML; see :func:`load_deployment_config`) and the shared
   schema, and fixes the plan's schema hash;
2. starts ``flower-superlink`` (Deployment Engine) with TLS and ``--enable-supernode-auth``
   (plain text only with ``insecure=True``), with runtime dependency installation off:
   fedsynth is already installed, nothing is fetched at run time;
3. registers each institution's *public* key (``flwr supernode register``); a SuperNode
   whose key is not registered is refused by the SuperLink;
4. writes a tiny Flower App project (components ``fedsynth.server.app:app`` and
   ``fedsynth.client.app:app``) and submits it with ``flwr run``, the plan and SecAgg+
   settings travelling in the run config;
5. follows ``events.jsonl`` (written by the ServerApp) to print progress, and asks the
   SuperLink for the run's status, because ``flwr run`` reports success even when the
   ServerApp fails: a run that did not finish ``completed`` with a model is a failure.

Nothing about any institution's data is configured here: tables, budgets and ledgers are
set on each institution's own SuperNode (``fedsynth client``).
"""

from __future__ import annotations

import json
import subprocess
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fedsynth.common.deploy import processes as fp
from fedsynth.common.deploy.credentials import (
    CA_CERT,
    SERVER_CERT,
    SERVER_KEY,
    check_certificate,
    check_node_public_key,
    check_private_file,
)
from fedsynth.common.errors import FedsynthError
from fedsynth.common.protocol.flower_app import APP_NAME, APP_PUBLISHER, COMPONENTS, app_version
from fedsynth.common.protocol.federation import FederationPlan, SecAggSettings, federated_model_config
from fedsynth.common.model.tabular import ModelConfig
from fedsynth.common.inputs import read_text
from fedsynth.common.outputs import COORDINATOR_RUN, Existing, claim_dir, find_existing
from fedsynth.server.app import EVENTS_FILE, ServerRunSettings, reported_spend, run_config_for, spent_in
from fedsynth.server.fleet_gateway import FleetGateway, GatewayTLS

CONNECTION = "fedsynth"


# ---------------------------------------------------------------------------- config file
@dataclass
class DeploymentConfig:
    """The coordinator's config file: public run settings only."""

    plan: FederationPlan
    secagg: SecAggSettings
    schema: Path | None = None  # relative paths are resolved against the config file
    clients: int | None = None  # institutions expected; default = number of registered keys
    wait_timeout: int = 600  # seconds to wait for every institution to connect
    run_timeout: int = 6 * 3600  # seconds before the coordinator stops the run


def _known(section: str, raw: dict[str, Any], cls, path: Path, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    allowed = {f.name for f in fields(cls)} - set(skip)
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise FedsynthError(f"{path}: unknown key(s) {unknown} in {section}; allowed: {sorted(allowed)}")
    return raw


def load_deployment_config(path: Path) -> DeploymentConfig:
    """Parse the TOML config; every unknown or ill-typed key is an error naming file and key.

    Layout::

        schema = "schema.json"      # optional here; `--schema` wins
        clients = 3                 # optional; default: one per --authorized-key
        wait_timeout = 600
        [plan]                      # FederationPlan fields (schema_hash is filled in)
        rounds = 20
        local_epochs = 1.5
        [plan.model]                # ModelConfig fields
        model = "vae"
        [secagg]                    # SecAggSettings fields
        num_shares = 1.0
        reconstruction_threshold = 0.67
    """
    p = Path(path)
    try:
        raw = tomllib.loads(read_text(p, label="--config "))
    except tomllib.TOMLDecodeError as exc:
        raise FedsynthError(f"--config {p}: not valid TOML ({exc})") from None
    top = {"plan", "secagg", "schema", "clients", "wait_timeout", "run_timeout"}
    unknown = sorted(set(raw) - top)
    if unknown:
        raise FedsynthError(f"{p}: unknown key(s) {unknown}; allowed: {sorted(top)}")
    plan_raw = dict(raw.get("plan", {}))
    model_raw = plan_raw.pop("model", {})
    _known("[plan]", plan_raw, FederationPlan, p, skip=("schema_hash", "model"))
    _known("[plan.model]", model_raw, ModelConfig, p)
    secagg_raw = _known("[secagg]", dict(raw.get("secagg", {})), SecAggSettings, p)
    try:
        plan = FederationPlan(**plan_raw, model=federated_model_config(**model_raw))
        secagg = SecAggSettings(**secagg_raw)
    except (TypeError, ValueError) as exc:
        raise FedsynthError(f"{p}: {exc}") from None
    _check_plan(plan, secagg, p)
    schema = raw.get("schema")
    cfg = DeploymentConfig(plan=plan, secagg=secagg,
                           schema=(p.parent / schema).resolve() if isinstance(schema, str) else None,
                           clients=raw.get("clients"), wait_timeout=raw.get("wait_timeout", 600),
                           run_timeout=raw.get("run_timeout", 6 * 3600))
    for key in ("clients", "wait_timeout", "run_timeout"):
        v = getattr(cfg, key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise FedsynthError(f"{p}: {key} = {v!r}: must be a positive integer")
    return cfg


def _check_plan(plan: FederationPlan, secagg: SecAggSettings, p: Path) -> None:
    def bad(key: str, value: Any, why: str) -> FedsynthError:
        return FedsynthError(f"{p}: {key} = {value!r}: {why}")

    if not isinstance(plan.rounds, int) or plan.rounds < 1:
        raise bad("plan.rounds", plan.rounds, "must be an integer >= 1")
    if not isinstance(plan.local_epochs, (int, float)) or plan.local_epochs <= 0:
        raise bad("plan.local_epochs", plan.local_epochs, "must be > 0")
    if not isinstance(plan.min_clients, int) or plan.min_clients < 2:
        raise bad("plan.min_clients", plan.min_clients, "must be >= 2 (secure aggregation needs several parties)")
    if plan.clients_per_round is not None and (not isinstance(plan.clients_per_round, int) or plan.clients_per_round < 2):
        raise bad("plan.clients_per_round", plan.clients_per_round, "must be >= 2")
    if plan.model.model not in ("vae", "gan"):
        raise bad("plan.model.model", plan.model.model, "choose vae or gan")
    if not 0 < secagg.reconstruction_threshold or not 0 < secagg.num_shares:
        raise bad("secagg", asdict_short(secagg), "num_shares and reconstruction_threshold must be > 0")


def asdict_short(s: SecAggSettings) -> dict[str, Any]:
    return {"num_shares": s.num_shares, "reconstruction_threshold": s.reconstruction_threshold}


# ---------------------------------------------------------------------------- options
@dataclass
class CoordinatorOptions:
    config: Path
    out_dir: Path
    address: str = "127.0.0.1:9092"  # where the SuperLink listens (Fleet + Control API)
    schema: Path | None = None
    certs: Path | None = None  # folder written by `fedsynth certs`: ca.pem, server.pem, server.key
    authorized_keys: list[Path] = field(default_factory=list)
    insecure: bool = False
    clients: int | None = None
    # Seconds between run-status checks while the ServerApp's events are quiet (each check is
    # a `flwr ls` process: cheap, but not free on a small machine). A finished or failed
    # event triggers a check at once.
    status_every: float = 30.0


@dataclass
class Prepared:
    """Everything resolved and checked before any process starts."""

    settings: ServerRunSettings
    host: str
    port: int
    connect_host: str  # where local `flwr` commands reach the SuperLink: loopback
    superlink_port: int  # the SuperLink's own port, on loopback only (see fleet_gateway)
    flower_dir: Path
    keys: list[tuple[Path, str]]  # (public key file, fingerprint)
    tls: tuple[Path, Path, Path] | None  # (ca, cert, key)
    run_timeout: int
    status_every: float = 30.0


def prepare(opts: CoordinatorOptions) -> Prepared:
    from fedsynth.common.data.schema import Schema

    cfg = load_deployment_config(opts.config)
    schema_path = opts.schema or cfg.schema
    if schema_path is None:
        raise FedsynthError(f"no schema: give --schema or set `schema = ...` in {opts.config}")
    schema_path = Path(schema_path).resolve()
    if not schema_path.is_file():
        raise FedsynthError(f"schema {schema_path}: no such file")
    schema = Schema.load(schema_path)
    host, port = fp.parse_address(opts.address)
    out = Path(opts.out_dir).resolve()
    # a new or empty folder, or this coordinator's own interrupted run (resumed); nothing else
    if find_existing(out, COORDINATOR_RUN, "--out") is Existing.PREVIOUS and (out / "synthesizer").exists():
        raise FedsynthError(f"{out} already holds a finished run; choose a new --out")
    keys = [(Path(k).resolve(), check_node_public_key(Path(k))) for k in opts.authorized_keys]
    if len({fpr for _, fpr in keys}) != len(keys):
        raise FedsynthError("--authorized-key: the same public key is given twice")
    tls = None
    if opts.insecure:
        if keys:
            raise FedsynthError("--authorized-key needs TLS: SuperNode authentication is impossible with --insecure")
    else:
        if opts.certs is None:
            raise FedsynthError("--certs DIR is required (ca.pem, server.pem, server.key from `fedsynth certs`); "
                                "plain text only with --insecure")
        d = Path(opts.certs)
        tls = (check_certificate(d / CA_CERT, "--certs").resolve(),
               check_certificate(d / SERVER_CERT, "--certs").resolve(),
               check_private_file(d / SERVER_KEY, "--certs").resolve())
        if not keys:
            raise FedsynthError("give each institution's public key with --authorized-key (SuperNode "
                                "authentication is on; unregistered SuperNodes are refused)")
    clients = opts.clients or cfg.clients or len(keys)
    if clients < 2:
        raise FedsynthError("at least 2 institutions are needed: give --clients or one --authorized-key per institution")
    if keys and clients > len(keys):
        raise FedsynthError(f"{clients} institutions expected but only {len(keys)} key(s) registered")
    cfg.plan.schema_hash = schema.hash()
    settings = ServerRunSettings(plan=cfg.plan, secagg=cfg.secagg, schema=str(schema_path), out_dir=str(out),
                                 clients=clients, wait_timeout=cfg.wait_timeout)
    claim_dir(out, COORDINATOR_RUN, "--out")  # last: a refused start leaves no folder behind
    return Prepared(settings, host, port, "127.0.0.1", fp.free_loopback_port(), out / "flower", keys, tls,
                    cfg.run_timeout, opts.status_every)


# ---------------------------------------------------------------------------- files
def write_app_project(app_dir: Path) -> Path:
    """The Flower App that `flwr run` submits: only a pyproject naming fedsynth's components.

    fedsynth is installed on every machine, so the app bundle carries no code; its run
    config keys are filled per run from the federation config. Institutions check its
    identity (:mod:`fedsynth.common.protocol.flower_app`) and run their own installed ClientApp.
    """
    from fedsynth.common.atomic import atomic_write_text

    app_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(app_dir / "pyproject.toml", f"""[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{APP_NAME}"
version = "{app_version()}"
description = "fedsynth federated DP synthesizer (components are installed with fedsynth)"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "{APP_PUBLISHER}"

[tool.flwr.app.components]
serverapp = "{COMPONENTS['serverapp']}"
clientapp = "{COMPONENTS['clientapp']}"

[tool.flwr.app.config]
plan = ""
secagg = ""
schema = ""
out-dir = ""
clients = 0
wait-timeout = 600
""")
    return app_dir


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))  # a JSON string literal is a valid TOML basic string


def write_run_config(path: Path, values: dict[str, Any]) -> Path:
    from fedsynth.common.atomic import atomic_write_text

    atomic_write_text(path, "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items()))
    return path


def write_flwr_config(flwr_home: Path, address: str, ca: Path | None) -> None:
    """``$FLWR_HOME/config.toml`` with one connection, used by the `flwr` commands we run."""
    from fedsynth.common.atomic import atomic_write_text

    lines = ["[superlink]", f'default = "{CONNECTION}"', "", f"[superlink.{CONNECTION}]", f'address = "{address}"']
    lines += [f"root-certificates = {json.dumps(str(ca))}"] if ca else ["insecure = true"]
    flwr_home.mkdir(parents=True, exist_ok=True)
    atomic_write_text(flwr_home / "config.toml", "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------- running
class Coordinator:
    """One SuperLink and one run; its Flower processes end with it (see flower_processes.Supervisor)."""

    def __init__(self, prep: Prepared, say: Callable[[str], None], warn: Callable[[str], None]) -> None:
        self.p, self.say, self.warn = prep, say, warn
        self.home = prep.flower_dir / "home"
        self.env = fp.child_env(self.home)
        self.children = fp.Supervisor(prep.flower_dir / fp.PID_FILE, "fedsynth coordinator")
        self.superlink: subprocess.Popen | None = None
        self.gateway: FleetGateway | None = None
        events = Path(prep.settings.out_dir) / EVENTS_FILE  # a resumed run's old events are not news
        self.events_seen = len(events.read_text(encoding="utf-8").splitlines()) if events.exists() else 0
        self.last_failure: str | None = None
        self.names: dict[str, str] = {}  # node id -> the institution's key name, as registered
        self.spent: dict[str, float] = {}  # node id -> epsilon spent, as last reported in an event

    # -- flwr CLI ------------------------------------------------------------------
    def flwr(self, *args: str, timeout: float = 120) -> dict[str, Any]:
        cmd = [fp.executable("flwr"), *args, "--format", "json"]
        try:
            res = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout,
                                 cwd=self.p.flower_dir)
        except subprocess.TimeoutExpired:
            raise FedsynthError(f"`flwr {args[0]}` did not answer within {timeout}s") from None
        payload = _last_json(res.stdout)
        if payload is None or not payload.get("success", False):
            detail = (payload or {}).get("error-message") or (res.stdout + res.stderr).strip()[-800:]
            raise FedsynthError(f"`flwr {' '.join(args[:2])}` failed: {detail}")
        return payload

    # -- lifecycle -----------------------------------------------------------------
    def start_superlink(self) -> None:
        p = self.p
        cmd = [fp.executable("flower-superlink"), "--host", p.connect_host, "--port", str(p.superlink_port),
               "--isolation", "subprocess", "--disable-runtime-dependency-installation"]
        if p.tls is None:
            cmd += ["--insecure"]
        else:
            ca, cert, key = p.tls
            cmd += ["--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
                    "--enable-supernode-auth"]
        self.superlink = self.children.start("SuperLink", cmd, self.env, p.flower_dir / "superlink.log")
        self._wait_listening(60)

    def open_gateway(self) -> None:
        """Open the institutions' port: the Fleet API only (see :mod:`fedsynth.server.fleet_gateway`)."""
        p = self.p
        tls = None if p.tls is None else GatewayTLS(*p.tls)
        self.gateway = FleetGateway(p.host, p.port, p.superlink_port, tls, self.warn)
        self.gateway.start()

    def _wait_listening(self, timeout: float) -> None:
        """Until *our* SuperLink listens: one that failed to bind (port taken) is an error naming the holder."""
        assert self.superlink is not None
        self.children.wait_listening(self.superlink, self.p.connect_host, self.p.superlink_port, timeout)

    def register_keys(self) -> None:
        for pub, fingerprint in self.p.keys:
            deadline = time.time() + 30
            while True:
                try:
                    res = self.flwr("supernode", "register", str(pub), CONNECTION)
                    break
                except FedsynthError:
                    if time.time() > deadline:
                        raise
                    time.sleep(1)  # the Control API may come up a moment after the port
            self.names[str(res.get("node-id"))] = pub.name.removesuffix(".pub")
            self.say(f"registered institution key {pub.name} ({fingerprint}) as node {res.get('node-id')}")

    def submit(self) -> str:
        p = self.p
        app = write_app_project(p.flower_dir / "app")
        run_cfg = write_run_config(p.flower_dir / "run_config.toml", run_config_for(p.settings))
        res = self.flwr("run", str(app), CONNECTION, "--run-config", str(run_cfg))
        run_id = str(res.get("run-id"))
        s = p.settings
        self.say(f"run {run_id} submitted: {s.plan.rounds} rounds, {s.clients} institutions, SecAgg+ "
                 f"(shares {s.secagg.num_shares}, threshold {s.secagg.reconstruction_threshold}), "
                 f"schema hash {s.plan.schema_hash}")
        return run_id

    def status(self, run_id: str) -> tuple[str, str]:
        res = self.flwr("ls", CONNECTION, "--run-id", run_id, timeout=60)
        run = (res.get("runs") or [{}])[0]
        return str(run.get("status", "")), str(run.get("status-details", ""))

    def follow(self, run_id: str) -> bool:
        """Print events until the run is finished; True iff it completed with a model."""
        out = Path(self.p.settings.out_dir)
        deadline = time.time() + self.p.run_timeout
        last_check, ended = 0.0, False
        while True:
            ended = self._print_new_events(out / EVENTS_FILE) or ended
            now = time.time()
            if (dead := self.children.exited()) is not None:
                self.warn(f"the {dead.name} exited unexpectedly (status {dead.proc.returncode}): "
                          f"{fp.log_tail(dead.log_file)}")
                self._warn_spent()
                return False
            # after the ServerApp's last event, check soon (the status may lag a moment)
            if now - last_check >= (2.0 if ended else self.p.status_every):
                last_check = now
                status, details = self.status(run_id)
                if status.startswith("finished"):
                    self._print_new_events(out / EVENTS_FILE)
                    ok = status == "finished:completed" and (out / "synthesizer").is_dir() \
                        and (out / "model_card.json").is_file()
                    if not ok:
                        why = self.last_failure or details or "see the SuperLink log"
                        self.warn(f"run {run_id} ended as {status}: {why} "
                                  f"(log: {self.p.flower_dir / 'superlink.log'})")
                        self._warn_spent()
                    return ok
            if now > deadline:
                self.warn(f"run {run_id} exceeded run_timeout = {self.p.run_timeout}s; stopping it")
                try:
                    self.flwr("stop", run_id, CONNECTION, timeout=60)
                except FedsynthError as exc:
                    self.warn(str(exc))
                self._warn_spent()
                return False
            time.sleep(0.5)

    def _print_new_events(self, path: Path) -> bool:
        """Print events not printed yet; True once the ServerApp said it finished or failed."""
        if not path.exists():
            return False
        lines = path.read_text(encoding="utf-8").splitlines()
        ended = False
        for line in lines[self.events_seen:]:
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                break  # a line still being written; read it next time
            self.events_seen += 1
            self.spent.update(reported_spend(ev))
            msg = describe_event(ev, self.p.settings.plan.schema_hash, self.names)
            if msg:
                self.say(msg)
            if ev.get("event") == "failed":
                self.last_failure = str(ev.get("reason"))
            ended = ended or ev.get("event") in ("finished", "failed")
        return ended

    def _warn_spent(self) -> None:
        """A failed run still cost the institutions what they spent: say so, as they reported it."""
        self.warn(f"privacy spent by the institutions in this failed run, as last reported: "
                  f"epsilon {{{format_spent(self.spent, self.names)}}} (each institution's own ledger is "
                  f"authoritative; a round lost to a failure can be counted although no model used it)")

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        self.children.close()
        self.superlink = None


def node_label(nid: str, names: dict[str, str]) -> str:
    return f"node {nid} ({names[nid]})" if nid in names else f"node {nid}"


def format_spent(spent: dict[str, float], names: dict[str, str]) -> str:
    return ", ".join(f"{node_label(nid, names)}: {eps}" for nid, eps in sorted(spent.items())) or "none reported"


def describe_event(ev: dict[str, Any], plan_hash: str, names: dict[str, str] | None = None) -> str | None:
    """One progress line: rounds, each institution's reported epsilon, refusals and why.

    ``names`` (node id -> key name, from the registration) labels nodes by institution."""
    kind = ev.get("event")
    names = names or {}

    def eps(replies: dict[str, Any]) -> str:
        return format_spent(spent_in(replies), names)

    if kind == "budget_check":
        replies = ev.get("replies", {})
        parts = [f"round {ev['round']}: {ev['eligible']}/{len(replies)} institutions can afford it; "
                 f"epsilon spent {{{eps(replies)}}}"]
        for nid, r in sorted(replies.items()):
            if not r.get("can_train"):
                reason = r.get("reason", "?")
                if reason == "schema mismatch":
                    reason += f" (its schema hash {r.get('schema_hash')}, the coordinator's {plan_hash})"
                parts.append(f"  {node_label(nid, names)} refused: {reason}")
        return "\n".join(parts)
    if kind == "round_done":
        step = f", server step {float(ev['server_lr']):.2f} x mean" if "server_lr" in ev else ""
        return (f"round {ev['round']} done in {float(ev.get('seconds', 0)):.1f}s: {ev.get('contributors')} updates "
                f"securely aggregated{step}; epsilon spent {{{eps(ev.get('reports', {}))}}}")
    if kind == "finished":
        return f"finished after round {ev['round']}; final epsilon spent {{{eps(ev.get('budget', {}))}}}"
    if kind == "waiting":
        return (f"round {ev['round']}: {ev['answered']}/{ev['expected']} institutions answered, too few to "
                f"train; waiting up to {ev['timeout']}s for the others to come back")
    if kind in ("stopped", "round_failed", "resumed"):
        return f"{kind}: " + ", ".join(f"{k}={v}" for k, v in ev.items() if k != "event")
    if kind == "failed":
        return (f"ServerApp failed: {ev.get('reason')}; epsilon spent as last reported "
                f"{{{format_spent(ev.get('spent') or {}, names)}}}")
    return None


def _last_json(text: str) -> dict[str, Any] | None:
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


def run_coordinator(opts: CoordinatorOptions, say: Callable[[str], None], warn: Callable[[str], None]) -> bool:
    """The whole `fedsynth coordinator` command; True iff the run completed with a model."""
    prep = prepare(opts)
    prep.flower_dir.mkdir(parents=True, exist_ok=True)
    (prep.flower_dir / "home").mkdir(exist_ok=True)
    write_flwr_config(prep.flower_dir / "home", f"{prep.connect_host}:{prep.superlink_port}",
                      prep.tls[0] if prep.tls else None)
    coord = Coordinator(prep, say, warn)
    for stale in coord.children.reclaim():  # before the try: a running owner's pid file is not ours to remove
        warn(stale)
    try:
        coord.start_superlink()
        coord.open_gateway()
        mode = "plain text (INSECURE)" if prep.tls is None else "TLS, SuperNode authentication on"
        say(f"listening for institutions on {prep.host}:{prep.port} ({mode}; Fleet API only, the SuperLink's "
            f"Control API stays on 127.0.0.1:{prep.superlink_port}); log {prep.flower_dir / 'superlink.log'}")
        coord.register_keys()
        run_id = coord.submit()
        say(f"waiting for {prep.settings.clients} institutions (up to {prep.settings.wait_timeout}s)")
        ok = coord.follow(run_id)
    finally:
        coord.stop()
    if ok:
        out = Path(prep.settings.out_dir)
        say(f"done: {out / 'synthesizer'} and {out / 'model_card.json'}")
    return ok
