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
* the file checks itself on every open, and a disagreement is refused with a
  :class:`PrivacyError` naming the file and what disagrees:

  - ``events`` is an append-only log: ``created`` (with the cap the ledger was created
    with), one event per charge (listing its releases), ``cap_lowered``. ``history`` must be
    the charge events' releases, concatenated in order, and the recorded ``epsilon_spent``
    what the accountant computes over it;
  - the cap must be the created cap, lowered only by ``cap_lowered`` events;
  - the events form a hash chain: each carries ``prev`` (the previous event's hash; zeros
    for the first) and ``hash`` (SHA-256 of its own content, ``prev`` included), and the file
    stores the last one as ``head``. An edited, reordered, removed or truncated event breaks it.

  Limit: the chain is unkeyed. Whoever can write ``ledger.json`` can also recompute every
  hash, so it catches accidental damage, naive edits and truncation, not a determined local
  administrator; the institution owns its disk. The coordinator's spend watch is the
  independent second line.
* a ``fedsynth-ledger/1`` file (no ``created`` event, no hashes) gets the same history and
  spend checks on its first open by this version, then is rewritten as
  ``fedsynth-ledger/2``: its events are chained as they are and a ``migrated`` event records
  the cap found in the file, which from then on stands for the creation cap (version 1
  never recorded that). Older fedsynth versions refuse a version-2 file by its format
  instead of appending unchained events to it.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fedsynth.common.atomic import atomic_write_text
from fedsynth.common.digest import as_stored, json_sha256
from fedsynth.common.dp.accounting import Release, check_privacy_params, epsilon_spent
from fedsynth.common.dp.shared_noise import ALONE, SHARED_TAG, SharedNoiseRelease
from fedsynth.common.errors import BudgetExhausted, PrivacyError
from fedsynth.common.timestamps import utc_now

LEDGER_FILE = "ledger.json"
FORMAT = "fedsynth-ledger/2"
LEGACY_FORMAT = "fedsynth-ledger/1"  # no hash chain, no created event: migrated on open
GENESIS = "0" * 64  # ``prev`` of the first event
CAP_ANCHORS = ("created", "migrated")  # events that state the cap a ledger's chain starts from
# Recorded and recomputed epsilon must agree to 0.1 %: far closer than any edit that matters,
# loose enough that a newer accountant's rounding does not lock an institution out.
_SPEND_RTOL = 1e-3


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
    created: str = field(default_factory=utc_now)

    # ------------------------------------------------------------------ files
    @classmethod
    def create(cls, state_dir: str | Path, epsilon_cap: float, delta: float, accountant: str = "rdp") -> Ledger:
        """Initialise a new, empty ledger in ``state_dir`` (an institution's first start only)."""
        check_privacy_params(epsilon_cap, delta)
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / LEDGER_FILE
        if path.exists():
            raise PrivacyError(f"{path}: a ledger already exists; it keeps the budget already spent and is "
                               "never replaced by a new one")
        ledger = cls(path, epsilon_cap, delta, accountant)
        ledger._append(dict(event="created", **ledger._terms(), time=ledger.created))
        ledger.save()
        return ledger

    @classmethod
    def open(cls, state_dir: str | Path, epsilon_cap: float, delta: float, accountant: str = "rdp",
             create: bool = False) -> Ledger:
        """Load and verify the ledger in ``state_dir``; with ``create=True`` (explicit first start) make one if absent.

        Without ``create`` a missing ledger raises :class:`PrivacyError`: it is
        indistinguishable from a wiped state dir, and treating it as a fresh budget would
        let an institution spend its cap twice. A file that disagrees with itself (see the
        module docstring) is refused too.
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
        ledger, migrated = cls._load(path)
        if delta != ledger.delta:
            raise PrivacyError(f"{path}: the ledger was opened with delta={ledger.delta:g}; got delta={delta:g}. "
                               "Delta cannot change over a ledger's life.")
        if epsilon_cap > ledger.epsilon_cap + 1e-12:
            raise PrivacyError(
                f"{path}: the ledger's cap is epsilon={ledger.epsilon_cap:g}; a higher cap ({epsilon_cap:g}) "
                "is refused. Budget already spent cannot be un-spent."
            )
        lowered = epsilon_cap < ledger.epsilon_cap
        if lowered:
            ledger.epsilon_cap = epsilon_cap
            ledger._append({"event": "cap_lowered", "epsilon_cap": epsilon_cap, "time": utc_now()})
        if lowered or migrated:
            ledger.save()
        return ledger

    @classmethod
    def _load(cls, path: Path) -> tuple[Ledger, bool]:
        """Read and verify ``path``; a version-1 ledger is migrated in memory (True: save it)."""
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise PrivacyError(
                f"{path}: the privacy ledger is corrupt ({exc.msg}); refusing to train rather than "
                "risk forgetting spent budget. Restore it from backup."
            ) from None
        fmt = raw.get("format") if isinstance(raw, dict) else None
        if fmt not in (FORMAT, LEGACY_FORMAT):
            raise PrivacyError(f"{path}: not a fedsynth ledger (format {fmt!r}; this version reads {FORMAT!r} "
                               f"and migrates {LEGACY_FORMAT!r})")
        try:
            ledger = cls(path, float(raw["epsilon_cap"]), float(raw["delta"]), str(raw.get("accountant", "rdp")),
                         [_release(h) for h in raw["history"]], list(raw.get("events", [])),
                         dict(raw.get("plan", {})), str(raw["ledger_id"]), str(raw["created"]))
            recorded_spend = float(raw["epsilon_spent"])
            if not all(isinstance(e, dict) for e in ledger.events):
                raise TypeError("an event is not a JSON object")
        except (KeyError, TypeError, ValueError) as exc:
            raise PrivacyError(
                f"{path}: the privacy ledger is corrupt (missing or malformed field: {exc}); refusing to train "
                "rather than risk forgetting spent budget. Restore it from backup."
            ) from None
        if fmt == FORMAT:
            ledger._check_chain(raw.get("head"))
        ledger._check_history(recorded_spend)
        if fmt == LEGACY_FORMAT:
            ledger._migrate()
        ledger._check_cap()
        return ledger, fmt == LEGACY_FORMAT

    def save(self) -> None:
        body = {
            "format": FORMAT,
            "ledger_id": self.ledger_id,
            "created": self.created,
            "epsilon_cap": self.epsilon_cap,
            "delta": self.delta,
            "accountant": self.accountant,
            "history": [_stored(h) for h in self.history],
            "epsilon_spent": self.epsilon_spent,
            "plan": self.plan,
            "events": self.events,
            "head": self.head,
        }
        atomic_write_text(self.path, json.dumps(body, indent=2) + "\n", mode=0o600)

    # ------------------------------------------------------------------ event log
    @property
    def head(self) -> str:
        """Hash of the last event: what the file stores so that truncation shows."""
        return self.events[-1]["hash"] if self.events else GENESIS

    def _terms(self) -> dict[str, Any]:
        """What an anchor event (created, migrated) records about the ledger."""
        return {"ledger_id": self.ledger_id, "epsilon_cap": self.epsilon_cap, "delta": self.delta,
                "accountant": self.accountant}

    def _append(self, event: dict[str, Any]) -> None:
        """Chain ``event`` after the current head (stored as it will read back, so its hash is stable)."""
        event = as_stored(dict(event, prev=self.head))
        event["hash"] = _event_hash(event)
        self.events.append(event)

    def _migrate(self) -> None:
        """Chain a version-1 ledger's events as they are, then record the cap found in the file."""
        legacy, self.events = self.events, []
        for event in legacy:
            self._append(event)
        self._append(dict(event="migrated", from_format=LEGACY_FORMAT, **self._terms(), time=utc_now()))

    # ------------------------------------------------------------------ verification
    def _tampered(self, what: str) -> PrivacyError:
        return PrivacyError(f"{self.path}: {what}. The ledger was edited or damaged; refusing to train rather than "
                            "risk forgetting spent budget. Restore ledger.json from backup.")

    def _check_chain(self, head: Any) -> None:
        prev = GENESIS
        for i, event in enumerate(self.events):
            name = event.get("event", "?")
            if event.get("hash") != _event_hash(event):
                raise self._tampered(f"event {i} ({name}) was edited: its content does not match its hash")
            if event.get("prev") != prev:
                raise self._tampered(f"event {i} ({name}) is out of order, or an event before it was removed: "
                                     "its prev hash is not the hash of the event before it")
            prev = event["hash"]
        if head != prev:
            raise self._tampered(f"the event log was truncated: the stored head hash is not the hash of the last "
                                 f"of the {len(self.events)} events left")

    def _check_history(self, recorded_spend: float) -> None:
        charges = [e for e in self.events if "releases" in e]
        listed = [_release(r) for e in charges for r in e["releases"]]
        if listed != self.history:
            raise self._tampered(
                f"history lists {len(self.history)} release(s), but the {len(charges)} charge event(s) list "
                f"{len(listed)}; they must be the same releases in the same order")
        spent = self.epsilon_spent
        if not math.isclose(recorded_spend, spent, rel_tol=_SPEND_RTOL, abs_tol=1e-9):
            raise self._tampered(f"the recorded epsilon_spent {recorded_spend:.6g} is not what the {self.accountant} "
                                 f"accountant computes over the history ({spent:.6g})")
        after = float(charges[-1].get("epsilon_after", math.nan)) if charges else 0.0
        if not math.isclose(after, spent, rel_tol=_SPEND_RTOL, abs_tol=1e-9):
            raise self._tampered(f"the last charge event records epsilon_after {after:.6g}, but the history gives "
                                 f"{spent:.6g}")

    def _check_cap(self) -> None:
        anchor = next((i for i, e in enumerate(self.events) if e.get("event") in CAP_ANCHORS), None)
        if anchor is None:
            raise self._tampered("no created event records the cap this ledger was created with")
        first = self.events[anchor]
        for key in ("ledger_id", "delta", "accountant"):
            if first.get(key) != getattr(self, key):
                raise self._tampered(f"{key} {getattr(self, key)!r} disagrees with the {first['event']} event "
                                     f"({first.get(key)!r})")
        created = cap = float(first.get("epsilon_cap", math.nan))
        for event in self.events[anchor + 1:]:
            if event.get("event") != "cap_lowered":
                continue
            lowered = float(event.get("epsilon_cap", math.nan))
            if not lowered < cap:
                raise self._tampered(f"a cap_lowered event raises the cap from {cap:g} to {lowered:g}")
            cap = lowered
        if self.epsilon_cap != cap:
            via = f", lowered to {cap:g} by cap_lowered events" if cap != created else ""
            raise self._tampered(
                f"epsilon_cap {self.epsilon_cap:g} disagrees with the events: {first['event']} with epsilon "
                f"{created:g}{via}. A cap only goes down, through a recorded cap_lowered event")

    # ------------------------------------------------------------------ budget
    @property
    def epsilon_spent(self) -> float:
        """Epsilon over every release, against the coordinator plus up to T colluding institutions
        (the figure the cap enforces; the only figure when all noise is local)."""
        return epsilon_spent(self.history, self.delta, self.accountant)

    @property
    def epsilon_alone(self) -> float:
        """Epsilon if every other party colluded: shared-noise steps count only this
        institution's own noise share (equal to :attr:`epsilon_spent` without shared steps)."""
        return epsilon_spent(self.history, self.delta, self.accountant, view=ALONE)

    def epsilon_after(self, releases: list[Release | SharedNoiseRelease]) -> float:
        return epsilon_spent(list(self.history) + list(releases), self.delta, self.accountant)

    def can_afford(self, releases: list[Release | SharedNoiseRelease]) -> bool:
        return self.epsilon_after(releases) <= self.epsilon_cap + 1e-9

    def affordable_repeats(self, first: list[Release | SharedNoiseRelease], release: SharedNoiseRelease,
                           limit: int) -> int:
        """How many times (at most ``limit``) ``release`` fits under the cap after ``first``."""
        def fits(n: int) -> bool:
            return self.can_afford(list(first) + [replace(release, steps=release.steps * n)])

        lo, hi = 0, max(0, int(limit))
        while lo < hi:  # fits() is monotone in n: bisect for the largest n that fits
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        return lo

    def charge(self, releases: list[Release | SharedNoiseRelease], **event: Any) -> float:
        """Record ``releases`` on disk; raise BudgetExhausted (recording nothing) if over the cap."""
        after = self.epsilon_after(releases)
        if after > self.epsilon_cap + 1e-9:
            raise BudgetExhausted(
                f"privacy budget: this round would bring epsilon to {after:.4f}, over the cap "
                f"{self.epsilon_cap:g} (spent so far {self.epsilon_spent:.4f})"
            )
        n_hist, n_events = len(self.history), len(self.events)
        self.history.extend(_release(_stored(r)) for r in releases)
        self._append(dict({"event": "charge"}, **event, releases=[_stored(r) for r in releases], epsilon_after=after,
                          time=utc_now()))
        try:
            self.save()
        except BaseException:  # not on disk = not spent, and must not be sent: roll back, re-raise
            del self.history[n_hist:], self.events[n_events:]
            raise
        return after


def _release(entry: Any) -> Release | SharedNoiseRelease:
    """A history entry as read from JSON; a malformed one is a corrupt ledger (TypeError/ValueError)."""
    if isinstance(entry, (list, tuple)) and entry and entry[0] == SHARED_TAG:
        return SharedNoiseRelease.from_list(entry)
    if not isinstance(entry, (list, tuple)) or len(entry) != 3:
        raise TypeError(f"history entry {entry!r} is not [noise_multiplier, sample_rate, steps]")
    return tuple(entry)  # type: ignore[return-value]


def _stored(entry: Release | SharedNoiseRelease) -> list:
    """A history entry as written to JSON."""
    return entry.to_list() if isinstance(entry, SharedNoiseRelease) else list(entry)


def _event_hash(event: dict[str, Any]) -> str:
    return json_sha256({k: v for k, v in event.items() if k != "hash"})


def ledger_exists(state_dir: str | Path) -> bool:
    return (Path(state_dir) / LEDGER_FILE).exists() and os.path.getsize(Path(state_dir) / LEDGER_FILE) > 0
