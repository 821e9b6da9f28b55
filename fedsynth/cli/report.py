"""The evaluation report of a synthetic table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fedsynth.common.errors import FedsynthError
from fedsynth.common.inputs import read_json_object
from fedsynth.common.outputs import REPORT_FOLDER, check_replace, replace_dir
from fedsynth.cli.shared import err, load_schema, need_extras, out, OverwriteOption

# lazy: each command imports what it runs (pandas, torch, Flower, cryptography) inside its function,
# so that `fedsynth --help` and the other commands do not load it.


def evaluate(
    real: Annotated[Path, typer.Option(help="The real rows the synthesizer was trained on.")],
    holdout: Annotated[Path, typer.Option(help="Real rows the synthesizer never saw (utility test set, attack non-members).")],
    synthetic: Annotated[Path, typer.Option(help="The synthetic table.")],
    schema: Annotated[Path, typer.Option("--schema", "-s", help="Schema JSON.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.html and report.json.")],
    target: Annotated[Optional[str], typer.Option(help="Label column for the utility (TSTR) test.")] = None,
    model_card: Annotated[Optional[Path], typer.Option(help="model_card.json or synthesizer.json: states the guarantee next to the results.")] = None,
    sensitive: Annotated[Optional[list[str]], typer.Option(
        help="A column an attribute-inference attack tries to guess from the others (repeatable; default: --target).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for subsampling and bootstraps.")] = 0,
    overwrite: OverwriteOption = False,
) -> None:
    """Fidelity, utility and empirical privacy of a synthetic table, as report.html + report.json."""
    need_extras("evaluate", "report")
    from fedsynth.evaluation import evaluate as run_eval
    from fedsynth.evaluation import write_report
    from fedsynth.evaluation.overlap import OverlappingHoldout
    from fedsynth.common.data.tables import load_table

    check_replace(out_dir, REPORT_FOLDER, overwrite=overwrite, option="--out")  # before the evaluation runs
    sch = load_schema(schema)
    frames = [load_table(p, sch) for p in (real, holdout, synthetic)]
    if target is not None and target not in sch.names:
        raise FedsynthError(f"--target {target!r} is not a column of {schema}")
    for col in sensitive or ():
        if col not in sch.names:
            raise FedsynthError(f"--sensitive {col!r} is not a column of {schema} (columns: {', '.join(sch.names)})")
    guarantee = _guarantee_from(model_card) if model_card else None
    try:
        result = run_eval(*frames, sch, target=target, guarantee=guarantee, seed=seed,
                          sensitive=tuple(sensitive) if sensitive else None)
    except OverlappingHoldout as exc:
        raise OverlappingHoldout(f"--holdout {holdout} and --real {real}: {exc}") from None
    with replace_dir(out_dir, REPORT_FOLDER, overwrite=overwrite, option="--out") as new:
        written = write_report(result, new)
    note = result["meta"]["holdout_overlap"]["warning"]
    if note:
        err.print(f"[yellow]warning:[/] --holdout {holdout}: {note}", highlight=False)
    out.print(f"[green]wrote[/] {' and '.join(str(out_dir / p.name) for p in written)}")


def _guarantee_from(path: Path) -> dict:
    """The guarantee as recorded by fit (synthesizer.json) or by a federated run (model_card.json)."""
    from fedsynth.evaluation.guarantee import describe_guarantee, guarantee_from_card

    meta = read_json_object(path, label="--model-card ")
    try:
        guarantee = guarantee_from_card(meta)
        describe_guarantee(guarantee)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise FedsynthError(f"--model-card {path}: not a model_card.json or synthesizer.json written by fedsynth "
                            f"({type(exc).__name__}: {exc})") from None
    return guarantee
