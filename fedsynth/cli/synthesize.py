"""Single-party synthesis: fit a DP synthesizer, sample it, check a synthetic table's lineage."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from fedsynth.cli.choices import Accountant, Binning, Model
from fedsynth.cli.shared import (FitStepsOption, OverwriteOption, TableArgument, TableOption, err, load_schema, out,
                                  progress, the_table)
from fedsynth.common.errors import FedsynthError
from fedsynth.common.outputs import MODEL_FOLDER, SYNTHETIC_TABLE, check_replace

# lazy: each command imports what it runs (pandas, torch, Flower, cryptography) inside its function,
# so that `fedsynth --help` and the other commands do not load it.


def fit(
    schema: Annotated[Path, typer.Option("--schema", "-s", help="Schema JSON.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")],
    table: TableArgument = None,
    data: TableOption = None,
    epsilon: Annotated[float, typer.Option(help="Privacy budget epsilon for the whole fit.")] = 1.0,
    delta: Annotated[float, typer.Option(help="Privacy delta; must be well below 1/rows.")] = 1e-5,
    model: Annotated[Model, typer.Option(help="Generator: a conditional VAE or GAN.")] = Model.VAE,
    epochs: Annotated[float, typer.Option(help="Passes over the data (in expectation).")] = 30.0,
    batch_size: Annotated[Optional[int], typer.Option(help="Expected Poisson batch size (default: rows/12, 64..2048).")] = None,
    accountant: Annotated[Accountant, typer.Option(help="Privacy accountant (Opacus): RDP or PRV.")] = Accountant.RDP,
    threads: Annotated[int, typer.Option(min=1, help="CPU threads for torch.")] = 2,
    pairs: Annotated[int, typer.Option(min=0, help="At most this many 2-way marginals measured after DP-SGD "
                                                   "and fitted by the generator (0: none).")] = 20,
    fit_steps: FitStepsOption = 1000,
    binning: Annotated[Binning, typer.Option(help="Numerical bins: measured (at equal masses of the released "
                                                  "histograms) or the schema's equal-width ones.")] = Binning.MEASURED,
    overwrite: OverwriteOption = False,
) -> None:
    """Train a single-party DP synthesizer (also the centralized baseline)."""
    import torch

    from fedsynth.common.model.marginal_fit import MarginalFitConfig
    from fedsynth.common.model.tabular import ModelConfig
    from fedsynth.common.synthesizer import Synthesizer, TrainingConfig
    from fedsynth.common.data.tables import load_table

    data = the_table(table, data)
    check_replace(out_dir, MODEL_FOLDER, overwrite=overwrite, option="--out")  # before training, not after
    torch.set_num_threads(threads)
    sch = load_schema(schema)
    df = load_table(data, sch)
    synth = Synthesizer(sch, model=model.value, epsilon=epsilon, delta=delta,
                        training=TrainingConfig(epochs=epochs, batch_size=batch_size, accountant=accountant.value),
                        model_config=ModelConfig(model=model.value, binning=binning.value),
                        marginal_fit=MarginalFitConfig(pairs=pairs, steps=fit_steps))
    plan = synth.plan(len(df))
    pair_note = (f"; at most {plan['marginal_pairs']} 2-way marginals: {plan['pair_noise']:.3g}, "
                 f"choosing them: {plan['score_noise']:.3g}" if plan["marginal_pairs"] else "")
    err.print(f"{len(df)} rows; {plan['steps']} DP-SGD steps at sample rate {plan['sample_rate']:.4f}, "
              f"noise multiplier {plan['noise_multiplier']:.3f} (category frequencies: {plan['frequency_noise']:.3g}"
              f"{pair_note})")
    with progress("DP-SGD step", int(plan["steps"])) as bar, progress("marginal fit step", fit_steps) as fine:

        def fit_step(done: int, total: int) -> None:
            bar.close()  # DP-SGD's steps are all done: one bar at a time
            fine.update(done)

        synth.fit(df, progress=lambda done, total: bar.update(done), fit_progress=fit_step)
    if "marginal_fit" in synth.info:
        fitted = synth.info["marginal_fit"]
        err.print(f"fitted {len(fitted['pairs'])} measured 2-way marginals (mean TVD to them "
                  f"{fitted['tvd_before']:.3f} -> {fitted['tvd_after']:.3f})")
    synth.save(out_dir, overwrite=overwrite)
    out.print(f"[green]saved[/] {out_dir}  epsilon spent = {synth.epsilon_spent:.4f} (target {epsilon}), "
              f"delta = {delta:g}, accountant = {accountant.value}")


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


def sample(
    model_dir: Annotated[Path, typer.Argument(help="Model folder written by fit or simulate.")],
    rows: Annotated[int, typer.Option("--rows", "-n", help="Number of rows to generate.")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Output table: .csv, .csv.gz or .parquet (.pq).")],
    where: Annotated[Optional[list[str]], typer.Option(help="Condition COLUMN=VALUE (repeatable, one per column).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for reproducible sampling.")] = None,
    calibrate: Annotated[bool, typer.Option(
        "--calibrate/--no-calibrate",
        help="Match unconditional rows to the model's released marginals (post-processing).")] = True,
    overwrite: OverwriteOption = False,
) -> None:
    """Generate synthetic rows (with a lineage sidecar); sampling costs no privacy.

    Rows are generated and written in chunks, so memory stays bounded for any --rows.
    """
    from fedsynth.common.data.tables import table_format
    from fedsynth.common.lineage import provenance, sidecar_path, write_synthetic
    from fedsynth.common.synthesizer import Synthesizer

    table_format(out_file, option="--out")  # before the model is loaded
    conds = _parse_where(where or [])
    check_replace(out_file, SYNTHETIC_TABLE, overwrite=overwrite, option="--out")
    synth = Synthesizer.load(model_dir)
    synth.calibrate = calibrate
    chunks = synth.iter_sample(rows, conditions=conds or None, seed=seed)  # refuses bad --rows/--where now
    meta, _ = synth.to_state()
    write_synthetic(chunks, out_file, provenance(meta, rows, conds), schema=synth.schema)
    out.print(f"[green]wrote[/] {rows} synthetic rows to {out_file} (+ {sidecar_path(out_file).name})")


def lineage(file: Annotated[Path, typer.Argument(help="A synthetic table written by fedsynth.")]) -> None:
    """Print a synthetic file's provenance; verify the file's hash and the sidecar's claims."""
    from fedsynth.common.lineage import read_lineage, sidecar_path

    check = read_lineage(file)
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
