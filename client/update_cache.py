"""The client's last sent update, kept so a lost round is re-sent, never re-charged.

A round can be lost after a client has charged its ledger and sent its update: the
coordinator may crash before checkpointing, or the SecAgg+ round may fail for lack of
survivors. The coordinator then asks again for the *same* round with the *same* global
model (it resumes from its last checkpoint). Training again would charge the ledger a
second time for one round of the final model.

Instead the client stores its update on its own disk (atomically, before the update
leaves) under the key (plan id, round, SHA-256 of the global arrays it received). A request
with the same key gets the identical bytes back and no new charge. Why this is sound:
that update is a DP release already recorded in the ledger as if published in the clear
(every client adds its own DP noise), so re-sending the same value is post-processing and
costs nothing more. What it does weaken: if the set of participants differs between the
two attempts, a coordinator that kept both sums could difference them and see this client's
individual update; SecAgg+ hides it, DP still bounds it. docs/security.md says so.

Only the latest update is kept (the file is overwritten every round). A client that crashes
after charging a round but before storing its update has nothing to re-send: asked again, it
trains and is charged again (over-counting, never under-counting, its spend).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedsynth.common.atomic import atomic_write_bytes
from fedsynth.common.protocol.messages import FitMetrics

CACHE_FILE = "last_update.npz"


@dataclass(frozen=True)
class UpdateKey:
    plan_id: str
    round: int
    digest: str  # arrays_digest of the global model received

    def to_json(self) -> str:
        return json.dumps([self.plan_id, int(self.round), self.digest])


class UpdateCache:
    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / CACHE_FILE

    def store(self, key: UpdateKey, arrays: list[np.ndarray], metrics: FitMetrics) -> None:
        buf = io.BytesIO()
        np.savez(buf, key=np.array(key.to_json()), metrics=np.array(json.dumps(metrics.to_record())),
                 **{f"a{i}": a for i, a in enumerate(arrays)})
        atomic_write_bytes(self.path, buf.getvalue(), mode=0o600)

    def load(self, key: UpdateKey) -> tuple[list[np.ndarray], FitMetrics] | None:
        """The stored update if it was made for exactly ``key``; otherwise None."""
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as z:
                if str(z["key"]) != key.to_json():
                    return None
                n = sum(1 for k in z.files if k.startswith("a"))
                return [z[f"a{i}"] for i in range(n)], FitMetrics.from_record(json.loads(str(z["metrics"])))
        except (OSError, ValueError, KeyError):  # unreadable (a MessageError is a ValueError): train
            return None  # afresh, over-charging is safe

    def has(self, key: UpdateKey) -> bool:
        return self.load(key) is not None
