"""The run's progress events: ``<out-dir>/events.jsonl``, written by the ServerApp and read back.

One JSON object a line, appended and flushed as the run goes (``budget_check``, ``waiting``,
``round_done``, ``round_failed``, ``stopped``, ``resumed``, ``finished``, ``failed``, and the
one-off releases' ``pooled_counts``, ``marginal_fit_started``, ``marginal_fit``). It is a
file format: ``fedsynth coordinator`` follows it to print progress
(:func:`describe_event`), the simulation driver reads it for its report, and every event that
carries budget replies or fit reports says what each institution reported as spent
(:func:`reported_spend`), so a failed run can still tell the institutions what it cost.
Replies and reports inside an event are the wire records of
:mod:`fedsynth.common.protocol.messages`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedsynth.common.progress import StepProgress
from fedsynth.common.protocol.messages import BudgetKey

EVENTS_FILE = "events.jsonl"

Event = dict[str, Any]
EVENT = "event"  # the key every event has: its kind


class EventKind:
    """The values of an event's ``event`` key (read by simulations/driver.py and the coordinator)."""

    BUDGET_CHECK = "budget_check"  # replies: node id -> budget reply record
    WAITING = "waiting"  # too few could train and some did not answer: waiting for them
    STOPPED = "stopped"  # too few can afford another round: the run ends early
    ROUND_FAILED = "round_failed"  # the round is retried under the same number
    ROUND_DONE = "round_done"  # the round record (server/round.py) with reports: node id -> fit metrics
    RESUMED = "resumed"  # a restarted coordinator continues from its checkpoint
    FINISHED = "finished"  # budget: the final budget replies
    FAILED = "failed"  # reason, and spent: node id -> epsilon last reported
    INSECURE_PLAIN_AGGREGATION = "insecure_plain_aggregation"  # benchmark-only mode warning
    # after the last round: the marginal fit begins (pairs: the most it measures), then its
    # record: pairs, tvd_before/after and contributors, or skipped: why there was none
    MARGINAL_FIT_STARTED = "marginal_fit_started"
    MARGINAL_FIT = "marginal_fit"
    # shared noise, before round 1: the pooled counts were summed (contributors, reports)
    POOLED_COUNTS = "pooled_counts"


PLAIN = "plain"  # a round_done's "aggregation" in the benchmark-only mode; absent: SecAgg+

# which field of an event holds per-node replies or reports carrying an epsilon spent
_SPEND_FIELDS = {EventKind.BUDGET_CHECK: "replies", EventKind.ROUND_DONE: "reports", EventKind.FINISHED: "budget",
                 EventKind.MARGINAL_FIT: "reports", EventKind.POOLED_COUNTS: "reports"}


def event_log(out_dir: Path) -> Callable[[Event], None]:
    """An ``on_event`` callback appending one JSON line per event (flushed, so it can be followed)."""
    path = Path(out_dir) / EVENTS_FILE

    def on_event(ev: Event) -> None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(ev, default=str) + "\n")
            fh.flush()

    return on_event


class EventTail:
    """Follows an events file: each call to :meth:`new` gives the complete lines not read yet.
    Lines already there when it starts (a resumed run's) are not news."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0  # bytes read so far

    def new(self) -> list[Event]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written is read next time
        self.offset += len(complete)
        return [json.loads(line) for line in complete.decode("utf-8").splitlines() if line.strip()]


def spent_in(replies: dict[str, dict[str, Any]], key: str = BudgetKey.EPSILON_SPENT) -> dict[str, float]:
    """node id -> epsilon spent, from budget replies or fit reports (a refusal's -1 is no report).
    ``key`` = ``BudgetKey.EPSILON_ALONE``: the shared-noise spend if every other party colluded."""
    out = {}
    for nid, reply in replies.items():
        eps = reply.get(key)  # the same keys in fit reports (MetricKey)
        if isinstance(eps, (int, float)) and not isinstance(eps, bool) and eps >= 0:
            out[str(nid)] = float(eps)
    return out


def reported_spend(ev: Event) -> dict[str, float]:
    """What an event says each institution has spent (empty for events that say nothing about it)."""
    if ev.get(EVENT) == EventKind.FAILED:
        return {str(k): float(v) for k, v in (ev.get("spent") or {}).items()}
    field = _SPEND_FIELDS.get(str(ev.get(EVENT)))
    return spent_in(ev.get(field) or {}) if field else {}


def node_label(nid: str, names: dict[str, str]) -> str:
    return f"node {nid} ({names[nid]})" if nid in names else f"node {nid}"


def format_spent(spent: dict[str, float], names: dict[str, str]) -> str:
    return ", ".join(f"{node_label(nid, names)}: {eps}" for nid, eps in sorted(spent.items())) or "none reported"


def aggregated(ev: Event) -> str:
    """How a ``round_done``'s updates were summed, for people: the benchmark-only plain mode
    must never be reported as secure aggregation."""
    if ev.get("aggregation") == PLAIN:
        return "updates summed in plain (INSECURE, benchmark only)"
    return "updates securely aggregated"


def describe_event(ev: Event, plan_hash: str, names: dict[str, str] | None = None) -> str | None:
    """One progress line: rounds, each institution's reported epsilon, refusals and why.

    ``names`` (node id -> key name, from the registration) labels nodes by institution."""
    kind = ev.get(EVENT)
    names = names or {}

    def eps(replies: dict[str, Any]) -> str:
        alone = spent_in(replies, BudgetKey.EPSILON_ALONE)
        both = f" (if all other parties colluded {{{format_spent(alone, names)}}})" if alone else ""
        return f"{{{format_spent(spent_in(replies), names)}}}{both}"

    if kind == EventKind.BUDGET_CHECK:
        replies = ev.get("replies", {})
        parts = [f"round {ev['round']}: {ev['eligible']}/{len(replies)} institutions can afford it; "
                 f"epsilon spent {eps(replies)}"]
        for nid, r in sorted(replies.items()):
            if not r.get(BudgetKey.CAN_TRAIN):
                reason = r.get(BudgetKey.REASON, "?")
                if reason == "schema mismatch":
                    reason += f" (its schema hash {r.get(BudgetKey.SCHEMA_HASH)}, the coordinator's {plan_hash})"
                parts.append(f"  {node_label(nid, names)} refused: {reason}")
        return "\n".join(parts)
    if kind == EventKind.ROUND_DONE:
        step = f", server step {float(ev['server_lr']):.2f} x mean" if "server_lr" in ev else ""
        return (f"round {ev['round']} done in {float(ev.get('seconds', 0)):.1f}s: {ev.get('contributors')} "
                f"{aggregated(ev)}{step}; epsilon spent {eps(ev.get('reports', {}))}")
    if kind == EventKind.MARGINAL_FIT_STARTED:
        return (f"marginal fit: every institution's 2-way errors against the global model, then up to "
                f"{ev.get('pairs')} pairs' 2-way counts (two SecAgg+ rounds), and the model fine-tuned to them")
    if kind == EventKind.MARGINAL_FIT:
        if ev.get("skipped"):
            return f"marginal fit skipped: {ev['skipped']}"
        return (f"marginal fit: {len(ev.get('pairs', []))} pooled 2-way marginals from {ev.get('contributors')} "
                f"institutions, their mean TVD {float(ev.get('tvd_before', 0)):.3f} -> "
                f"{float(ev.get('tvd_after', 0)):.3f}")
    if kind == EventKind.POOLED_COUNTS:
        return (f"pooled counts: category counts and histograms summed from {ev.get('contributors')} institutions' "
                f"noise shares (SecAgg+); epsilon spent {eps(ev.get('reports', {}))}")
    if kind == EventKind.FINISHED:
        return f"finished after round {ev['round']}; final epsilon spent {eps(ev.get('budget', {}))}"
    if kind == EventKind.WAITING:
        return (f"round {ev['round']}: {ev['answered']}/{ev['expected']} institutions answered, too few to "
                f"train; waiting up to {ev['timeout']}s for the others to come back")
    if kind in (EventKind.STOPPED, EventKind.ROUND_FAILED, EventKind.RESUMED):
        return f"{kind}: " + ", ".join(f"{k}={v}" for k, v in ev.items() if k != EVENT)
    if kind == EventKind.FAILED:
        return (f"ServerApp failed: {ev.get('reason')}; epsilon spent as last reported "
                f"{{{format_spent(ev.get('spent') or {}, names)}}}")
    return None


def round_progress(ev: Event, names: dict[str, str] | None = None) -> tuple[int, str | None] | None:
    """A routine event as (rounds completed, status beside the bar; None keeps it), or None for an
    event that needs a line of its own (a refusal, a wait, a retry, the end).

    A budget check in which every institution can train starts its round: the bar's time left
    counts from the first one seen, so a resumed run's earlier rounds do not skew it."""
    kind = ev.get(EVENT)
    if kind == EventKind.BUDGET_CHECK:
        replies = ev.get("replies", {})
        if all(r.get(BudgetKey.CAN_TRAIN) for r in replies.values()):
            return int(ev["round"]) - 1, None
        return None
    if kind == EventKind.ROUND_DONE:
        spent = spent_in(ev.get("reports", {}))
        alone = spent_in(ev.get("reports", {}), BudgetKey.EPSILON_ALONE)
        both = f" ({max(alone.values()):.3g} if all other parties colluded)" if alone else ""
        return int(ev["round"]), (f"{ev.get('contributors')} {aggregated(ev)}; epsilon spent up to "
                                  f"{max(spent.values(), default=0.0):.3g}{both}")
    return None


def show_event(ev: Event, plan_hash: str, names: dict[str, str], say: Callable[[str], None],
               bar: StepProgress | None = None) -> None:
    """Tell people about one event: on a terminal's progress ``bar`` when it is routine, as a line
    (:func:`describe_event`) otherwise or when there is no live bar."""
    routine = round_progress(ev, names) if bar is not None and bar.live else None
    if routine is not None:
        assert bar is not None
        bar.update(*routine)
        return
    msg = describe_event(ev, plan_hash, names)
    if msg:
        if bar is not None and bar.live:
            bar.line(msg)
        else:
            say(msg)
