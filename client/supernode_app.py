"""The ClientApp component a fedsynth SuperNode runs: ``fedsynth.client.supernode_app:app``.

It is the deployment ClientApp of :mod:`fedsynth.client.app` (settings from the SuperNode's
node config), bound at module level because ``flwr run`` validates app components
statically (it looks for an ``app = ...`` assignment in the module's source) and
``fedsynth.client.app`` builds its ``app`` lazily.
"""

from __future__ import annotations

import fedsynth.client.app as _client_app

app = _client_app.app
