"""An in-process Flower transport for protocol-level tests (not a mock of anything under test).

``LoopbackGrid`` implements Flower's ``Grid`` by handing each message straight to the real
``ClientApp`` of its destination node (with that node's own persistent ``Context``) and
returning the real reply. Server workflows, client mods and clients are Flower's and
fedsynth's actual code; only the network is replaced by a function call, so a test can
drop a node at an exact protocol stage, or tamper with what one node sends.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from typing import Any
from uuid import uuid4

import flwr.compat.common.recorddict_compat as compat
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.app.error import Error
from flwr.client import ClientApp, NumPyClient
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import ServerConfig
from flwr.server.compat.app_utils import start_update_client_manager_thread
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import FedAvg
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.serverapp.grid import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from fedsynth.common.protocol.secure_masks import SecureSecAggPlusWorkflow, secure_secaggplus_mod

# (node_id, incoming message) -> True to drop the message (the node "died" before replying)
DropRule = Callable[[int, Message], bool]
# (node_id, reply) -> reply to deliver instead (a hostile or broken peer), or None to lose it
TamperRule = Callable[[int, Message], "Message | None"]


class LoopbackGrid(Grid):
    def __init__(self, apps: dict[int, Any], node_configs: dict[int, dict[str, Any]] | None = None,
                 drop: DropRule | None = None, tamper: TamperRule | None = None) -> None:
        self.apps = apps
        self.contexts = {nid: Context(run_id=1, node_id=nid, node_config=dict((node_configs or {}).get(nid, {})),
                                      state=RecordDict(), run_config={}) for nid in apps}
        self.drop = drop or (lambda nid, msg: False)
        self.tamper = tamper or (lambda nid, msg: msg)
        self.dead: set[int] = set()
        self.sent: list[Message] = []  # every message the coordinator pushed, in order
        self._run = Run.create_empty(run_id=1)
        self._replies: dict[str, Message] = {}
        # Flower stamps the process's task identity on every message it builds
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 0

    def set_run(self, run) -> None:
        self._run = run

    @property
    def run(self):
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return [nid for nid in self.apps if nid not in self.dead]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            mid = str(uuid4())
            msg.metadata.__dict__["_message_id"] = mid
            msg.metadata.__dict__["_run_id"] = 1
            nid = msg.metadata.dst_node_id
            ids.append(mid)
            self.sent.append(msg)
            if nid in self.dead or self.drop(nid, msg):
                self.dead.add(nid)
                continue
            try:  # a private copy, as if it had crossed the network (mods edit content in place)
                reply = self.apps[nid](copy.deepcopy(msg), self.contexts[nid])
            except Exception as exc:  # the ClientApp crashed: the runtime answers with an error
                reply = Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=msg)
            reply = self.tamper(nid, reply)
            if reply is not None:  # None: the reply was lost (the node died after doing the work)
                self._replies[mid] = reply
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(m) for m in message_ids if m in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(list(messages)))


# ---------------------------------------------------------------------- one SecAgg+ round
STAGE_KEY, CONFIGS = "stage", "secaggplus_configs"


def stage_of(msg: Message) -> str:
    """The SecAgg+ stage a server message asks for ('setup', 'share_keys', ...)."""
    rec = msg.content.config_records.get(CONFIGS) if msg.content is not None else None
    return str(rec.get(STAGE_KEY, "")) if rec is not None else ""


def secagg_round(updates: dict[int, list], *, mod=None, workflow_cls=None, drop: DropRule | None = None,
                 tamper: TamperRule | None = None, threshold: float = 0.6, num_shares: float = 1.0,
                 clipping_range: float = 8.0,
                 modulus_range: int = 2**32, quantization_range: int = 2**22):
    """Run one real SecAgg+ round over ``updates`` (node id -> arrays, weight 1 each).

    Returns (the unmasked mean the strategy was handed or None, the grid). Client mod and
    server workflow default to fedsynth's (CSPRNG masks).
    """
    mod = mod or secure_secaggplus_mod
    workflow_cls = workflow_cls or SecureSecAggPlusWorkflow

    class Fixed(NumPyClient):
        def __init__(self, arrays):
            self.arrays = arrays

        def fit(self, parameters, config):
            return self.arrays, 1, {}

    class Capture(FedAvg):
        mean = None

        def aggregate_fit(self, rnd, results, failures):
            Capture.mean = parameters_to_ndarrays(results[0][1].parameters) if results else None
            return (results[0][1].parameters if results else None), {}

    def app_for(arrays):
        return ClientApp(client_fn=lambda ctx: Fixed(arrays).to_client(), mods=[mod])

    n = len(updates)
    grid = LoopbackGrid({nid: app_for(a) for nid, a in updates.items()}, drop=drop, tamper=tamper)
    ctx = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    legacy = LegacyContext(ctx, config=ServerConfig(num_rounds=1),
                           strategy=Capture(min_fit_clients=n, min_available_clients=n))
    thread, stop, done = start_update_client_manager_thread(grid, legacy.client_manager)
    try:
        done.wait()
        legacy.client_manager.wait_for(n, timeout=10)
        zeros = [0 * a for a in next(iter(updates.values()))]
        ctx.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
            ndarrays_to_parameters(zeros), keep_input=True)
        cfg = ConfigRecord()
        cfg[Key.START_TIME], cfg[Key.CURRENT_ROUND] = time.time(), 1
        ctx.state.config_records[MAIN_CONFIGS_RECORD] = cfg
        workflow_cls(num_shares=num_shares, reconstruction_threshold=threshold, max_weight=1.0,
                     clipping_range=clipping_range, quantization_range=quantization_range,
                     modulus_range=modulus_range)(grid, legacy)
    finally:
        stop.set()
        thread.join()
    return Capture.mean, grid
