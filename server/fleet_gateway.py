"""The institutions' port: a TLS gateway that forwards Flower's Fleet API and nothing else.

Flower 1.41's open-source SuperLink serves the Fleet API (SuperNodes), the Control API
(submit runs, register keys) and its runtime API on one HTTP port, and the Control API has
no account authentication there: whoever reaches the port could submit an app for every
SuperNode to run. So ``fedsynth coordinator`` binds the SuperLink to loopback on an
internal port, and this gateway listens on the coordinator's public address, with the same
TLS certificate, and forwards only ``POST /v1/fleet/...`` to it, headers (SuperNode
signatures) and bodies unchanged. Every other request is answered 403 and logged with the
peer's address and what it asked for.

It runs inside the coordinator's own process (a uvicorn server on a thread), so it lives
and dies with the coordinator and needs no supervision of its own. Written here rather than
taken from a proxy package because it is one rule on one path prefix, and a general-purpose
reverse proxy would be one more program to configure and keep patched.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from fedsynth.common.errors import FedsynthError
from fedsynth.common.deploy.addresses import port_holder

FLEET_PREFIX = "/v1/fleet/"
# Headers that describe one hop, not the message (RFC 9110 7.6.1), plus those httpx and
# uvicorn recompute for the forwarded body.
_HOP_HEADERS = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                          "trailer", "transfer-encoding", "upgrade", "host", "content-length",
                          "content-encoding"})
REFUSAL = "fedsynth: this port serves only the Fleet API (SuperNodes); the Control API is not exposed\n"


@dataclass(frozen=True)
class GatewayTLS:
    ca: Path  # verifies the SuperLink behind the gateway
    cert: Path  # served to institutions: the coordinator's certificate
    key: Path


def is_fleet_request(method: str, path: str) -> bool:
    """The one rule: SuperNodes only ever POST to the Fleet API."""
    return method == "POST" and path.startswith(FLEET_PREFIX) and ".." not in path


class FleetGateway:
    """Listen on ``host:port``; forward Fleet API calls to the SuperLink at ``upstream``."""

    def __init__(self, host: str, port: int, upstream_port: int, tls: GatewayTLS | None,
                 log: Callable[[str], None]) -> None:
        self.host, self.port, self.log = host, port, log
        scheme = "http" if tls is None else "https"
        self.upstream = f"{scheme}://127.0.0.1:{upstream_port}"
        self.tls = tls
        self.refused: list[str] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None

    def _upstream_client(self) -> httpx.AsyncClient:
        verify: ssl.SSLContext | bool = False
        if self.tls is not None:
            # The chain must lead to the federation's CA; the name is not checked because
            # the SuperLink is reached on loopback, whatever names its certificate carries.
            verify = ssl.create_default_context(cafile=str(self.tls.ca))
            verify.check_hostname = False
        return httpx.AsyncClient(verify=verify, timeout=httpx.Timeout(300.0, connect=10.0))

    async def __call__(self, scope, receive, send) -> None:  # ASGI entry point
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        request = Request(scope, receive)
        response = await self._handle(request)
        await response(scope, receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._client = self._upstream_client()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        if not is_fleet_request(request.method, path):
            peer = f"{request.client.host}:{request.client.port}" if request.client else "unknown peer"
            line = f"gateway refused {request.method} {path} from {peer}: only the Fleet API is served on this port"
            self.refused.append(line)
            self.log(line)
            return PlainTextResponse(REFUSAL, status_code=403)
        assert self._client is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        try:
            upstream = await self._client.post(self.upstream + path, content=await request.body(),
                                               headers=headers, params=request.query_params)
        except httpx.HTTPError as exc:
            return PlainTextResponse(f"fedsynth gateway: the SuperLink is not reachable ({type(exc).__name__})\n",
                                     status_code=502)
        back = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
        return Response(upstream.content, status_code=upstream.status_code, headers=back)

    # -- lifecycle -----------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        """Serve on a thread; raise if the port cannot be bound (e.g. already in use)."""
        kwargs = {} if self.tls is None else {"ssl_certfile": str(self.tls.cert), "ssl_keyfile": str(self.tls.key)}
        config = uvicorn.Config(self, host=self.host, port=self.port, log_level="warning", access_log=False,
                                lifespan="on", **kwargs)
        self._server = uvicorn.Server(config)
        failure: list[BaseException] = []

        def serve() -> None:
            try:
                self._server.run()
            except BaseException as exc:  # uvicorn exits (SystemExit) when it cannot bind
                failure.append(exc)

        self._thread = threading.Thread(target=serve, name="fleet-gateway", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                if (holder := port_holder(self.port)) is not None:
                    raise FedsynthError(f"could not listen on {self.host}:{self.port} for institutions: port in "
                                        f"use by another process ({holder})")
                raise FedsynthError(f"could not listen on {self.host}:{self.port} for institutions "
                                    f"(port in use, or the address is not on this machine)")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=10)
        self._server = self._thread = None
