"""The institution's privacy-budget ledger, on the institution's own disk.

Flower keeps a client's ``Context`` in memory only (lost when a SuperNode restarts), so the
ledger lives in ``<state_dir>/ledger.json`` and is rewritten atomically (temp file, fsync,
rename) every time budget is spent. Rules:

* the cap (epsilon, delta) is the institution's; the coordinator cannot raise it. A lower
  cap may be set later; a higher one is refused.
* every release is recorded *before* its result leaves the client (``charge`` first, send
  after), so a crash can waste budget but never under-count it.
* epsilon is always recomputed by the Opacus accountant over the full history.
* a ledger is only ever *created* explicitly (:meth:`Ledger.create`, or ``open(...,
  create=True)`` on an operator's first-start flag). Opening a state dir with no ledger is
  refused: a wiped or lost state dir must not turn into a fresh budget without anyone
  deciding so. (The coordinator cross-checks too: a node whose reported spend goes down is
  excluded, see :mod:`fedsynth.server.ledger_watch`.)
* a write that fails (full disk, I/O error) leaves the previous ledger on disk intact and the
  in-memory ledger unchanged, and nothing is released.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsynth.common.atomic import atomic_write_text
from fedsynth.common.errors import BudgetExhausted, PrivacyError
from fedsynth.common.privacy import Release, check_privacy_params, epsilon_spent

LEDGER_FILE = "ledger.json"
FORMAT = "fedsynth-ledger/1"


@dataclass
class Ledger:
    path: Path
    epsilon_cap: float
    delta: float
    accountant: str = "rdp"
    history: list[Release] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)
    ledger_id: str = field(default_factory=lambda: secrets.token_hex(8))
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    # ------------------------------------------------------------------ files
    @classmethod
    def create(cls, state_dir: str | Path, epsilon_cap: float, delta: float, accountant: str = "rdp") -> "Ledger":
        """Initialise a new, empty ledger in ``state_dir`` (an institution's first start only)."""
        check_privacy_params(epsilon_cap, delta)
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / LEDGER_FILE
        if path.exists():
            raise PrivacyError(f"{path}: a ledger already exists; it keeps the budget already spent and is "
                               "never replaced by a new one")
        ledger = cls(path, epsilon_cap, delta, accountant)
        ledger.save()
        return ledger

    @classmethod
    def open(cls, state_dir: str | Path, epsilon_cap: float, delta: float, accountant: str = "rdp",
             create: bool = False) -> "Ledger":
        """Load the ledger in ``state_dir``; with ``create=True`` (explicit first start) make one if absent.

        Without ``create`` a missing ledger raises :class:`PrivacyError`: it is
        indistinguishable from a wiped state dir, and treating it as a fresh budget would
        let an institution spend its cap twice.
        """
        check_privacy_params(epsilon_cap, delta)
        path = Path(state_dir) / LEDGER_FILE
        if not path.exists():
            if create:
                return cls.create(state_dir, epsilon_cap, delta, accountant)
            raise PrivacyError(
                f"{path}: no privacy ledger. If this institution has never trained, initialise it once "
                "explicitly (`fedsynth client --init-ledger`, node config init-ledger=true, or "
                "Ledger.create). If the state folder was wiped or lost, restore ledger.json from backup: "
                "starting a new ledger would forget the budget already spent. Refusing to train."
            )
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise PrivacyError(
                f"{path}: the privacy ledger is corrupt ({exc.msg}); refusing to train rather than "
                "risk forgetting spent budget. Restore it from backup."
            ) from None
        if raw.get("format") != FORMAT:
            raise PrivacyError(f"{path}: not a fedsynth ledger (format {raw.get('format')!r})")
        ledger = cls(path, float(raw["epsilon_cap"]), float(raw["delta"]), raw.get("accountant", "rdp"),
                     [tuple(h) for h in raw["history"]], raw.get("events", []), raw.get("plan", {}),
                     raw["ledger_id"], raw["created"])
        if delta != ledger.delta:
            raise PrivacyError(f"{path}: the ledger was opened with delta={ledger.delta:g}; got delta={delta:g}. "
                               "Delta cannot change over a ledger's life.")
        if epsilon_cap > ledger.epsilon_cap + 1e-12:
            raise PrivacyError(
                f"{path}: the ledger's cap is epsilon={ledger.epsilon_cap:g}; a higher cap ({epsilon_cap:g}) "
                "is refused. Budget already spent cannot be un-spent."
            )
        if epsilon_cap < ledger.epsilon_cap:
            ledger.epsilon_cap = epsilon_cap
            ledger.events.append({"event": "cap_lowered", "epsilon_cap": epsilon_cap, "time": _now()})
            ledger.save()
        return ledger

    def save(self) -> None:
        body = {
            "format": FORMAT,
            "ledger_id": self.ledger_id,
            "created": self.created,
            "epsilon_cap": self.epsilon_cap,
            "delta": self.delta,
            "accountant": self.accountant,
            "history": [list(h) for h in self.history],
            "epsilon_spent": self.epsilon_spent,
            "plan": self.plan,
            "events": self.events,
        }
        atomic_write_text(self.path, json.dumps(body, indent=2) + "\n", mode=0o600)

    # ------------------------------------------------------------------ budget
    @property
    def epsilon_spent(self) -> float:
        return epsilon_spent(self.history, self.delta, self.accountant)

    def epsilon_after(self, releases: list[Release]) -> float:
        return epsilon_spent(list(self.history) + list(releases), self.delta, self.accountant)

    def can_afford(self, releases: list[Release]) -> bool:
        return self.epsilon_after(releases) <= self.epsilon_cap + 1e-9

    def charge(self, releases: list[Release], **event: Any) -> float:
        """Record ``releases`` on disk; raise BudgetExhausted (recording nothing) if over the cap."""
        after = self.epsilon_after(releases)
        if after > self.epsilon_cap + 1e-9:
            raise BudgetExhausted(
                f"privacy budget: this round would bring epsilon to {after:.4f}, over the cap "
                f"{self.epsilon_cap:g} (spent so far {self.epsilon_spent:.4f})"
            )
        n_hist, n_events = len(self.history), len(self.events)
        self.history.extend(tuple(r) for r in releases)  # type: ignore[misc]
        self.events.append(dict(event, releases=[list(r) for r in releases], epsilon_after=after, time=_now()))
        try:
            self.save()
        except BaseException:  # not on disk = not spent, and must not be sent: roll back, re-raise
            del self.history[n_hist:], self.events[n_events:]
            raise
        return after


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def ledger_exists(state_dir: str | Path) -> bool:
    return (Path(state_dir) / LEDGER_FILE).exists() and os.path.getsize(Path(state_dir) / LEDGER_FILE) > 0
