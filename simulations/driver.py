"""End-to-end local federation: split a table into silos, run the real Flower Simulation
Engine (SecAgg+ on), and finish with synthetic data, a model card and a quality summary.

Layout of ``--out``::

    schema.json            the shared public schema
    silos/client-<i>.csv   each simulated institution's table (stands in for its own file)
    clients/client-<i>/    each institution's state dir (its privacy ledger lives here)
    holdout.csv            real rows no client trained on (exists only in simulation)
    checkpoint/            the coordinator's last completed round
    synthesizer/           the global model (``fedsynth sample`` reads it)
    model_card.json        provenance and every client's reported (epsilon, delta)
    synthetic.csv          synthetic rows (+ .lineage.json)
    summary.json           fidelity / utility against the holdout
    events.jsonl           what the coordinator did, round by round
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fedsynth.client.ledger import Ledger, ledger_exists
from fedsynth.common.atomic import atomic_write_text
from fedsynth.common.data.cells import with_ids
from fedsynth.common.data.schema import Schema
from fedsynth.common.data.tables import write_table
from fedsynth.common.dp.accounting import check_privacy_params
from fedsynth.common.errors import FedsynthError
from fedsynth.common.lineage import provenance, write_synthetic
from fedsynth.common.model.marginal_fit import MarginalFitConfig
from fedsynth.common.model.tabular import ModelConfig
from fedsynth.common.outputs import SIMULATION_RUN, Existing, check_replace, claim_dir, find_existing, replace_dir
from fedsynth.common.progress import duration
from fedsynth.common.protocol.federation import NOISE_MODES, FederationPlan, SecAggSettings, federated_model_config
from fedsynth.common.synthesizer import Synthesizer
from fedsynth.evaluation import evaluate, write_report
from fedsynth.evaluation.guarantee import guarantee_from_card
from fedsynth.server.events import EventKind, aggregated, describe_event, round_progress
from fedsynth.server.shared_plan import SHARED_PAIRS, SHARED_ROUNDS, SharedNoiseRequest, default_sample_rate
from fedsynth.server.run_config import ServerRunSettings
from fedsynth.simulations.datasets import load_dataset
from fedsynth.simulations.components import COMPONENTS, INSECURE_PLAIN_COMPONENTS, Harness
from fedsynth.simulations.partition import holdout_split, partition
from fedsynth.simulations.quality import quick_quality
from fedsynth.simulations.runtime import SimulationJob, run_simulation_job

DEFAULT_CLIENTS = 5  # institutions simulated when --clients is not given (all partitions but natural)
LOCAL_ROUNDS = 20  # rounds of a local-noise run when none are asked for
RoundProgress = Callable[[int, str | None], None]  # (rounds done, the latest facts or None to keep them)


@dataclass
class SimulationConfig:
    out: str
    data: str = "adult"
    schema: str | None = None
    clients: int | None = None  # None: DEFAULT_CLIENTS, or one per value of the natural column
    partition: str = "iid"
    alpha: float = 0.5
    label: str | None = None
    column: str | None = None
    epsilon: float = 1.0
    delta: float = 1e-5
    rounds: int | None = None  # None: LOCAL_ROUNDS, or SHARED_ROUNDS with shared noise
    local_epochs: float = 1.5
    server_lr: float | None = None
    clients_per_round: int | None = None
    client_weighting: str = "rows"  # FederationPlan.aggregation_weights
    # "shared": one pooled DP-SGD step per round, noise shared under SecAgg+
    # (fedsynth.common.dp.shared_noise; measured better over the table suite, docs/federated.md);
    # "local": each institution adds the full noise to its own update
    noise: str = "shared"
    collusion_tolerance: int = 1  # shared noise: T
    min_contributors: int | None = None  # shared noise: K_min (None: every institution)
    sample_rate: float | None = None  # shared noise: q (None: server.shared_plan.default_sample_rate)
    weight_cap_rows: float = 10_000.0
    # 2-way marginals the global model is fine-tuned to after the last round (FederationPlan.marginal_fit);
    # None: SHARED_PAIRS with shared noise, none with local noise (not measured there)
    pairs: int | None = None
    fit_steps: int = MarginalFitConfig.steps  # Adam steps of the coordinator's fine-tune to them
    # torch threads for the coordinator's fine-tune to those marginals: the simulated institutions,
    # one core each, are idle then (1 here: tests run beside each other; `fedsynth simulate`: 2)
    threads: int = 1
    model: str = "vae"
    holdout: float = 0.2
    rows: int | None = None
    seed: int = 0
    secagg: SecAggSettings = field(default_factory=SecAggSettings)
    evaluate: bool = True
    report: bool = False  # full HTML/JSON evaluation report (fedsynth.evaluation)
    max_train_rows: int | None = None  # subsample the pooled table (tests, quick looks)
    overwrite: bool = False  # replace a finished run at `out` (see run)
    # Benchmarks only (bench/scale.py measures what SecAgg+ costs): SecAgg+ off, the coordinator
    # sees every individual update. No CLI flag sets it; FederatedRun warns loudly.
    insecure_plain_aggregation: bool = False
    # Benchmarks only: other Flower components for the simulation runtime (bench/scale.py's count
    # the bytes of every message); None: fedsynth.simulations.components
    components: dict[str, str] | None = None


def _event_printer(print_fn: Callable[[str], None], rounds: int,
                   on_round: RoundProgress | None = None) -> Callable[[dict[str, Any]], None]:
    """The ServerApp's events (``events.jsonl``), for people: round k/N with the time left.

    Without ``on_round``: a line each (budget check, round done; the time left estimated from
    the rounds this process has seen). With ``on_round(done, status)`` (a progress bar, which
    keeps its own time left): the routine facts of each round go there, and only what needs
    attention (institutions refusing a round, retries, stops, resumes) to ``print_fn``."""
    seconds: list[float] = []

    def on_event(ev: dict[str, Any]) -> None:
        kind = ev["event"]
        if kind == "budget_check":
            spent = sorted(r.get("epsilon_spent", -1) for r in ev["replies"].values())
            refused = {r.get("reason") for r in ev["replies"].values() if not r.get("can_train")}
            extra = f"; not training: {sorted(refused)}" if refused else ""
            if on_round is None or refused:
                print_fn(f"round {ev['round']}/{rounds}: {ev['eligible']}/{len(ev['replies'])} clients can afford "
                         f"it; epsilon spent per client {spent}{extra}")
            if on_round is not None:
                on_round(ev["round"] - 1, None)  # the round starts: the bar's time left counts from the first
        elif kind == "round_done":
            eps = sorted(r.get("epsilon_spent", -1) for r in ev["reports"].values())
            alone = sorted(r["epsilon_alone"] for r in ev["reports"].values() if "epsilon_alone" in r)
            if on_round is not None:
                on_round(*round_progress(ev))  # the coordinator's bar shows the same status
                return
            both = f" (if all other parties colluded: {alone})" if alone else ""
            step = f", server step {ev['server_lr']:.2f} x mean" if "server_lr" in ev else ""
            seconds.append(float(ev["seconds"]))
            left = (rounds - ev["round"]) * sum(seconds) / len(seconds)
            eta = f", about {duration(left)} left" if ev["round"] < rounds else ""
            print_fn(f"round {ev['round']}/{rounds} done in {ev['seconds']:.1f}s{eta}: {ev['contributors']} "
                     f"{aggregated(ev)}{step}; epsilon spent per client now {eps}{both}")
        elif kind in (EventKind.POOLED_COUNTS, EventKind.MARGINAL_FIT_STARTED, EventKind.MARGINAL_FIT):
            print_fn(describe_event(ev, "") or "")
        elif kind in ("stopped", "round_failed", "resumed"):
            print_fn(f"{kind}: {ev}")
            if kind == "resumed" and on_round is not None:
                on_round(int(ev["round"]), f"resumed after round {ev['round']}")

    return on_event


def planned_pairs_of(cfg: SimulationConfig) -> int:
    """The marginal fit's pairs the run asks for: ``cfg.pairs``, or the default of its noise mode."""
    if cfg.pairs is not None:
        return cfg.pairs
    return SHARED_PAIRS if cfg.noise == "shared" else 0


def planned_rounds(cfg: SimulationConfig) -> int:
    """The rounds the run asks for: ``cfg.rounds``, or the default of its noise mode."""
    if cfg.rounds is not None:
        return cfg.rounds
    return SHARED_ROUNDS if cfg.noise == "shared" else LOCAL_ROUNDS


def run(cfg: SimulationConfig, print_fn: Callable[[str], None] = print,
        on_round: RoundProgress | None = None) -> dict[str, Any]:
    """The whole simulation into ``cfg.out``; see the module docstring for the layout.

    ``print_fn`` gets the lines for people; ``on_round(done, status)``, if given, the rounds'
    progress (see :func:`_event_printer`: a terminal's progress bar).

    ``cfg.out`` follows :mod:`fedsynth.common.outputs`: a new or empty folder is filled in
    place. An earlier run there is resumed from its checkpoint if it was interrupted and
    refused if it finished; with ``cfg.overwrite`` either is replaced, the new run being built
    next to it and swapped in when it succeeds.
    """
    check_privacy_params(cfg.epsilon, cfg.delta)
    if cfg.noise not in NOISE_MODES:
        raise FedsynthError(f"noise must be one of {NOISE_MODES}, not {cfg.noise!r}")
    if cfg.rounds is None:
        cfg = dataclasses.replace(cfg, rounds=planned_rounds(cfg))
    clients = cfg.clients if cfg.clients is not None else (None if cfg.partition == "natural" else DEFAULT_CLIENTS)
    if clients is not None and clients < 2:
        raise FedsynthError("--clients must be at least 2 (secure aggregation needs several parties)")
    if cfg.rounds < 1:
        raise FedsynthError("--rounds must be at least 1")
    out = Path(cfg.out)
    replace = _check_out(out, cfg.overwrite)
    started = time.time()
    df, schema, bundled = load_dataset(cfg.data, cfg.schema)
    label = cfg.label or (bundled.label if bundled else None)
    column = cfg.column or (bundled.natural_column if bundled else None)
    train, holdout = holdout_split(df, cfg.holdout, cfg.seed)
    if cfg.max_train_rows and len(train) > cfg.max_train_rows:
        train = train.sample(cfg.max_train_rows, random_state=cfg.seed).reset_index(drop=True)
    silos = partition(train, cfg.partition, clients, label=label, alpha=cfg.alpha, column=column, seed=cfg.seed)
    if len(silos) < 2:
        raise FedsynthError(f"--partition natural on {column!r} gives {len(silos)} institution; pick a column "
                            "with at least 2 values (secure aggregation needs several parties)")
    print_fn(f"{len(df)} rows: {len(train)} split over {len(silos)} institutions ({cfg.partition}), "
             f"{len(holdout)} held out; silo sizes {[len(s) for s in silos]}")
    data = _RunData(train, holdout, silos, schema, label)
    if not replace:
        claim_dir(out, SIMULATION_RUN, "--out")
        return _federate(out, data, cfg, started, print_fn, on_round)
    with replace_dir(out, SIMULATION_RUN, overwrite=True, option="--out") as work:
        return _federate(work, data, cfg, started, print_fn, on_round)


def _check_out(out: Path, overwrite: bool) -> bool:
    """Whether ``out`` holds an earlier run to replace; refuses what must not be touched."""
    found = find_existing(out, SIMULATION_RUN, "--out")
    if found is not Existing.PREVIOUS:
        return False
    if not overwrite:
        if (out / "synthesizer").exists():
            raise FedsynthError(f"--out {out}: already holds a finished run; choose a new --out, or pass "
                                "--overwrite to replace it")
        return False  # an interrupted run: resume it in place
    check_replace(out, SIMULATION_RUN, overwrite=True, option="--out")
    return True


@dataclass
class _RunData:
    """What the simulation hands the federation: the split table and its public schema."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    silos: list[pd.DataFrame]
    schema: Schema
    label: str | None


def _federate(out: Path, data: _RunData, cfg: SimulationConfig, started: float,
              print_fn: Callable[[str], None], on_round: RoundProgress | None = None) -> dict[str, Any]:
    schema = data.schema
    schema.save(out / "schema.json")
    # the typed rows hold no id columns: the files get fresh ids, so they validate against the schema
    write_table(with_ids(data.holdout, schema), out / "holdout.csv", schema=schema)
    write_table(with_ids(data.train, schema), out / "train.csv", schema=schema)
    (out / "silos").mkdir(exist_ok=True)
    for i, silo in enumerate(data.silos, start=1):
        write_table(with_ids(silo, schema), out / "silos" / f"client-{i}.csv", schema=schema)
    shared = cfg.noise == "shared"
    model = ModelConfig(model=cfg.model) if shared else federated_model_config(cfg.model)  # pooled noise: single-party widths
    plan = FederationPlan(rounds=cfg.rounds, clients_per_round=cfg.clients_per_round,
                          min_clients=2, local_epochs=cfg.local_epochs, model=model,
                          server_lr=cfg.server_lr, aggregation_weights=cfg.client_weighting,
                          weight_cap_rows=cfg.weight_cap_rows, schema_hash=schema.hash(), seed=cfg.seed,
                          marginal_fit=MarginalFitConfig(pairs=planned_pairs_of(cfg), steps=cfg.fit_steps))
    if shared:
        per_round = min(len(data.silos), cfg.clients_per_round or len(data.silos))
        k_min = cfg.min_contributors or per_round
        if k_min > per_round:
            raise FedsynthError(f"--min-contributors {k_min} is more than the {per_round} institutions of a round: "
                                "no round could ever be unmasked")
        request = SharedNoiseRequest(cfg.sample_rate or default_sample_rate(len(data.train)), epsilon=cfg.epsilon,
                                     delta=cfg.delta, collusion_tolerance=cfg.collusion_tolerance,
                                     min_contributors=k_min)
        plan = request.resolve(plan, schema)
        s = plan.shared_noise
        print_fn(f"shared noise: {plan.rounds} pooled DP-SGD steps at sample rate {s.sample_rate:.3g}, noise "
                 f"multiplier {s.noise_multiplier:.3g}, split into shares so that it holds against the coordinator "
                 f"plus up to {s.collusion_tolerance} colluding institution(s) when at least {s.min_contributors} "
                 "contribute")
    # the synthetic rows, quality summary and report are made while Flower shuts down (several
    # seconds of status checks and stopping processes), from the coordinator's "finished" event on
    products = _Background(lambda: outputs(out, data.train, data.holdout, schema, data.label, cfg, print_fn))
    _run_flower(plan, cfg, out, len(data.silos), print_fn, on_round, on_model=products.start)

    if not (out / "synthesizer" / "synthesizer.json").exists():
        raise FedsynthError(f"the federated run ended without a model: see {out / FLOWER_LOG} and "
                            f"{out / 'events.jsonl'}")
    return write_summary(out, products.result(), started)


class _Background:
    """One call on a thread of its own from :meth:`start`; :meth:`result` waits for it (or makes the
    call, if it was never started) and returns its value or raises its exception. Not a
    ThreadPoolExecutor: its threads are joined at exit, so an interrupted run would wait for the report."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self._thread: threading.Thread | None = None
        self._value: Any = None
        self._error: BaseException | None = None

    def start(self) -> None:
        if self._thread is None:  # daemon: an interrupted run does not wait for it
            self._thread = threading.Thread(target=self._run, name="fedsynth-outputs", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:  # handed to the caller of result()
            self._error = exc

    def result(self) -> Any:
        if self._thread is None:
            return self._fn()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _run_flower(plan: FederationPlan, cfg: SimulationConfig, out: Path, n_clients: int,
                print_fn: Callable[[str], None], on_round: RoundProgress | None = None,
                on_model: Callable[[], None] | None = None) -> None:
    """The federation on Flower's simulation runtime (:mod:`fedsynth.simulations.runtime`);
    ``on_model()`` once the coordinator has written the global model, while Flower shuts down."""
    state_root = (out / "clients").resolve()
    for i in range(1, n_clients + 1):  # each simulated institution's explicit first start
        if not ledger_exists(state_root / f"client-{i}"):
            Ledger.create(state_root / f"client-{i}", cfg.epsilon, cfg.delta)
    settings = ServerRunSettings(plan, cfg.secagg, str((out / "schema.json").resolve()), str(out.resolve()),
                                 n_clients, threads=cfg.threads)
    harness = Harness(silo_dir=str((out / "silos").resolve()), state_root=str(state_root),
                      schema=settings.schema, epsilon=cfg.epsilon, delta=cfg.delta)
    components = INSECURE_PLAIN_COMPONENTS if cfg.insecure_plain_aggregation else COMPONENTS
    job = SimulationJob(settings, harness, cfg.components or components, out / FLOWER_LOG)
    printer = _event_printer(print_fn, plan.rounds, on_round)

    def on_event(ev: dict[str, Any]) -> None:
        printer(ev)
        if ev["event"] == EventKind.FINISHED and on_model is not None:
            on_model()

    run_simulation_job(job, on_event, print_fn)


FLOWER_LOG = "flower.log"


def outputs(out: Path, train, holdout, schema, label: str | None, cfg: SimulationConfig,
            print_fn: Callable[[str], None]) -> dict[str, Any]:
    """The synthetic rows, the quality summary and (``cfg.report``) the report from the global model;
    the summary's fields but its time."""
    synth = Synthesizer.load(out / "synthesizer")
    n = cfg.rows or len(train)
    syn = synth.sample(n, seed=cfg.seed)
    meta, _ = synth.to_state()
    card = json.loads((out / "model_card.json").read_text())
    write_synthetic(syn, out / "synthetic.csv", provenance(meta, len(syn)), schema=schema)
    summary: dict[str, Any] = {"config": {k: v for k, v in asdict(cfg).items()}, "model_card": card}
    if cfg.evaluate:
        summary["quality"] = quick_quality(train, holdout, syn, schema, label)
        q = summary["quality"]
        print_fn(f"quality vs real holdout: mean 1-way TVD {q['tvd_1way']:.3f}, 2-way TVD {q['tvd_2way']:.3f}"
                 + (f", TSTR ROC AUC {q['tstr_auc']:.3f} (train-on-real {q['trtr_auc']:.3f})" if "tstr_auc" in q else ""))
    if cfg.report:
        result = evaluate(train, holdout, syn, schema, target=label, guarantee=guarantee_from_card(card),
                          seed=cfg.seed)
        if result["meta"]["holdout_overlap"]["warning"]:
            print_fn(f"warning: {result['meta']['holdout_overlap']['warning']}")
        write_report(result, out)
        print_fn(f"report: {out / 'report.html'}")
    return summary


def write_summary(out: Path, summary: dict[str, Any], started: float) -> dict[str, Any]:
    """``summary.json`` with the run's time: the whole run, the quality summary and report included."""
    summary = dict(summary, seconds=round(time.time() - started, 1))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return summary
