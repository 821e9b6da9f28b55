"""A local federation on the Flower Simulation Engine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fedsynth.cli.choices import ClientWeighting, Model, Noise, Partition
from fedsynth.cli.shared import DataOption, FitStepsOption, SchemaForDataOption, need_extras, out, progress
from fedsynth.common.errors import FedsynthError

# lazy: each command imports what it runs (pandas, torch, Flower, cryptography) inside its function,
# so that `fedsynth --help` and the other commands do not load it.


def simulate(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder (silos, ledgers, model, synthetic.csv, report).")],
    data: DataOption = "adult",
    schema: SchemaForDataOption = None,
    clients: Annotated[Optional[int], typer.Option(min=2, help="Number of simulated institutions (default 5; with --partition natural, one per value of --column).")] = None,
    partition: Annotated[Partition, typer.Option(help="How rows are split: iid, dirichlet (label skew), quantity (size skew), natural (one institution per value of --column).")] = Partition.IID,
    alpha: Annotated[float, typer.Option(min=1e-3, help="Dirichlet concentration for --partition dirichlet; smaller = more skewed.")] = 0.5,
    label: Annotated[Optional[str], typer.Option(help="Label column: Dirichlet skew and the utility (TSTR) test. Default: the bundled dataset's label.")] = None,
    column: Annotated[Optional[str], typer.Option(help="Column whose values define institutions for --partition natural.")] = None,
    epsilon: Annotated[float, typer.Option(help="Each institution's privacy budget epsilon (its cap over the whole run).")] = 1.0,
    delta: Annotated[float, typer.Option(help="Each institution's delta; must be well below 1/(its rows).")] = 1e-5,
    rounds: Annotated[Optional[int], typer.Option(min=1, help="Federated rounds (default 160 with shared noise, where each round is one pooled DP-SGD step; 20 with local noise).")] = None,
    noise: Annotated[Noise, typer.Option(help="shared (default): each round is one DP-SGD step on the pooled rows and the noise is split into shares summed under SecAgg+ (see --collusion-tolerance). local: each institution adds the full DP noise for its budget to its own update (trusts no one, costs about K times the noise).")] = Noise.SHARED,
    collusion_tolerance: Annotated[int, typer.Option(min=0, help="With --noise shared: the guarantee holds against the coordinator plus this many colluding institutions (T).")] = 1,
    min_contributors: Annotated[Optional[int], typer.Option(min=2, help="With --noise shared: rounds with fewer contributions are never unmasked (K_min; default: every institution, or --clients-per-round).")] = None,
    sample_rate: Annotated[Optional[float], typer.Option(min=1e-6, max=1.0, help="With --noise shared: each row's chance to be in a round's step (default: 1.875 x single-party's batch rule on the pooled rows).")] = None,
    local_epochs: Annotated[float, typer.Option(min=0.01, help="With --noise local: passes over its own table each client makes per round (in expectation).")] = 1.5,
    clients_per_round: Annotated[Optional[int], typer.Option(min=2, help="Clients sampled each round (default: all).")] = None,
    server_lr: Annotated[Optional[float], typer.Option(min=0.0, help="With --noise local: global step = server_lr x mean client delta (default: chosen each round from how aligned the deltas were, between 1 and the number K of contributing clients); every step is capped at sqrt(K) x update_clip_norm.")] = None,
    client_weighting: Annotated[ClientWeighting, typer.Option(help="With --noise local: how updates are combined: rows (weight each institution by its DP row-count estimate, capped at --weight-cap-rows) or equal.")] = ClientWeighting.ROWS,
    weight_cap_rows: Annotated[float, typer.Option(min=1.0, help="With --client-weighting rows: an institution counts as at most this many rows (public; also bounds what a lying client can claim).")] = 10_000.0,
    pairs: Annotated[Optional[int], typer.Option(min=0, help="After the last round, at most this many 2-way marginals are measured (summed through SecAgg+; each institution adds its share of the noise, or with --noise local its own full noise) and the global model is fine-tuned to them (default: 30 with --noise shared, 10 more than single-party since the federation ranks pairs by L2 norms, measured over the table suite; none with --noise local; 0 turns it off; docs/federated.md).")] = None,
    fit_steps: FitStepsOption = 1000,
    threads: Annotated[int, typer.Option(min=1, help="CPU threads for the coordinator's fine-tune to the measured marginals (the simulated institutions, one core each, are idle then).")] = 2,
    model: Annotated[Model, typer.Option(help="Generator: a conditional VAE or GAN.")] = Model.VAE,
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
    need_extras("simulate", "simulation", "report")
    from fedsynth.common.protocol.federation import SecAggSettings
    from fedsynth.simulations.driver import SimulationConfig, planned_rounds, run

    try:
        secagg = SecAggSettings(num_shares=secagg_shares, reconstruction_threshold=secagg_threshold)
    except ValueError as exc:
        raise FedsynthError(f"--secagg-shares {secagg_shares:g} / --secagg-threshold {secagg_threshold:g}: {exc}") from None
    cfg = SimulationConfig(out=str(out_dir), data=data, schema=str(schema) if schema else None, clients=clients,
                           partition=partition.value, alpha=alpha, label=label, column=column, epsilon=epsilon,
                           delta=delta, rounds=rounds, local_epochs=local_epochs, server_lr=server_lr,
                           clients_per_round=clients_per_round, client_weighting=client_weighting.value,
                           weight_cap_rows=weight_cap_rows, model=model.value, holdout=holdout, rows=rows,
                           seed=seed, report=report, secagg=secagg, overwrite=overwrite, noise=noise.value,
                           collusion_tolerance=collusion_tolerance, min_contributors=min_contributors,
                           sample_rate=sample_rate, pairs=pairs, fit_steps=fit_steps,
                           threads=threads)
    # On a terminal: a bar (round k/N, elapsed, time left, the last round's facts) with the other
    # lines above it. Otherwise (a pipe, CI, a log file): the driver's plain line a round, no ANSI codes.
    with progress("round", planned_rounds(cfg), plain_lines=0) as bar:
        summary = run(cfg, print_fn=bar.line, on_round=bar.update if bar.live else None)
    out.print(f"[green]done[/] in {summary['seconds']}s: {out_dir}/synthetic.csv, {out_dir}/model_card.json"
              + (f", {out_dir}/report.html" if report else "") + f" (Flower's own log: {out_dir}/flower.log)")
