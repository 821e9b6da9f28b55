"""What a federated run is asked to do, read and checked before it starts.

The federation config file (TOML: the plan, SecAgg+ settings, schema, timeouts; see
:func:`load_deployment_config`) holds public run settings only: every unknown or ill-typed
key is an error naming file and key. :func:`prepare` adds ``fedsynth coordinator``'s options
(address, TLS certificates, the institutions' public keys, the output folder) and resolves
them into one :class:`Prepared` before any process starts, so that a refused start leaves
nothing behind. :func:`settings_for_run` resolves the same file for a run submitted with
``flwr run`` (the ServerApp reads it from the run config).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fedsynth.common.data.schema import Schema
from fedsynth.common.deploy.addresses import free_loopback_port, parse_address
from fedsynth.common.deploy.credentials import (
    CA_CERT,
    SERVER_CERT,
    SERVER_KEY,
    check_certificate,
    check_node_public_key,
    check_private_file,
)
from fedsynth.common.errors import FedsynthError
from fedsynth.common.inputs import read_text
from fedsynth.common.model.marginal_fit import MarginalFitConfig
from fedsynth.common.model.tabular import ModelConfig
from fedsynth.common.outputs import COORDINATOR_RUN, Existing, claim_dir, find_existing
from fedsynth.common.protocol.federation import FederationPlan, SecAggSettings, federated_model_config
from fedsynth.server.run_config import ServerRunSettings, settings_from_run_config
from fedsynth.server.shared_plan import SHARED_PAIRS, SharedNoiseRequest


@dataclass
class DeploymentConfig:
    """The coordinator's config file: public run settings only."""

    plan: FederationPlan
    secagg: SecAggSettings
    schema: Path | None = None  # relative paths are resolved against the config file
    clients: int | None = None  # institutions expected; default = number of registered keys
    wait_timeout: int = 600  # seconds to wait for every institution to connect
    run_timeout: int = 6 * 3600  # seconds before the coordinator stops the run
    shared_noise: SharedNoiseRequest | None = None  # [plan.shared_noise]: resolved once the schema is known


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
        [plan.marginal_fit]         # optional: the marginal fit, MarginalFitConfig fields (without the table:
        pairs = 30                  #   SHARED_PAIRS with shared noise, as simulate; none with local noise)
        [plan.shared_noise]         # optional: noise shared under SecAgg+ (SharedNoiseRequest fields)
        sample_rate = 0.2
        epsilon = 1.0               # sigma is calibrated for it (or give noise_multiplier)
        collusion_tolerance = 1
        min_contributors = 3
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
    shared_raw = plan_raw.pop("shared_noise", None)
    marginal_raw = plan_raw.pop("marginal_fit", None)
    _known("[plan]", plan_raw, FederationPlan, p, skip=("schema_hash", "model", "shared_noise", "marginal_fit"))
    _known("[plan.model]", model_raw, ModelConfig, p)
    if marginal_raw is not None:
        _known("[plan.marginal_fit]", marginal_raw, MarginalFitConfig, p)
    if shared_raw is not None:
        _known("[plan.shared_noise]", shared_raw, SharedNoiseRequest, p)
    secagg_raw = _known("[secagg]", dict(raw.get("secagg", {})), SecAggSettings, p)
    try:
        # pooled noise: the single-party widths; local noise: the narrower federated ones
        model = ModelConfig(**model_raw) if shared_raw is not None else federated_model_config(**model_raw)
        # shared noise fits SHARED_PAIRS by default, as simulate does (measured there), unless the
        # table names its pairs; a table under local noise gets MarginalFitConfig's defaults
        default_pairs = {"pairs": SHARED_PAIRS} if shared_raw is not None else {}
        if marginal_raw is not None or shared_raw is not None:
            plan_raw["marginal_fit"] = MarginalFitConfig(**{**default_pairs, **(marginal_raw or {})})
        plan = FederationPlan(**plan_raw, model=model)
        secagg = SecAggSettings(**secagg_raw)
        shared = SharedNoiseRequest(**shared_raw) if shared_raw is not None else None
    except (TypeError, ValueError, FedsynthError) as exc:
        raise FedsynthError(f"{p}: {exc}") from None
    _check_plan(plan, secagg, p)
    schema = raw.get("schema")
    cfg = DeploymentConfig(plan=plan, secagg=secagg,
                           schema=(p.parent / schema).resolve() if isinstance(schema, str) else None,
                           clients=raw.get("clients"), wait_timeout=raw.get("wait_timeout", 600),
                           run_timeout=raw.get("run_timeout", 6 * 3600), shared_noise=shared)
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
    """Read and check the config, schema, keys and certificates, and claim ``--out``."""
    cfg = load_deployment_config(opts.config)
    schema_path = opts.schema or cfg.schema
    if schema_path is None:
        raise FedsynthError(f"no schema: give --schema or set `schema = ...` in {opts.config}")
    schema_path = Path(schema_path).resolve()
    if not schema_path.is_file():
        raise FedsynthError(f"schema {schema_path}: no such file")
    schema = Schema.load(schema_path)
    host, port = parse_address(opts.address)
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
    settings = _resolved(cfg, schema_path, schema, out, clients, f"{opts.config}")
    claim_dir(out, COORDINATOR_RUN, "--out")  # last: a refused start leaves no folder behind
    return Prepared(settings, host, port, "127.0.0.1", free_loopback_port(), out / "flower", keys, tls,
                    cfg.run_timeout, opts.status_every)


def _resolved(cfg: DeploymentConfig, schema_path: Path, schema: Schema, out: Path, clients: int,
              source: str) -> ServerRunSettings:
    """The plan fixed to the schema (its hash, the shared-noise calibration) and the run's settings."""
    cfg.plan.schema_hash = schema.hash()
    if cfg.shared_noise is not None:
        try:
            cfg.plan = cfg.shared_noise.resolve(cfg.plan, schema)
        except (ValueError, FedsynthError) as exc:
            raise FedsynthError(f"{source}: [plan.shared_noise]: {exc}") from None
        if clients < cfg.plan.shared_noise.min_contributors:
            raise FedsynthError(f"{source}: min_contributors = {cfg.plan.shared_noise.min_contributors} but only "
                                f"{clients} institutions are expected")
    return ServerRunSettings(plan=cfg.plan, secagg=cfg.secagg, schema=str(schema_path), out_dir=str(out),
                             clients=clients, wait_timeout=cfg.wait_timeout)


def settings_for_run(run_config: dict[str, Any]) -> ServerRunSettings:
    """The ServerApp's settings from a Flower run config, by either route.

    ``fedsynth coordinator`` sends the resolved plan (``plan``, ``secagg``, ...); a run started
    with ``flwr run . <connection>`` names the federation config file instead (``federation-config``,
    ``out-dir``, optionally ``schema`` and ``clients``: absolute paths on the SuperLink's machine,
    where the ServerApp runs). The output folder is claimed as ``fedsynth coordinator`` claims it:
    a new or empty folder, or this kind of run's own unfinished one.
    """
    if str(run_config.get("plan", "")):
        return settings_from_run_config(run_config)
    given = {k: str(run_config.get(k, "")) for k in ("federation-config", "out-dir", "schema")}
    if not given["federation-config"] or not given["out-dir"]:
        raise FedsynthError("run config: give federation-config (the coordinator's TOML config) and out-dir, e.g. "
                            "flwr run . <connection> --run-config 'federation-config=\"/abs/federation.toml\" "
                            "out-dir=\"/abs/run\"'")
    for key, value in given.items():
        if value and not Path(value).is_absolute():
            raise FedsynthError(f"run config {key} = {value!r}: give an absolute path on the SuperLink's machine "
                                "(the ServerApp does not run in your working directory)")
    cfg = load_deployment_config(Path(given["federation-config"]))
    schema_path = Path(given["schema"]) if given["schema"] else cfg.schema
    if schema_path is None:
        raise FedsynthError(f"no schema: set schema in the run config or `schema = ...` in {given['federation-config']}")
    if not schema_path.is_file():
        raise FedsynthError(f"schema {schema_path}: no such file")
    clients = int(run_config.get("clients", 0) or 0) or cfg.clients or 0
    if clients < 2:
        raise FedsynthError(f"run config: clients = {clients}: set clients (the institutions expected, at least 2) "
                            f"in the run config or in {given['federation-config']}")
    out = Path(given["out-dir"])
    if find_existing(out, COORDINATOR_RUN, "out-dir") is Existing.PREVIOUS and (out / "synthesizer").exists():
        raise FedsynthError(f"{out} already holds a finished run; choose a new out-dir")
    settings = _resolved(cfg, schema_path, Schema.load(schema_path), out, clients, given["federation-config"])
    claim_dir(out, COORDINATOR_RUN, "out-dir")
    return settings
