"""Shared helpers for the Cast tests: one loopback server per test module whose app is swapped
per test (a fresh sandbox, or a canned responder), clients against it, sandbox configs."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from castbridge.gateways.cast import (
    CastClient,
    CastGateway,
    CastPacing,
    RetryPolicy,
    ip_limit,
    send_limit,
)
from castbridge.limits import BlockingPacer, LocalPacer, Pacer
from castbridge.sandbox.cast import (
    DEFAULT_API_KEY,
    DEFAULT_SENDER_ID,
    CastSandbox,
    CastSandboxConfig,
    SandboxAccount,
    SenderIdSpec,
    create_cast_sandbox,
)
from castbridge.sandbox.server import serve_app

# Fast in-process retries so tests never wait on backoff (429 waits are set by the sandbox).
FAST_RETRY = RetryPolicy(
    attempts=3,
    max_total_seconds=10.0,
    backoff_initial=0.01,
    backoff_max=0.05,
    backoff_jitter=0.01,
    default_retry_after=0.1,
)
NO_RETRY = RetryPolicy.none()
SIM_SENDER = "CASTSIM"


def paced(rate: float, *, pacer: Pacer | None = None) -> CastPacing:
    """Cast's per-account pacing at `rate` messages/s, waiting like the CLI (the IP limit is
    out of the way)."""
    return CastPacing(
        pacer=pacer or BlockingPacer(LocalPacer()),
        account_bucket="acct:test",
        send_limit=send_limit(rate),
        ip_bucket="ip:test",
        ip_limit=ip_limit(10_000.0),
    )


def make_config(**overrides: Any) -> CastSandboxConfig:
    """The default sandbox with SIM enabled on the main account and limits out of the way."""
    account = SandboxAccount(
        api_key=DEFAULT_API_KEY,
        credits=1000,
        allowed_channels=["sms", "otp", "bulk", "sim"],
        sender_ids=[
            SenderIdSpec(sender_id=DEFAULT_SENDER_ID, label="Default"),
            SenderIdSpec(sender_id=SIM_SENDER, label="SIM", channel="sim"),
        ],
        rate_limit=1000.0,
    )
    base = CastSandboxConfig().model_dump()
    base["accounts"] = [account.model_dump(), *base["accounts"][1:]]
    base.update({"ip_rate": 1000.0, "ip_burst": 1000.0})
    base.update(overrides)
    return CastSandboxConfig.model_validate(base)


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
class CastEnv:
    url: str
    sandbox: CastSandbox
    http: httpx2.AsyncClient

    def client(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        retry: RetryPolicy = FAST_RETRY,
        pacing: CastPacing | None = None,
        http: httpx2.AsyncClient | None = None,
    ) -> CastClient:
        return CastClient(
            http or self.http, api_key=api_key, base_url=self.url, pacing=pacing, retry=retry
        )

    def gateway(self, api_key: str = DEFAULT_API_KEY, **kwargs: Any) -> CastGateway:
        return CastGateway(self.client(api_key, **kwargs), sender_id=DEFAULT_SENDER_ID)


@dataclass
class SharedServer:
    url: str
    http: httpx2.AsyncClient
    switch: _Switch
    sandbox_app: FastAPI

    def sandbox(self, config: CastSandboxConfig | None = None) -> CastEnv:
        """Install a fresh sandbox state for this test."""
        state = CastSandbox(config if config is not None else make_config())
        self.sandbox_app.state.sandbox = state
        self.switch.app = self.sandbox_app
        return CastEnv(self.url, state, self.http)

    def canned(
        self,
        status: int,
        body: bytes | Mapping[str, Any] | str,
        headers: Mapping[str, str] | None = None,
        *,
        retry: RetryPolicy = NO_RETRY,
    ) -> CastClient:
        """Install a responder that answers every request alike (for bodies the sandbox never
        produces: Rev A-only sentences, HTML error pages, unknown statuses)."""
        self.switch.app = canned_app(status, body, headers)
        return CastClient(self.http, api_key=DEFAULT_API_KEY, base_url=self.url, retry=retry)


@contextlib.asynccontextmanager
async def shared_server() -> AsyncIterator[SharedServer]:
    switch = _Switch()
    async with serve_app(switch) as url, httpx2.AsyncClient(timeout=5.0) as http:
        yield SharedServer(url, http, switch, create_cast_sandbox())


def canned_app(
    status: int,
    body: bytes | Mapping[str, Any] | str,
    headers: Mapping[str, str] | None = None,
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
        return Response(content, status_code=status, headers=dict(headers or {}), media_type=media)

    return app
