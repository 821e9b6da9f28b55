"""The deployment ServerApp's Grid: no reply is awaited from a node that went offline.

Flower's Grid waits for every reply until the stage's timeout (for ever by default), and the
SuperLink only answers for a silent node while that node is *offline*. A SuperNode that dies
mid-stage breaks that in two ways seen in deployment tests: it dies while pushing its reply
(the reply exists but never completes, so the SuperLink does not answer for it), or the
institution's next SuperNode is back under the same node id before the ServerApp polls again
(the node never looks offline, and the new SuperNode never receives the message the dead one
took). Either way the round would hang. So every poll here also lists the online nodes, and a
node seen offline since the messages went out is no longer waited for: SecAgg+ counts it as
a dropout, as after a timeout. ``fedsynth client`` signs off a SuperNode it lost and waits
longer than two of Flower's polls before reconnecting (client/node.py), so the gap is always seen.

It also polls more often than Flower's Grid, which sleeps 3 s between pulls: a SecAgg+ round is
four stages, and each stage's replies waited up to 3 s before the next stage went out. A poll
is two requests to the SuperLink on the coordinator's own machine (the replies, the online nodes).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message, RecordDict
from flwr.serverapp.grid import Grid
from flwr.supercore.run import Run

POLL_S = 0.5  # between pulls for replies (Flower's own Grid: 3 s)


class DropoutAwareGrid(Grid):
    """Delegates to ``grid``; only :meth:`send_and_receive` differs (see the module docstring)."""

    def __init__(self, grid: Grid, poll_s: float = POLL_S) -> None:
        self._grid, self._poll_s = grid, poll_s

    def set_run(self, run: Run) -> None:
        self._grid.set_run(run)

    @property
    def run(self) -> Run:
        return self._grid.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self._grid.get_node_ids()

    def get_nodes(self):
        return self._grid.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        pending = set(self.push_messages(messages))
        destination = {m.metadata.message_id: m.metadata.dst_node_id for m in messages}
        end = None if timeout is None else time.time() + timeout
        replies: list[Message] = []
        while pending:
            got = list(self.pull_messages(pending))
            replies += got
            pending -= {m.metadata.reply_to_message_id for m in got}
            if not pending or (end is not None and time.time() >= end):
                break
            online = set(self.get_node_ids())
            pending = {mid for mid in pending if destination.get(mid) in online}
            if pending:
                time.sleep(self._poll_s)
        return replies
