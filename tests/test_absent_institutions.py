"""An institution that disappears mid-run (a crash, a restarted `fedsynth client`).

The coordinator waits, up to its wait timeout, for enough institutions to be back instead
of ending the run at once; a run that fails anyway says what each institution reported as
spent. Real FederatedRun, ClientApps, ledgers and SecAgg+ over the in-process transport of
tests/_loopback.py (see tests/test_federated_faults.py); tests/test_deployment_faults.py
kills real processes.
"""

from __future__ import annotations

import threading
import time

import pytest
from _loopback import LoopbackGrid
from flwr.app import Message, RecordDict
from test_federated_faults import (
    assert_consistent,
    federation,
    rounds_charged,
    stage_of_reply,
)

from fedsynth.client.ledger import Ledger
from fedsynth.server.checkpoint import Checkpoint
from fedsynth.server.events import describe_event
from fedsynth.server.dropout_grid import DropoutAwareGrid


@pytest.fixture()
def fed(tmp_path, adult, adult_paths, adult_schema):
    return lambda **kw: federation(tmp_path, adult, adult_paths[1], adult_schema, **kw)


def killed_after_training(node: int, back_after: float | None):
    """A tamper rule: ``node`` dies once its round-1 masked vector is made (it has been charged
    and trained); it reconnects ``back_after`` seconds later (None: never)."""
    state: dict = {}

    def rule(nid, reply):
        if nid == node and stage_of_reply(reply) == "masked" and "dead" not in state:
            state["dead"] = True
            grid = state["grid"]
            grid.dead.add(node)
            if back_after is not None:
                threading.Timer(back_after, grid.dead.discard, args=(node,)).start()
            return None
        return reply

    return rule, state


def test_a_contributor_that_disappears_mid_round_is_waited_for(fed, tmp_path):
    rule, state = killed_after_training(12, back_after=3.0)
    go, states, events, grid, _ = fed(nodes=(11, 12), tamper=rule)
    state["grid"] = grid
    go()
    kinds = [e["event"] for e in events]
    assert "stopped" not in kinds and "failed" not in kinds
    assert [e["round"] for e in events if e["event"] == "round_failed"] == [1]
    waiting = [e for e in events if e["event"] == "waiting"]
    assert waiting and waiting[0]["round"] == 1 and waiting[0]["answered"] == 1 and waiting[0]["expected"] == 2
    assert [(e["round"], e["contributors"]) for e in events if e["event"] == "round_done"] == [(1, 2), (2, 2)]
    assert Checkpoint.load(tmp_path / "out").round == 2
    for s in states.values():
        assert rounds_charged(s) == [1, 2]  # the retried round 1 re-sent the stored updates: no new charge
        assert_consistent(s)


def test_a_run_that_fails_says_what_each_institution_spent(fed, tmp_path):
    rule, state = killed_after_training(12, back_after=None)
    go, states, events, grid, _ = fed(nodes=(11, 12), tamper=rule)  # waits 10 s for node 12, in vain
    state["grid"] = grid
    with pytest.raises(RuntimeError, match="no round completed"):
        go()
    failed = events[-1]
    assert failed["event"] == "failed"
    spent_11 = round(Ledger.open(states[11], 1.0, 1e-5).epsilon_spent, 2)
    assert spent_11 > 0  # it paid for round 1 although no model came of it
    # node 12 last answered before it trained: its report is older than its charge
    assert failed["spent"] == {"11": spent_11, "12": 0.0}
    line = describe_event(failed, "", {"11": "hospital-a"})
    assert f"node 11 (hospital-a): {spent_11}" in line and "node 12: 0.0" in line


def test_a_reply_is_not_awaited_from_a_node_that_went_offline():
    """Node 12 takes the message and dies without answering; a moment later it is offline, then
    back under the same node id (a new SuperNode, which never got the message). The deployment
    Grid stops waiting for it once it has been seen offline; Flower's would wait for ever."""
    def answer(msg, ctx):  # a ClientApp that replies at once
        return Message(RecordDict(), reply_to=msg)

    grid = LoopbackGrid({11: answer, 12: answer}, tamper=lambda nid, reply: None if nid == 12 else reply)

    def die_and_come_back() -> None:
        time.sleep(0.5)
        grid.dead.add(12)
        time.sleep(1.5)
        grid.dead.discard(12)

    node = threading.Thread(target=die_and_come_back, daemon=True)
    node.start()
    patient = DropoutAwareGrid(grid, poll_s=0.2)
    result: list = []
    waiter = threading.Thread(target=lambda: result.append(list(patient.send_and_receive(
        [grid.create_message(RecordDict(), "query", nid, "g") for nid in (11, 12)], timeout=None))), daemon=True)
    waiter.start()
    waiter.join(timeout=10)
    assert result, "still waiting for the reply of a node that went offline"
    assert [m.metadata.src_node_id for m in result[0]] == [11]
    node.join()
    assert 12 in list(grid.get_node_ids())  # the node is back: a new SuperNode, which owes nothing
