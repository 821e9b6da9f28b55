"""The coordinator's run: budget check, SecAgg+ round, checkpoint; resume after a restart.

Flower's SecAgg+ exists on the legacy workflow path only (flwr 1.41/1.42), so this mirrors
``DefaultWorkflow`` (client-manager thread, ``LegacyContext``, per-round
``SecAggPlusWorkflow``) and adds what fedsynth needs around each round:

1. a budget check: every connected client is asked (legacy ``get_properties``) whether its
   own ledger can afford the round; only those that say yes are selected, so a client
   whose budget is spent is left out cleanly instead of failing inside SecAgg+;
2. an atomic checkpoint of the global model after every completed round, so a restarted
   coordinator resumes from the last completed round;
3. patience with institutions that drop out mid-run (a crash, a restart of their
   ``fedsynth client``): when too few can train because some stopped answering, the run
   waits up to ``wait_timeout`` for them to be back instead of ending, and a run that fails
   anyway logs what each institution reported as spent (its ``failed`` event);
4. with shared noise, before the first round: the pooled counts, one SecAgg+ round of every
   institution's counts plus its noise share (server/shared_round.py);
5. after the last round, the marginal fit when the plan asks for one: two more SecAgg+ rounds
   (pair errors, then the chosen pairs' counts) and the fine-tune (server/marginal_rounds.py).

What the coordinator sees in plaintext: the budget-check replies (yes/no, schema hash,
epsilon spent rounded to 0.01, delta), ``num_examples`` (always 1, or 0 for a refusal) and
coarse fit metrics (epsilon spent rounded to 0.01, and 0/1 flags: whether the delta was
norm-clipped, whether the update was a replay of a lost round, whether the client refused):
the typed messages of :mod:`fedsynth.common.protocol.messages`, nothing else.
Model deltas, frequencies, aggregation weights and the marginal fit's releases are only ever
seen summed.
"""

from __future__ import annotations

import secrets
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import flwr.compat.common.recorddict_compat as compat
import torch
from flwr.app import ConfigRecord, Message
from flwr.common import GetPropertiesIns
from flwr.common.constant import MessageTypeLegacy
from flwr.server import ServerApp, ServerConfig
from flwr.server.compat.app_utils import start_update_client_manager_thread
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.server.workflow.default_workflows import default_fit_workflow

from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.data.schema import Schema
from fedsynth.common.digest import arrays_digest
from fedsynth.common.model.marginal_fit import column_segments, planned_pairs
from fedsynth.common.model.tabular import build_model
from fedsynth.common.protocol.federation import (FIELD_CLIPPING_RANGE, FIELD_QUANTIZATION_RANGE, FederationPlan,
                                                 SecAggSettings, run_secagg, shared_threshold)
from fedsynth.common.protocol.marginal_stage import StageSum, stage_length
from fedsynth.common.protocol.messages import BudgetCheck, BudgetReply, MessageError, Stage
from fedsynth.common.protocol.secure_masks import SecureSecAggPlusWorkflow
from fedsynth.common.timestamps import utc_now
from fedsynth.server.checkpoint import Checkpoint, write_global_model
from fedsynth.server.events import EVENT, PLAIN, Event, EventKind, reported_spend
from fedsynth.server.ledger_watch import SpendWatch
from fedsynth.server.marginal_rounds import (NO_PAIR_COUNTS, NO_PAIR_ERRORS, NO_PAIR_WORTH_IT, choose_pairs,
                                             fit_global_model, pooled_errors)
from fedsynth.server.round import RoundRejected
from fedsynth.server.shared_round import pooled_counts, run_bin_edges
from fedsynth.server.strategy import PlainMeanFedAvg, SecureDeltaFedAvg

OnEvent = Callable[[Event], None]  # where the run's progress events go (server/events.py)
# Seconds between budget checks while waiting for institutions to come back: a node that died
# without signing off stays listed until the SuperLink marks it offline (two missed heartbeats).
ABSENT_RECHECK_S = 5.0


PLAIN_AGGREGATION_WARNING = (
    "INSECURE: plain aggregation (benchmarking/testing only). SecAgg+ is OFF: the coordinator "
    "receives every client's individual update in the clear. Never use with real institutions.")


class FederatedRun:
    """One federated run. ``insecure_plain_aggregation=True`` replaces SecAgg+ with Flower's plain
    fit workflow: it exists only so that bench/scale.py can measure what SecAgg+ costs, exposes
    each client's individual update to the coordinator, warns loudly, is never the default and
    has no CLI flag (the clients must also be built with ``make_client_app(..., secure=False)``).
    """

    def __init__(self, plan: FederationPlan, schema: Schema, out_dir: str | Path, secagg: SecAggSettings,
                 expected_clients: int, on_event: OnEvent | None = None, wait_timeout: int = 600, *,
                 fit_threads: int = 0, insecure_plain_aggregation: bool = False) -> None:
        self.plan, self.schema, self.out_dir = plan, schema, Path(out_dir)
        self.secagg, self.expected_clients = run_secagg(secagg, plan), expected_clients
        self._sink = on_event or (lambda e: None)
        self.wait_timeout = wait_timeout
        self.fit_threads = fit_threads  # torch threads for the marginal fit's fine-tune (0: as set)
        self.spent: dict[str, float] = {}  # node id -> epsilon spent, as last reported to this run
        self.insecure_plain_aggregation = insecure_plain_aggregation
        self._stage_reports: dict[str, Any] = {}  # the last marginal-fit round's fit metrics, by node id
        if insecure_plain_aggregation:
            warnings.warn(PLAIN_AGGREGATION_WARNING, RuntimeWarning, stacklevel=2)

    def on_event(self, ev: Event) -> None:
        self.spent.update(reported_spend(ev))
        self._sink(ev)

    # ------------------------------------------------------------------ entry point
    def __call__(self, grid, context) -> None:
        """Run (or resume) the federation. Any failure is logged as a ``failed`` event that
        says why and what each institution reported as spent (a failed run still cost them
        privacy), then re-raised."""
        try:
            self._run(grid, context)
        except BaseException as exc:
            self.on_event({EVENT: EventKind.FAILED, "reason": f"{type(exc).__name__}: {exc}"[:1000],
                           "spent": dict(self.spent)})
            raise

    def _run(self, grid, context) -> None:
        encoder = TableEncoder(self.schema)
        ckpt = Checkpoint.load(self.out_dir)
        if ckpt is not None and ckpt.plan_json != self.plan.to_json():
            raise RuntimeError(f"{self.out_dir}: a checkpoint from a different plan exists; use a new --out")
        if ckpt is None:
            torch.manual_seed(self.plan.seed)  # public seed: every party could rebuild the start
            model = build_model(encoder, self.plan.model)
            ckpt = Checkpoint(round=0, arrays=model.get_arrays(), freqs=None, history=[],
                              plan_json=self.plan.to_json(), started=utc_now())
        else:
            self.on_event({EVENT: EventKind.RESUMED, "round": ckpt.round})
        strategy_cls = PlainMeanFedAvg if self.insecure_plain_aggregation else SecureDeltaFedAvg
        strategy = strategy_cls(self.plan, ckpt.arrays, encoder.counts_layout, self.expected_clients,
                                self.secagg.clipping_range, ckpt.optimizer_moments, ckpt.optimizer_steps)
        strategy.freqs, strategy.pooled_rows = ckpt.freqs, ckpt.pooled_rows
        strategy.bin_edges = run_bin_edges(self.schema, self.plan, ckpt.freqs)
        legacy = LegacyContext(context, config=ServerConfig(num_rounds=self.plan.rounds), strategy=strategy)
        thread, f_stop, c_done = start_update_client_manager_thread(grid, legacy.client_manager)
        try:
            c_done.wait()
            if not legacy.client_manager.wait_for(self.expected_clients, timeout=self.wait_timeout):
                raise RuntimeError(f"only {legacy.client_manager.num_available()} of {self.expected_clients} "
                                   f"clients connected within {self.wait_timeout}s")
            context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
                strategy.initialize_parameters(legacy.client_manager), keep_input=True)
            cfg = ConfigRecord()
            cfg[Key.START_TIME] = time.time()
            context.state.config_records[MAIN_CONFIGS_RECORD] = cfg
            if self.insecure_plain_aggregation:
                self.on_event({EVENT: EventKind.INSECURE_PLAIN_AGGREGATION, "warning": PLAIN_AGGREGATION_WARNING})
            if self.plan.shared_noise is not None and ckpt.pooled_rows is None:
                ckpt = self._pooled_counts(grid, legacy, strategy, cfg, ckpt, encoder)
            failures_in_a_row = 0
            rng = secrets.SystemRandom()
            rnd = ckpt.round + 1
            watch = SpendWatch.from_history(ckpt.history)  # a node whose reported spend falls is excluded
            absent_until: float | None = None  # end of this round's wait for institutions that left
            checks: dict[str, BudgetReply] = {}
            checked_until = 0  # shared noise: the last round the previous budget check covers
            while rnd <= self.plan.rounds:
                started = time.time()
                cfg[Key.CURRENT_ROUND] = rnd
                if rnd > checked_until or failures_in_a_row:
                    checks = watch.review(self._budget_check(grid, legacy, rnd, strategy.current))
                    checked_until = rnd + _covered_rounds(checks) - 1
                    self.on_event({EVENT: EventKind.BUDGET_CHECK, "round": rnd,
                                   "eligible": sum(r.can_train for r in checks.values()), "replies": _records(checks)})
                checked = time.time()
                # Least-spent first (ties at random): balances participation so that budget
                # is not left stranded with a single client while rounds remain.
                eligible = sorted((nid for nid, r in checks.items() if r.can_train),
                                  key=lambda nid: (checks[nid].epsilon_spent or 0.0, rng.random()))
                if len(eligible) < max(2, self.plan.min_clients):
                    answered = sum(1 for r in checks.values() if not r.unreachable)
                    if answered < self.expected_clients:
                        absent_until = absent_until or time.time() + self.wait_timeout
                        if time.time() < absent_until:
                            self._wait_for_absent(legacy, rnd, answered, absent_until)
                            continue  # ask again
                    self.on_event({EVENT: EventKind.STOPPED, "round": rnd,
                                   "reason": f"only {len(eligible)} client(s) can afford another round"})
                    break
                strategy.eligible = eligible
                strategy.last_round, strategy.rejected = None, None
                error = None
                try:
                    self._fit_workflow(min(len(eligible), self.plan.clients_per_round or len(eligible)))(grid, legacy)
                except Exception as exc:  # a malformed peer message must not take the coordinator down
                    error = f"{type(exc).__name__}: {str(exc)[:300]}"
                if strategy.last_round is None:
                    failures_in_a_row += 1
                    self.on_event({EVENT: EventKind.ROUND_FAILED, "round": rnd, "attempt": failures_in_a_row,
                                   "reason": error or strategy.rejected
                                   or "SecAgg+ did not complete (too few clients survived)"})
                    if failures_in_a_row >= 3:
                        raise RuntimeError(f"round {rnd} failed 3 times in a row; giving up")
                    continue  # retry the same round number
                failures_in_a_row = 0
                # budget_check_seconds: where a round's time goes (docs/benchmarks.md)
                plain = {"aggregation": PLAIN} if self.insecure_plain_aggregation else {}
                record = dict(strategy.last_round, **plain, seconds=round(time.time() - started, 2),
                              budget_check_seconds=round(checked - started, 2), finished=utc_now(),
                              budget=_records(checks))
                opt = strategy.server_optimizer
                ckpt = Checkpoint(round=rnd, arrays=strategy.current, freqs=strategy.freqs,
                                  history=ckpt.history + [record], plan_json=self.plan.to_json(),
                                  started=ckpt.started, optimizer_moments=opt.moments() if opt else None,
                                  optimizer_steps=opt.steps if opt else 0, pooled_rows=strategy.pooled_rows)
                ckpt.save(self.out_dir)  # atomic: a crash leaves the previous round's checkpoint
                self.on_event({EVENT: EventKind.ROUND_DONE, **record})
                rnd, absent_until = rnd + 1, None
            if ckpt.round == 0:
                raise RuntimeError("no round completed; no model written")
            if ckpt.marginal_fit is None and planned_pairs(self.plan.marginal_fit, column_segments(encoder)):
                ckpt = self._marginal_fit(grid, legacy, strategy, cfg, ckpt)
            # final budget picture for the model card
            final = self._budget_check(grid, legacy, ckpt.round + 1)
            write_global_model(self.out_dir, self.schema, self.plan, ckpt, final, asdict(self.secagg))
            self.on_event({EVENT: EventKind.FINISHED, "round": ckpt.round, "budget": _records(final)})
        finally:
            f_stop.set()
            thread.join()

    # ------------------------------------------------------------------ the pooled counts
    def _pooled_counts(self, grid, legacy, strategy, cfg, ckpt: Checkpoint, encoder: TableEncoder) -> Checkpoint:
        """Shared noise, before round 1: every institution's counts plus its noise share, summed
        through SecAgg+ (one release at pooled noise, not one per institution). Their frequencies
        and row estimate serve the whole run and are checkpointed, so a restart does not ask again.
        Raises when the round cannot complete: without the row estimate no step can be scaled."""
        total = self._stage_round(grid, legacy, strategy, cfg, 0, Stage.POOLED_COUNTS, (),
                                  column_segments(encoder), encoder.count_sizes)
        if total is None:
            raise RuntimeError("the pooled counts round failed 3 times in a row; giving up before any training round")
        try:
            pooled = pooled_counts(total, self.plan, encoder.counts_layout)
        except RoundRejected as exc:
            raise RuntimeError(f"the pooled counts were rejected: {exc}") from None
        strategy.freqs, strategy.pooled_rows = pooled.freqs, pooled.rows
        strategy.bin_edges = run_bin_edges(self.schema, self.plan, pooled.freqs)
        done = replace(ckpt, freqs=pooled.freqs, pooled_rows=pooled.rows)
        done.save(self.out_dir)  # atomic: a restart finds them and does not ask again
        self.on_event({EVENT: EventKind.POOLED_COUNTS, "contributors": pooled.contributors,
                       "reports": self._stage_reports})
        return done

    # ------------------------------------------------------------------ the marginal fit
    def _marginal_fit(self, grid, legacy, strategy, cfg, ckpt: Checkpoint) -> Checkpoint:
        """After the last round: the pooled pair errors, then the chosen pairs' pooled counts (two
        SecAgg+ rounds), and the global model fine-tuned to them (server/marginal_rounds.py).
        The new weights are checkpointed with the fit's record, so a restart does not ask again.
        If either round cannot complete, the trained model is written as it is, and the run says why."""
        segments = column_segments(TableEncoder(self.schema))
        self.on_event({EVENT: EventKind.MARGINAL_FIT_STARTED, "pairs": planned_pairs(self.plan.marginal_fit, segments)})
        strategy.eligible = None  # every connected institution: each decides against its own ledger
        errors = self._stage_round(grid, legacy, strategy, cfg, ckpt.round + 1, Stage.PAIR_ERRORS, (), segments)
        if errors is None:
            return self._fit_done(ckpt, {"skipped": NO_PAIR_ERRORS})
        if self.plan.shared_noise is not None:  # the institutions projected their counts alone
            errors = pooled_errors(self.schema, self.plan, strategy.current, strategy.freqs, strategy.pooled_rows or 1.0,
                                   errors)
        chosen = choose_pairs(self.schema, self.plan, errors)
        if not chosen:
            return self._fit_done(ckpt, {"skipped": NO_PAIR_WORTH_IT,
                                      "contributors": errors.contributors})
        counts = self._stage_round(grid, legacy, strategy, cfg, ckpt.round + 2, Stage.PAIR_COUNTS, tuple(chosen),
                                   segments)
        if counts is None:
            return self._fit_done(ckpt, {"skipped": NO_PAIR_COUNTS})
        arrays, info = fit_global_model(self.schema, self.plan, strategy.current, strategy.freqs, chosen, counts,
                                       threads=self.fit_threads)
        return self._fit_done(replace(ckpt, arrays=arrays), info)

    def _fit_done(self, ckpt: Checkpoint, record: dict[str, Any]) -> Checkpoint:
        """``ckpt`` with the marginal fit's ``record`` (or why none was made), saved, and told."""
        done = replace(ckpt, marginal_fit=record)
        done.save(self.out_dir)  # atomic: a restart finds the fit made and does not ask again
        self.on_event({EVENT: EventKind.MARGINAL_FIT, **record, "reports": self._stage_reports})
        return done

    def _stage_round(self, grid, legacy, strategy, cfg, number: int, stage: str, pairs: tuple, segments,
                     count_sizes: list[int] | None = None) -> StageSum | None:
        """One one-off release (the pooled counts, or one of the marginal fit's) summed through
        SecAgg+ (up to three tries), or None."""
        length = stage_length(stage, segments, pairs, self.plan.marginal_fit.projections, count_sizes)
        strategy.stage, strategy.stage_sum = (stage, pairs, length), None
        clients = len(legacy.client_manager.all())
        try:
            for attempt in range(1, 4):
                cfg[Key.CURRENT_ROUND] = number
                strategy.last_round, strategy.rejected = None, None
                error = None
                try:
                    self._fit_workflow(clients, field=True)(grid, legacy)
                except Exception as exc:  # as a training round: a malformed peer message must not end the run
                    error = f"{type(exc).__name__}: {str(exc)[:300]}"
                if strategy.stage_sum is not None:
                    self._stage_reports = (strategy.last_round or {}).get("reports", {})
                    return strategy.stage_sum
                self.on_event({EVENT: EventKind.ROUND_FAILED, "round": number, "attempt": attempt,
                               "reason": f"{stage}: " + (error or strategy.rejected or "SecAgg+ did not complete")})
            return None
        finally:
            strategy.stage = None

    def _wait_for_absent(self, legacy, rnd: int, answered: int, until: float) -> None:
        """Too few could train and some institutions did not answer: wait (up to ``until``) for
        every expected one to be connected again; the caller then repeats the budget check."""
        self.on_event({EVENT: EventKind.WAITING, "round": rnd, "answered": answered, "expected": self.expected_clients,
                       "timeout": max(0, round(until - time.time()))})
        time.sleep(min(ABSENT_RECHECK_S, max(0.0, until - time.time())))
        legacy.client_manager.wait_for(self.expected_clients, timeout=max(0.0, until - time.time()))

    def _fit_workflow(self, clients: int, field: bool = False):
        """This round's fit: Flower's SecAgg+ with CSPRNG mask expansion
        (fedsynth.common.protocol.secure_masks), its share count fitted to the round's ``clients``.
        ``field``: quantised so that integer field residues pass unchanged (the marginal fit's
        releases; shared-noise runs always are)."""
        if self.insecure_plain_aggregation:
            return default_fit_workflow
        s = self.secagg
        shares, threshold = s.for_round(clients)
        shared = self.plan.shared_noise
        if shared is not None:  # fewer than K_min survivors: never unmasked
            threshold = shared_threshold(shares, threshold, clients, shared.min_contributors)
        clipping, quantization = (FIELD_CLIPPING_RANGE, FIELD_QUANTIZATION_RANGE) if field \
            else (s.clipping_range, s.quantization_range)
        return SecureSecAggPlusWorkflow(num_shares=shares, reconstruction_threshold=threshold, max_weight=1.0,
                                        clipping_range=clipping, quantization_range=quantization,
                                        modulus_range=s.modulus_range, timeout=s.timeout)

    # ------------------------------------------------------------------ budget check
    def _budget_check(self, grid, legacy, rnd: int, arrays=None) -> dict[str, BudgetReply]:
        """Each connected institution's answer to "can you afford round ``rnd``?" by node id."""
        # the model's digest lets a client that already paid for this exact round say yes at its cap
        ask = BudgetCheck(self.plan, self.expected_clients, rnd, None if arrays is None else arrays_digest(arrays))
        nodes = list(legacy.client_manager.all().values())
        msgs = [Message(content=compat.getpropertiesins_to_recorddict(GetPropertiesIns(ask.to_config())),
                        dst_node_id=p.node_id, message_type=MessageTypeLegacy.GET_PROPERTIES,
                        group_id=f"budget-{rnd}") for p in nodes]
        replies: dict[str, BudgetReply] = {}
        for msg in grid.send_and_receive(msgs, timeout=self.secagg.timeout or 300):
            nid = str(msg.metadata.src_node_id)
            if msg.has_error():  # e.g. the node went offline: it may come back
                replies[nid] = BudgetReply(can_train=False, reason=f"error: {msg.error.reason[:200]}",
                                           unreachable=True)
                continue
            replies[nid] = read_budget_reply(compat.recorddict_to_getpropertiesres(msg.content).properties)
        return replies


def read_budget_reply(properties: dict[str, Any]) -> BudgetReply:
    """A node's budget reply; a malformed one is a refusal that says what was wrong with it."""
    try:
        return BudgetReply.from_record(properties)
    except MessageError as exc:
        return BudgetReply(can_train=False, reason=str(exc)[:300])


def _covered_rounds(replies: dict[str, BudgetReply]) -> int:
    """Rounds one budget check answers for: with shared noise every round costs each institution
    the same, and each says how many more it can afford (``rounds_left``), so the next check is
    due when the first of them runs out; without that answer, one round (ask every round)."""
    left = [r.rounds_left for r in replies.values() if r.can_train]
    if not left or any(n is None for n in left):
        return 1
    return max(1, min(left))


def _records(replies: dict[str, BudgetReply]) -> dict[str, dict[str, Any]]:
    """Budget replies as written to events.jsonl, the checkpoint history and the model card."""
    return {nid: r.to_record() for nid, r in replies.items()}



def make_server_app(run: FederatedRun) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:
        run(grid, context)

    return app

