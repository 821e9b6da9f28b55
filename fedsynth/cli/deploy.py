"""A real federation: credentials, the coordinator and an institution's client."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Optional

import typer

from fedsynth.cli.shared import err, out

# lazy: each command imports what it runs (pandas, torch, Flower, cryptography) inside its function,
# so that `fedsynth --help` and the other commands do not load it.


def _stop_on_sigterm() -> None:
    """Turn SIGTERM (docker stop, a supervisor) into KeyboardInterrupt so Flower children are stopped."""
    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def certs(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for ca.pem, ca.key, server.pem, server.key.")],
    san: Annotated[Optional[list[str]], typer.Option(help="Extra name or IP address the coordinator is reached by (repeatable); localhost and 127.0.0.1 are always included.")] = None,
    days: Annotated[int, typer.Option(help="Validity in days.")] = 365,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the CA an earlier `fedsynth certs` wrote at --out (institutions then need the new ca.pem).")] = False,
) -> None:
    """Create a private CA and the coordinator's TLS certificate (keys 0600, never printed).

    Give institutions ca.pem only; ca.key and server.key stay with the coordinator.
    """
    from fedsynth.common.deploy.credentials import CertificateRequest, issue_certificates

    sans = tuple(dict.fromkeys(["localhost", "127.0.0.1", *(san or [])]))
    issued = issue_certificates(CertificateRequest(out_dir=out_dir, sans=sans, days=days, overwrite=overwrite))
    out.print(f"[green]wrote[/] {issued.ca_cert} (give to institutions), {issued.server_cert}; private keys "
              f"{issued.ca_key.name}, {issued.server_key.name} (mode 0600); SANs {', '.join(issued.sans)}",
              highlight=False)


def keys(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the key pairs.")],
    name: Annotated[list[str], typer.Option(help="One key pair per name: NAME (private, 0600) and NAME.pub (repeatable).")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace key pairs of these names that an earlier `fedsynth keys` wrote in --out.")] = False,
) -> None:
    """Create SuperNode authentication key pairs (EC P-384, OpenSSH format).

    Each institution keeps its private key; the coordinator registers the .pub files with
    `fedsynth coordinator --authorized-key`.
    """
    from fedsynth.common.deploy.credentials import generate_node_keys

    for n in name:
        pair = generate_node_keys(out_dir, n, overwrite=overwrite)
        out.print(f"[green]wrote[/] {pair.public_key} ({pair.fingerprint}) and its private key {pair.private_key} "
                  "(mode 0600)", highlight=False)


def coordinator(
    config: Annotated[Path, typer.Option(help="Federation config (TOML): tables plan, plan.model, secagg; keys schema, clients, wait_timeout.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder: synthesizer/, model_card.json, events.jsonl, flower/ logs.")],
    schema: Annotated[Optional[Path], typer.Option(help="Shared public schema (default: `schema` in --config).")] = None,
    address: Annotated[str, typer.Option(help="HOST:PORT the SuperLink listens on (institutions connect here).")] = "127.0.0.1:9092",
    certs_dir: Annotated[Optional[Path], typer.Option("--certs", help="Folder from `fedsynth certs` (ca.pem, server.pem, server.key).")] = None,
    authorized_key: Annotated[Optional[list[str]], typer.Option(help="An institution's public key (.pub) to register (repeatable).")] = None,
    clients: Annotated[Optional[int], typer.Option(min=2, help="Institutions expected (default: config `clients`, else one per --authorized-key).")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Plain-text transport, no node authentication: testing only.")] = False,
) -> None:
    """Start the coordinator (Flower SuperLink, TLS + SuperNode authentication) and run one federation.

    Prints each round and every institution's reported epsilon; exits 0 only when the run
    completed and OUT/synthesizer and OUT/model_card.json were written, 1 when it failed.
    """
    from fedsynth.server.coordinator import run_coordinator
    from fedsynth.server.deployment_config import CoordinatorOptions

    _stop_on_sigterm()
    if insecure:
        err.print("[bold yellow]WARNING:[/] --insecure: traffic between coordinator and institutions is NOT "
                  "encrypted and any SuperNode can join. Use only for local testing.")
    say = lambda m: out.print(m, highlight=False, markup=False)  # noqa: E731
    warn = lambda m: err.print(f"[red]{m}[/]", highlight=False)  # noqa: E731
    try:
        ok = run_coordinator(CoordinatorOptions(config=config, out_dir=out_dir, address=address, schema=schema,
                                                certs=certs_dir, authorized_keys=[Path(k) for k in authorized_key or []],
                                                insecure=insecure, clients=clients), say, warn)
    except KeyboardInterrupt:
        err.print("interrupted; SuperLink stopped")
        raise typer.Exit(130)
    if not ok:
        err.print("[bold red]error:[/] the federated run failed; no model was produced")
        raise typer.Exit(1)


def client(
    data: Annotated[Path, typer.Option(help="This institution's table (CSV or Parquet); never leaves this machine.")],
    schema: Annotated[Path, typer.Option(help="The shared public schema JSON.")],
    budget_epsilon: Annotated[float, typer.Option(help="This institution's privacy cap epsilon (over all runs).")],
    budget_delta: Annotated[float, typer.Option(help="This institution's delta; well below 1/(its rows).")],
    coordinator_address: Annotated[str, typer.Option("--coordinator", help="HOST:PORT of the coordinator.")],
    state_dir: Annotated[Path, typer.Option(help="Folder for this institution's privacy ledger and state (mode 0700).")],
    ca_cert: Annotated[Optional[Path], typer.Option(help="CA certificate (ca.pem) that verifies the coordinator.")] = None,
    auth_key: Annotated[Optional[Path], typer.Option(help="This institution's private key from `fedsynth keys` (mode 0600).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Expected Poisson batch size (default: rows/12, 64..2048).")] = None,
    threads: Annotated[int, typer.Option(min=1, help="CPU threads for training.")] = 1,
    runtime_port: Annotated[int, typer.Option(min=0, max=65535, help="Local port of the SuperNode's runtime API (0 = any free port).")] = 0,
    give_up_after: Annotated[Optional[float], typer.Option(min=1.0, help="Exit when the coordinator has been unreachable this many seconds (default: keep retrying).")] = None,
    init_ledger: Annotated[bool, typer.Option("--init-ledger", help="First start only: create the privacy ledger in --state-dir (refused if one exists).")] = False,
    insecure: Annotated[bool, typer.Option("--insecure", help="Plain-text transport, no authentication: testing only.")] = False,
) -> None:
    """Start this institution's Flower SuperNode on its own table, budget and ledger.

    The table is validated against the schema first; nothing about it is configured at the
    coordinator. Runs until stopped (Ctrl-C) or until the coordinator refuses it.
    """
    from fedsynth.client.node import NodeOptions, run_node

    _stop_on_sigterm()
    if insecure:
        err.print("[bold yellow]WARNING:[/] --insecure: traffic to the coordinator is NOT encrypted and this "
                  "node is not authenticated. Use only for local testing.")
    run_node(NodeOptions(data=data, schema=schema, budget_epsilon=budget_epsilon, budget_delta=budget_delta,
                         coordinator=coordinator_address, state_dir=state_dir, ca_cert=ca_cert,
                         auth_key=auth_key, insecure=insecure, batch_size=batch_size, threads=threads,
                         runtime_port=runtime_port, give_up_after=give_up_after, init_ledger=init_ledger),
             say=lambda m: err.print(m, highlight=False, markup=False))
