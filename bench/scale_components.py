"""bench/scale.py's Flower components: the simulation's, with every message's bytes counted.

The simulation runtime runs the ServerApp in its own process, so the counts are written to
``<out-dir>/bench_calls.json`` after every exchange (the bench reads them when the run ends).
"""

from __future__ import annotations

import json
from pathlib import Path

from flwr.common.serde import message_to_proto

from fedsynth.client.app import make_client_app
from fedsynth.simulations.components import server_app_for, simulated_institution

CALLS_FILE = "bench_calls.json"
COMPONENTS = {"serverapp": "scale_components:server_app", "clientapp": "scale_components:client_app"}
PLAIN_COMPONENTS = {"serverapp": "scale_components:plain_server_app", "clientapp": "scale_components:plain_client_app"}


class CountingGrid:
    """Delegates to Flower's Grid; records the serialised size of every message both ways."""

    def __init__(self, grid, context) -> None:
        self._grid = grid
        self._path = Path(str(context.run_config["out-dir"])) / CALLS_FILE
        self._calls: list[dict] = []

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def send_and_receive(self, messages, *args, **kwargs):
        messages = list(messages)
        stage = mtype = None
        out_bytes = 0
        for m in messages:
            out_bytes += message_to_proto(m).ByteSize()
            mtype = m.metadata.message_type
            cr = m.content.config_records.get("secaggplus_configs")
            if cr is not None and "stage" in cr:
                stage = str(cr["stage"])
        replies = list(self._grid.send_and_receive(messages, *args, **kwargs))
        in_sizes = [message_to_proto(r).ByteSize() for r in replies if r.has_content()]
        self._calls.append({"message_type": mtype, "stage": stage or ("fit (plain)" if mtype == "train" else mtype),
                            "messages": len(messages), "bytes_down": out_bytes, "replies": len(in_sizes),
                            "bytes_up": sum(in_sizes)})
        self._path.write_text(json.dumps(self._calls))
        return replies


server_app = server_app_for(wrap_grid=CountingGrid)
client_app = make_client_app(simulated_institution)
plain_server_app = server_app_for(insecure_plain_aggregation=True, wrap_grid=CountingGrid)
plain_client_app = make_client_app(simulated_institution, secure=False)
