"""Coordinator-side cross-check of the clients' reported privacy spend.

A client's ledger only grows: epsilon spent never goes down. If a node reports less than it
did before, its ledger was wiped, replaced or restored from an old backup, and training it
further could exceed its real cap. The client refuses a missing ledger itself (see
:mod:`fedsynth.client.ledger`); this is the second, independent check, for an operator who
re-initialised the ledger. Such a node is excluded from every later round of the run (and
of a resumed run: the memory is rebuilt from the checkpoint's per-round budget replies).

Identity is Flower's node id. A node that comes back under a new node id cannot be linked
to its past reports by the coordinator. In deployment that includes every node after a
*coordinator* restart: ``fedsynth coordinator`` runs the SuperLink with in-memory state, so
registered keys get fresh node ids and the rebuilt memory matches no node; the check then
only covers drops seen within one coordinator process. The client's own refusal of a missing
ledger is the guarantee; this is a second line. docs/security.md states that limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from fedsynth.common.protocol.messages import BudgetKey, BudgetReply

# budget replies are rounded to 0.01 by the client; rounding is monotone, so any drop is real
_TOLERANCE = 1e-9


@dataclass
class SpendWatch:
    highest: dict[str, float] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_history(cls, rounds: Iterable[dict[str, Any]]) -> SpendWatch:
        """Rebuild the memory from checkpointed round records (the spend in their ``budget`` replies)."""
        watch = cls()
        for record in rounds:
            for nid, reply in (record.get("budget") or {}).items():
                spent = reply.get(BudgetKey.EPSILON_SPENT)
                if isinstance(spent, (int, float)) and not isinstance(spent, bool):
                    watch._observe(nid, float(spent))
        return watch

    def _observe(self, nid: str, spent: float) -> None:
        if spent < 0:  # a refusal's NO_SPEND: nothing reported
            return
        before = self.highest.get(nid)
        if before is not None and spent < before - _TOLERANCE:
            self.excluded.setdefault(
                nid, f"ledger reset suspected: reported epsilon spent fell from {before:g} to {spent:g}")
        self.highest[nid] = max(spent, before if before is not None else spent)

    def review(self, replies: dict[str, BudgetReply]) -> dict[str, BudgetReply]:
        """Record ``replies`` and return them with any node whose spend fell marked unable to train."""
        out = {}
        for nid, reply in replies.items():
            if reply.epsilon_spent is not None:
                self._observe(nid, reply.epsilon_spent)
            if nid in self.excluded:
                reply = replace(reply, can_train=False, reason=self.excluded[nid])
            out[nid] = reply
        return out
