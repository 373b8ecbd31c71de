"""Shared helpers for the UGSMS tests: one loopback server per test module whose app is swapped
per test (a fresh sandbox, or a canned responder), clients and gateways against it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from castbridge.gateways.base import SendRequest
from castbridge.gateways.ugsms import (
    RetryPolicy,
    UgsmsClient,
    UgsmsGateway,
    UgsmsPacing,
    request_limit,
)
from castbridge.limits import BlockingPacer, LocalPacer, Pacer
from castbridge.sandbox.server import serve_app
from castbridge.sandbox.ugsms import (
    DEFAULT_API_KEY,
    DEFAULT_SENDER_ID,
    UgsmsSandbox,
    UgsmsSandboxConfig,
    create_ugsms_sandbox,
)

UG = "+256702913454"
UG_LOCAL = "0702913454"
# Fast in-process retries so tests never wait on backoff (429 waits are set per test).
FAST_RETRY = RetryPolicy(
    attempts=3,
    max_total_seconds=10.0,
    backoff_initial=0.01,
    backoff_max=0.05,
    backoff_jitter=0.01,
    default_retry_after=0.1,
)
NO_RETRY = RetryPolicy.none()


def paced(per_minute: float = 60.0, *, pacer: Pacer | None = None) -> UgsmsPacing:
    """UGSMS's per-key pacing, waiting like the CLI unless another pacer is given."""
    return UgsmsPacing(
        pacer=pacer or BlockingPacer(LocalPacer()),
        bucket="acct:test",
        limit=request_limit(per_minute),
    )


def request(
    reference: str = "loc:msg-1", to: str = UG, text: str = "Hello", **kw: Any
) -> SendRequest:
    return SendRequest(to_e164=to, text=text, reference=reference, **kw)


class _Switch:
    """An ASGI app that forwards to whichever app the current test installed."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert self.app is not None, "no app installed for this test"
        await self.app(scope, receive, send)


@dataclass
class UgsmsEnv:
    url: str  # the server root; the v2 base is url + "/api/v2"
    sandbox: UgsmsSandbox
    http: httpx2.AsyncClient

    @property
    def api(self) -> str:
        return self.url + "/api/v2"

    def client(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        retry: RetryPolicy = NO_RETRY,
        pacing: UgsmsPacing | None = None,
        http: httpx2.AsyncClient | None = None,
    ) -> UgsmsClient:
        return UgsmsClient(
            http or self.http, api_key=api_key, base_url=self.api, pacing=pacing, retry=retry
        )

    def gateway(
        self, api_key: str = DEFAULT_API_KEY, *, bulk: bool = False, max_parts: int = 3, **kw: Any
    ) -> UgsmsGateway:
        return UgsmsGateway(
            self.client(api_key, **kw), sender_id=DEFAULT_SENDER_ID, bulk=bulk, max_parts=max_parts
        )


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Canned:
    """A responder answering every request alike, recording what it was sent."""

    client: UgsmsClient
    requests: list[Recorded] = field(default_factory=list)


@dataclass
class SharedServer:
    url: str
    http: httpx2.AsyncClient
    switch: _Switch
    sandbox_app: FastAPI

    def sandbox(self, config: UgsmsSandboxConfig | None = None) -> UgsmsEnv:
        """Install a fresh sandbox state for this test."""
        state = UgsmsSandbox(config if config is not None else UgsmsSandboxConfig(seed=7))
        self.sandbox_app.state.sandbox = state
        self.switch.app = self.sandbox_app
        return UgsmsEnv(self.url, state, self.http)

    def canned(
        self,
        status: int,
        body: bytes | Mapping[str, Any] | str,
        headers: Mapping[str, str] | None = None,
        *,
        retry: RetryPolicy = NO_RETRY,
        pacing: UgsmsPacing | None = None,
    ) -> Canned:
        """Install a responder for bodies the sandbox never produces (HTML error pages,
        `success:false` under 200, odd shapes)."""
        recorded: list[Recorded] = []
        self.switch.app = canned_app(status, body, headers, recorded)
        client = UgsmsClient(
            self.http,
            api_key=DEFAULT_API_KEY,
            base_url=self.url + "/api/v2",
            retry=retry,
            pacing=pacing,
        )
        return Canned(client, recorded)


@contextlib.asynccontextmanager
async def shared_server() -> AsyncIterator[SharedServer]:
    switch = _Switch()
    async with serve_app(switch) as url, httpx2.AsyncClient(timeout=5.0) as http:
        yield SharedServer(url, http, switch, create_ugsms_sandbox())


def canned_app(
    status: int,
    body: bytes | Mapping[str, Any] | str,
    headers: Mapping[str, str] | None = None,
    recorded: list[Recorded] | None = None,
) -> FastAPI:
    app = FastAPI()
    if isinstance(body, Mapping):
        content, media = json.dumps(body).encode(), "application/json"
    elif isinstance(body, str):
        content, media = body.encode(), "text/html"
    else:
        content, media = body, "application/octet-stream"

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def answer(path: str, request: Request) -> Response:
        if recorded is not None:
            recorded.append(
                Recorded(
                    request.method,
                    request.url.path,
                    request.url.query,
                    dict(request.headers),
                    await request.body(),
                )
            )
        return Response(content, status_code=status, headers=dict(headers or {}), media_type=media)

    return app
