"""Shared helpers for the Cellcast tests: the sandbox on loopback (state swapped per test), a
canned responder for bodies the sandbox never sends, a webhook receiver, clients and gateways."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx2
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from castbridge.gateways.cellcast import (
    CellcastAccountSettings,
    CellcastClient,
    CellcastGateway,
    CellcastPacing,
    RetryPolicy,
    request_limit,
)
from castbridge.limits import BlockingPacer, LocalPacer, Pacer
from castbridge.sandbox.cellcast import (
    DEFAULT_API_KEY,
    CellcastSandbox,
    CellcastSandboxConfig,
    create_cellcast_sandbox,
)
from castbridge.sandbox.server import serve_app

FAST_RETRY = RetryPolicy(
    attempts=3,
    max_total_seconds=10.0,
    backoff_initial=0.01,
    backoff_max=0.05,
    backoff_jitter=0.01,
    default_retry_after=0.1,
)
NO_RETRY = RetryPolicy()
AU = "+61412345678"


class ManualClock:
    """A sandbox clock that moves only when told (ties at one timestamp, exact timelines)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = (
            start if start is not None else datetime(2026, 3, 2, 1, 0, tzinfo=UTC).timestamp()
        )

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_config(**overrides: Any) -> CellcastSandboxConfig:
    """The default sandbox with its per-key limit out of the way and quick pushes."""
    base = CellcastSandboxConfig().model_dump()
    for account in base["accounts"]:
        account["rate_limit"] = 10_000.0
    base.update({"push_retry_delay": 0.05, "seed": 7})
    base.update(overrides)
    return CellcastSandboxConfig.model_validate(base)


def paced(rate: float, *, pacer: Pacer | None = None) -> CellcastPacing:
    return CellcastPacing(
        pacer=pacer or BlockingPacer(LocalPacer()), bucket="acct:test", limit=request_limit(rate)
    )


@dataclass
class CellcastEnv:
    url: str
    sandbox: CellcastSandbox
    http: httpx2.AsyncClient

    def client(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        retry: RetryPolicy = NO_RETRY,
        pacing: CellcastPacing | None = None,
        http: httpx2.AsyncClient | None = None,
    ) -> CellcastClient:
        return CellcastClient(
            http or self.http, api_key=api_key, base_url=self.url, pacing=pacing, retry=retry
        )

    def gateway(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        sender_id: str | None = None,
        settings: CellcastAccountSettings | None = None,
        clock: Any = None,
        **kwargs: Any,
    ) -> CellcastGateway:
        extra = {"clock": clock} if clock is not None else {}
        return CellcastGateway(
            self.client(api_key, **kwargs), sender_id=sender_id, settings=settings, **extra
        )


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
class Received:
    """Webhook bodies castbridge's route would have received."""

    bodies: list[tuple[str, bytes]] = field(default_factory=list)
    status: int = 200

    def json(self, path: str | None = None) -> list[Any]:
        return [json.loads(body) for p, body in self.bodies if path is None or p == path]


@dataclass
class SharedServer:
    url: str
    canned_url: str
    hooks_url: str
    http: httpx2.AsyncClient
    app: FastAPI
    switch: _Switch
    received: Received

    def sandbox(
        self, config: CellcastSandboxConfig | None = None, *, clock: Any = None
    ) -> CellcastEnv:
        """Install a fresh sandbox state for this test."""
        state = CellcastSandbox(config if config is not None else make_config(), clock)
        self.app.state.sandbox = state
        self.received.bodies.clear()
        self.received.status = 200
        return CellcastEnv(self.url, state, self.http)

    def canned(
        self,
        status: int,
        body: bytes | Mapping[str, Any] | list[Any] | str,
        headers: Mapping[str, str] | None = None,
        *,
        retry: RetryPolicy = NO_RETRY,
    ) -> CellcastClient:
        """Answer every request alike (bodies the sandbox never produces)."""
        self.switch.app = canned_app(status, body, headers)
        return CellcastClient(
            self.http, api_key=DEFAULT_API_KEY, base_url=self.canned_url, retry=retry
        )


def _hooks_app(received: Received) -> FastAPI:
    app = FastAPI()

    @app.post("/{path:path}")
    async def hook(path: str, request: Request) -> Response:
        received.bodies.append(("/" + path, await request.body()))
        return Response(status_code=received.status)

    return app


@contextlib.asynccontextmanager
async def shared_server() -> AsyncIterator[SharedServer]:
    switch = _Switch()
    received = Received()
    app = create_cellcast_sandbox(make_config())
    async with (
        serve_app(app) as url,
        serve_app(switch) as canned_url,
        serve_app(_hooks_app(received)) as hooks_url,
        httpx2.AsyncClient(timeout=5.0) as http,
    ):
        yield SharedServer(url, canned_url, hooks_url, http, app, switch, received)


def canned_app(
    status: int,
    body: bytes | Mapping[str, Any] | list[Any] | str,
    headers: Mapping[str, str] | None = None,
) -> FastAPI:
    app = FastAPI()
    if isinstance(body, Mapping | list):
        content, media = json.dumps(body).encode(), "application/json"
    elif isinstance(body, str):
        content, media = body.encode(), "text/html"
    else:
        content, media = body, "application/octet-stream"

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def answer(path: str, request: Request) -> Response:
        return Response(content, status_code=status, headers=dict(headers or {}), media_type=media)

    return app
