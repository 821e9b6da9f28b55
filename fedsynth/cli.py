"""The ``fedsynth`` command line: one entry point, subcommands per task.

Errors a user can fix (bad files, impossible privacy settings) are printed as one clear
message and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from fedsynth.common.errors import FedsynthError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Federated, differentially private synthetic data.")
schema_app = typer.Typer(no_args_is_help=True, help="Draft and check the shared public schema.")
app.add_typer(schema_app, name="schema")
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

# Options shared by the commands that read a bundled dataset or a user's table.
DataOption = Annotated[str, typer.Option(help="Bundled dataset name (adult) or a CSV/Parquet path.")]
SchemaForDataOption = Annotated[Optional[Path], typer.Option(help="Schema JSON; required when --data is a file.")]
# Every command with --out: an existing path is only ever an earlier output of the same command,
# replaced with this flag (see fedsynth.common.outputs); anything else there is refused.
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace what an earlier run of this command wrote at --out (never anything else).")]


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(2)


def _progress(description: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err, transient=False)


def _load_schema(path: Path):
    from fedsynth.common.data.schema import Schema

    return Schema.load(path)


# ------------------------------------------------------------------------- schema
@schema_app.command("draft")
def schema_draft(
    data: Annotated[Path, typer.Argument(help="Local CSV or Parquet table (read only on this machine).")],
    name: Annotated[str, typer.Option(help="Name recorded in the schema.")] = "table",
) -> None:
    """Propose a schema from a local table; prints JSON on stdout, warnings on stderr.

    Bounds and category lists read off private rows must be coarsened or replaced with public
    knowledge before the schema is shared with other parties.
    """
    try:
        from fedsynth.common.data.schema_draft import draft_schema
        from fedsynth.common.data.tables import read_raw

        draft = draft_schema(read_raw(data), name=name)
    except FedsynthError as exc:
        _fail(exc)
    for w in draft.warnings:
        err.print(f"[yellow]warning:[/] {w}", highlight=False)
    sys.stdout.write(draft.schema.dumps() + "\n")


@schema_app.command("validate")
def schema_validate(
    data: Annotated[Path, typer.Argument(help="CSV or Parquet table to check.")],
    schema: Annotated[Path, typer.Option("--schema", "-s", help="Schema JSON (fedsynth or SDV metadata).")],
) -> None:
    """Check a table against the schema; list every violation with file, column, row, value."""
    try:
        from fedsynth.common.data.tables import validate_file

        sch = _load_schema(schema)
        report = validate_file(data, sch)
    except FedsynthError as exc:
        _fail(exc)
    if report.ok:
        out.print(f"[green]ok[/]: {data} matches {schema} ({report.rows} rows, {len(sch.columns)} columns, "
                  f"schema hash {sch.hash()})")
        return
    for v in report.violations:
        err.print(str(v), highlight=False, markup=False)
    more = " (stopped counting)" if report.truncated else ""
    err.print(f"[red]{len(report.violations)} violation(s){more}[/]")
    raise typer.Exit(1)


# ------------------------------------------------------------------------- fit / sample
@app.command()
def fit(
    data: Annotated[Path, typer.Argument(help="Training table (CSV or Parquet).")],
    schema: Annotated[Path, typer.Option("--schema", "-s", help="Schema JSON.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")],
    epsilon: Annotated[float, typer.Option(help="Privacy budget epsilon for the whole fit.")] = 1.0,
    delta: Annotated[float, typer.Option(help="Privacy delta; must be well below 1/rows.")] = 1e-5,
    model: Annotated[str, typer.Option(help="Generator: vae (default) or gan.")] = "vae",
    epochs: Annotated[float, typer.Option(help="Passes over the data (in expectation).")] = 30.0,
    batch_size: Annotated[Optional[int], typer.Option(help="Expected Poisson batch size (default: rows/12, 64..2048).")] = None,
    accountant: Annotated[str, typer.Option(help="Privacy accountant: rdp or prv.")] = "rdp",
    threads: Annotated[int, typer.Option(min=1, help="CPU threads for torch.")] = 2,
    overwrite: OverwriteOption = False,
) -> None:
    """Train a single-party DP synthesizer (also the centralized baseline)."""
    try:
        import torch

        from fedsynth.common.outputs import MODEL_FOLDER, check_replace
        from fedsynth.common.synthesizer import Synthesizer, TrainingConfig
        from fedsynth.common.data.tables import load_table

        check_replace(out_dir, MODEL_FOLDER, overwrite=overwrite, option="--out")  # before training, not after
        torch.set_num_threads(threads)
        sch = _load_schema(schema)
        df = load_table(data, sch)
        synth = Synthesizer(sch, model=model, epsilon=epsilon, delta=delta,
                            training=TrainingConfig(epochs=epochs, batch_size=batch_size, accountant=accountant))
        plan = synth.plan(len(df))
        err.print(f"{len(df)} rows; {plan['steps']} DP-SGD steps at sample rate {plan['sample_rate']:.4f}, "
                  f"noise multiplier {plan['noise_multiplier']:.3f} (category frequencies: {plan['frequency_noise']:.3g})")
        with _progress("training") as bar:
            task = bar.add_task("train", total=plan["steps"])
            synth.fit(df, progress=lambda done, total: bar.update(task, completed=done))
        synth.save(out_dir, overwrite=overwrite)
    except FedsynthError as exc:
        _fail(exc)
    out.print(f"[green]saved[/] {out_dir}  epsilon spent = {synth.epsilon_spent:.4f} (target {epsilon}), "
              f"delta = {delta:g}, accountant = {accountant}")


def _parse_where(where: list[str]) -> dict[str, str]:
    conds: dict[str, str] = {}
    for w in where:
        if "=" not in w:
            raise FedsynthError(f"--where {w!r}: expected COLUMN=VALUE")
        k, v = (part.strip() for part in w.split("=", 1))
        if k in conds and conds[k] != v:  # a row holds one value per column: no row could match both
            raise FedsynthError(f"--where: column {k!r} is given twice, as {conds[k]!r} and {v!r}; "
                                "give each column at most one value")
        conds[k] = v
    return conds


@app.command()
def sample(
    model_dir: Annotated[Path, typer.Argument(help="Model folder written by fit or simulate.")],
    rows: Annotated[int, typer.Option("--rows", "-n", help="Number of rows to generate.")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Output .csv or .parquet.")],
    where: Annotated[Optional[list[str]], typer.Option(help="Condition COLUMN=VALUE (repeatable, one per column).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for reproducible sampling.")] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Generate synthetic rows (with a lineage sidecar); sampling costs no privacy.

    Rows are generated and written in chunks, so memory stays bounded for any --rows.
    """
    try:
        from fedsynth.common.lineage import provenance, sidecar_path, write_synthetic
        from fedsynth.common.outputs import SYNTHETIC_TABLE, check_replace
        from fedsynth.common.synthesizer import Synthesizer

        conds = _parse_where(where or [])
        check_replace(out_file, SYNTHETIC_TABLE, overwrite=overwrite, option="--out")
        synth = Synthesizer.load(model_dir)
        chunks = synth.iter_sample(rows, conditions=conds or None, seed=seed)  # refuses bad --rows/--where now
        meta, _ = synth.to_state()
        write_synthetic(chunks, out_file, provenance(meta, rows, conds), schema=synth.schema)
    except FedsynthError as exc:
        _fail(exc)
    out.print(f"[green]wrote[/] {rows} synthetic rows to {out_file} (+ {sidecar_path(out_file).name})")


@app.command()
def lineage(file: Annotated[Path, typer.Argument(help="A synthetic table written by fedsynth.")]) -> None:
    """Print a synthetic file's provenance; verify the file's hash and the sidecar's claims."""
    try:
        from fedsynth.common.lineage import read_lineage, sidecar_path

        check = read_lineage(file)
    except FedsynthError as exc:
        _fail(exc)
    sys.stdout.write(json.dumps(check.record, indent=2) + "\n")
    side = sidecar_path(file)
    if check.file_ok is False:
        err.print(f"[red]hash mismatch[/]: {file} was modified after fedsynth wrote it", highlight=False)
    if check.edited:
        err.print(f"[red]claims do not match[/]: {side}: {', '.join(check.edited)} differ from what fedsynth wrote "
                  "(edited after writing)", highlight=False)
    if not check.ok:
        raise typer.Exit(1)
    if check.file_ok is None:
        err.print("[yellow]no hash recorded (embedded metadata only): nothing verified[/]")
    elif not check.claims_hashed:
        err.print(f"[yellow]file hash verified; claims NOT verified[/]: {side} was written by an older fedsynth, "
                  "before lineage claims (privacy, model) were hashed", highlight=False)
    else:
        err.print("[green]hash verified[/]: the file and every lineage claim are as fedsynth wrote them")


@app.command()
def evaluate(
    real: Annotated[Path, typer.Option(help="The real rows the synthesizer was trained on.")],
    holdout: Annotated[Path, typer.Option(help="Real rows the synthesizer never saw (utility test set, attack non-members).")],
    synthetic: Annotated[Path, typer.Option(help="The synthetic table.")],
    schema: Annotated[Path, typer.Option("--schema", "-s", help="Schema JSON.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.html and report.json.")],
    target: Annotated[Optional[str], typer.Option(help="Label column for the utility (TSTR) test.")] = None,
    model_card: Annotated[Optional[Path], typer.Option(help="model_card.json or synthesizer.json: states the guarantee next to the results.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for subsampling and bootstraps.")] = 0,
    overwrite: OverwriteOption = False,
) -> None:
    """Fidelity, utility and empirical privacy of a synthetic table, as report.html + report.json."""
    try:
        from fedsynth.evaluation import evaluate as run_eval
        from fedsynth.evaluation import write_report
        from fedsynth.evaluation.attacks import OverlappingHoldout
        from fedsynth.common.outputs import REPORT_FOLDER, check_replace, replace_dir
        from fedsynth.common.data.tables import load_table

        check_replace(out_dir, REPORT_FOLDER, overwrite=overwrite, option="--out")  # before the evaluation runs
        sch = _load_schema(schema)
        frames = [load_table(p, sch) for p in (real, holdout, synthetic)]
        if target is not None and target not in sch.names:
            raise FedsynthError(f"--target {target!r} is not a column of {schema}")
        guarantee = _guarantee_from(model_card) if model_card else None
        try:
            result = run_eval(*frames, sch, target=target, guarantee=guarantee, seed=seed)
        except OverlappingHoldout as exc:
            raise OverlappingHoldout(f"--holdout {holdout} and --real {real}: {exc}") from None
        with replace_dir(out_dir, REPORT_FOLDER, overwrite=overwrite, option="--out") as new:
            written = write_report(result, new)
    except FedsynthError as exc:
        _fail(exc)
    note = result["meta"]["holdout_overlap"]["warning"]
    if note:
        err.print(f"[yellow]warning:[/] --holdout {holdout}: {note}", highlight=False)
    out.print(f"[green]wrote[/] {' and '.join(str(out_dir / p.name) for p in written)}")


def _guarantee_from(path: Path) -> dict:
    """The guarantee as recorded by fit (synthesizer.json) or by a federated run (model_card.json)."""
    from fedsynth.evaluation.attacks import describe_guarantee
    from fedsynth.common.inputs import read_json_object

    meta = read_json_object(path, label="--model-card ")
    try:
        if "clients" in meta:
            guarantee = {"clients": [{"client": c["client"], "epsilon": c["epsilon_spent"], "delta": c["delta"]}
                                     for c in meta["clients"]],
                         "accountant": "rdp", "mechanism": "DP-SGD (federated, SecAgg+)"}
        else:
            priv = meta.get("privacy", {})
            guarantee = {"clients": [{"client": "single party", "epsilon": priv.get("epsilon_spent"),
                                      "delta": priv.get("delta")}],
                         "accountant": priv.get("accountant", "rdp"), "mechanism": "DP-SGD"}
        describe_guarantee(guarantee)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise FedsynthError(f"--model-card {path}: not a model_card.json or synthesizer.json written by fedsynth "
                            f"({type(exc).__name__}: {exc})") from None
    return guarantee


@app.command()
def simulate(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder (silos, ledgers, model, synthetic.csv, report).")],
    data: DataOption = "adult",
    schema: SchemaForDataOption = None,
    clients: Annotated[int, typer.Option(min=2, help="Number of simulated institutions (ignored by --partition natural).")] = 5,
    partition: Annotated[str, typer.Option(help="How rows are split: iid, dirichlet (label skew), quantity (size skew), natural (one institution per value of --column).")] = "iid",
    alpha: Annotated[float, typer.Option(min=1e-3, help="Dirichlet concentration for --partition dirichlet; smaller = more skewed.")] = 0.5,
    label: Annotated[Optional[str], typer.Option(help="Label column: Dirichlet skew and the utility (TSTR) test. Default: the bundled dataset's label.")] = None,
    column: Annotated[Optional[str], typer.Option(help="Column whose values define institutions for --partition natural.")] = None,
    epsilon: Annotated[float, typer.Option(help="Each institution's privacy budget epsilon (its cap over the whole run).")] = 1.0,
    delta: Annotated[float, typer.Option(help="Each institution's delta; must be well below 1/(its rows).")] = 1e-5,
    rounds: Annotated[int, typer.Option(min=1, help="Federated rounds.")] = 20,
    local_epochs: Annotated[float, typer.Option(min=0.01, help="Passes over its own table each client makes per round (in expectation).")] = 1.5,
    clients_per_round: Annotated[Optional[int], typer.Option(min=2, help="Clients sampled each round (default: all).")] = None,
    server_lr: Annotated[Optional[float], typer.Option(min=0.0, help="Global step = server_lr x mean client delta (default: chosen each round from how aligned the deltas were, between 1 and the number K of contributing clients); every step is capped at sqrt(K) x update_clip_norm.")] = None,
    client_weighting: Annotated[str, typer.Option(help="How updates are combined: rows (weight each institution by its DP row-count estimate, capped at --weight-cap-rows) or equal.")] = "rows",
    weight_cap_rows: Annotated[float, typer.Option(min=1.0, help="With --client-weighting rows: an institution counts as at most this many rows (public; also bounds what a lying client can claim).")] = 10_000.0,
    model: Annotated[str, typer.Option(help="Generator: vae (default) or gan.")] = "vae",
    holdout: Annotated[float, typer.Option(min=0.05, max=0.5, help="Share of rows held out from every client, for evaluation.")] = 0.2,
    rows: Annotated[Optional[int], typer.Option(min=1, help="Synthetic rows to generate (default: as many as the pooled training rows).")] = None,
    secagg_shares: Annotated[float, typer.Option(min=0.0, help="SecAgg+ shares per key, as a fraction of the round's clients (or a count if > 1).")] = 1.0,
    secagg_threshold: Annotated[float, typer.Option(min=0.0, help="SecAgg+ reconstruction threshold, as a fraction of the shares (or a count if > 1).")] = 0.67,
    seed: Annotated[int, typer.Option(help="Seed for the holdout split and partitioning.")] = 0,
    report: Annotated[bool, typer.Option(help="Write the full evaluation report (report.html) against the holdout.")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run an earlier simulate wrote at --out (without it, an interrupted run there is resumed, a finished one refused); the new run is built beside it and swapped in when it succeeds.")] = False,
) -> None:
    """Run a local federation on the Flower Simulation Engine with SecAgg+ and per-client DP budgets.

    Ends with OUT/synthetic.csv, OUT/synthesizer (for `fedsynth sample`), OUT/model_card.json and a
    fidelity/utility summary against a real holdout that no client trained on.
    """
    from fedsynth.common.protocol.federation import AGGREGATION_WEIGHTS, SecAggSettings
    from fedsynth.simulations.driver import SimulationConfig, run
    from fedsynth.simulations.partition import PARTITIONS

    try:
        if partition not in PARTITIONS:
            raise FedsynthError(f"--partition {partition!r}: choose one of {', '.join(PARTITIONS)}")
        if model not in ("vae", "gan"):
            raise FedsynthError(f"--model {model!r}: choose vae or gan")
        if client_weighting not in AGGREGATION_WEIGHTS:
            raise FedsynthError(f"--client-weighting {client_weighting!r}: choose {' or '.join(AGGREGATION_WEIGHTS)}")
        try:
            secagg = SecAggSettings(num_shares=secagg_shares, reconstruction_threshold=secagg_threshold)
        except ValueError as exc:
            raise FedsynthError(f"--secagg-shares {secagg_shares:g} / --secagg-threshold {secagg_threshold:g}: {exc}") from None
        cfg = SimulationConfig(out=str(out_dir), data=data, schema=str(schema) if schema else None, clients=clients,
                               partition=partition, alpha=alpha, label=label, column=column, epsilon=epsilon,
                               delta=delta, rounds=rounds, local_epochs=local_epochs, server_lr=server_lr,
                               clients_per_round=clients_per_round, client_weighting=client_weighting,
                               weight_cap_rows=weight_cap_rows, model=model, holdout=holdout, rows=rows,
                               seed=seed, report=report, secagg=secagg, overwrite=overwrite)
        summary = run(cfg, print_fn=lambda m: err.print(m, highlight=False, markup=False))
    except FedsynthError as exc:
        _fail(exc)
    out.print(f"[green]done[/] in {summary['seconds']}s: {out_dir}/synthetic.csv, {out_dir}/model_card.json"
              + (f", {out_dir}/report.html" if report else ""))


# ------------------------------------------------------------------------- deployment
def _stop_on_sigterm() -> None:
    """Turn SIGTERM (docker stop, a supervisor) into KeyboardInterrupt so Flower children are stopped."""
    import signal

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@app.command()
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
    try:
        issued = issue_certificates(CertificateRequest(out_dir=out_dir, sans=sans, days=days, overwrite=overwrite))
    except FedsynthError as exc:
        _fail(exc)
    out.print(f"[green]wrote[/] {issued.ca_cert} (give to institutions), {issued.server_cert}; private keys "
              f"{issued.ca_key.name}, {issued.server_key.name} (mode 0600); SANs {', '.join(issued.sans)}",
              highlight=False)


@app.command()
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

    try:
        for n in name:
            pair = generate_node_keys(out_dir, n, overwrite=overwrite)
            out.print(f"[green]wrote[/] {pair.public_key} ({pair.fingerprint}) and its private key {pair.private_key} "
                      "(mode 0600)", highlight=False)
    except FedsynthError as exc:
        _fail(exc)


@app.command()
def split(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for schema.json and client-<i>.csv.")],
    data: DataOption = "adult",
    schema: SchemaForDataOption = None,
    clients: Annotated[int, typer.Option(min=1, help="Number of silo files.")] = 3,
    rows: Annotated[int, typer.Option(min=1, help="Rows per silo.")] = 400,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    overwrite: OverwriteOption = False,
) -> None:
    """Cut disjoint demo silo files out of a table, to try a deployment on one machine."""
    from fedsynth.simulations.silos import SiloRequest, write_silos

    try:
        paths = write_silos(SiloRequest(out_dir=out_dir, data=data, schema=str(schema) if schema else None,
                                        clients=clients, rows=rows, seed=seed, overwrite=overwrite))
    except FedsynthError as exc:
        _fail(exc)
    out.print(f"[green]wrote[/] {out_dir / 'schema.json'} and {len(paths)} silos of {rows} rows", highlight=False)


@app.command()
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
    from fedsynth.server.coordinator import CoordinatorOptions, run_coordinator

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
    except FedsynthError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        err.print("interrupted; SuperLink stopped")
        raise typer.Exit(130)
    if not ok:
        err.print("[bold red]error:[/] the federated run failed; no model was produced")
        raise typer.Exit(1)


@app.command()
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
    try:
        run_node(NodeOptions(data=data, schema=schema, budget_epsilon=budget_epsilon, budget_delta=budget_delta,
                             coordinator=coordinator_address, state_dir=state_dir, ca_cert=ca_cert,
                             auth_key=auth_key, insecure=insecure, batch_size=batch_size, threads=threads,
                             runtime_port=runtime_port, give_up_after=give_up_after, init_ledger=init_ledger),
                 say=lambda m: err.print(m, highlight=False, markup=False))
    except FedsynthError as exc:
        _fail(exc)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
