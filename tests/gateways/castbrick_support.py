"""Shared helpers for the CastBrick tests: one loopback server per test module whose app is
swapped per test (a fresh sandbox, or a canned responder), a webhook receiver, clients and
gateways against them, sandbox configs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx2
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from castbridge.gateways.castbrick import (
    CastBrickClient,
    CastBrickGateway,
    CastBrickPacing,
    RetryPolicy,
    account_limit,
)
from castbridge.gateways.castbrick.settings import BasePath
from castbridge.limits import BlockingPacer, LocalPacer, Pacer
from castbridge.sandbox.castbrick import (
    DEFAULT_API_KEY,
    DEFAULT_SENDER_ID,
    CastBrickSandbox,
    CastBrickSandboxConfig,
    SandboxAccount,
    create_castbrick_sandbox,
)
from castbridge.sandbox.kit import SandboxClock
from castbridge.sandbox.server import serve_app

AO = "+244923000000"
AO_OTHER = "+244912000000"
SMS_ONLY_KEY = "cb_live_" + "50000000" * 4
UNKNOWN_KEY = "cb_live_" + "0" * 32
# Fast in-process retries so tests never wait on backoff (429 waits are set by the sandbox).
FAST_RETRY = RetryPolicy(
    attempts=3,
    max_total_seconds=10.0,
    backoff_initial=0.01,
    backoff_max=0.05,
    backoff_jitter=0.01,
    default_retry_after=0.1,
)
NO_RETRY = RetryPolicy()


def paced(rate: float, *, pacer: Pacer | None = None) -> CastBrickPacing:
    """The per-key bucket at `rate` requests/s, waiting like the CLI by default."""
    return CastBrickPacing(
        pacer=pacer or BlockingPacer(LocalPacer()), bucket="acct:test", limit=account_limit(rate)
    )


def make_config(**overrides: Any) -> CastBrickSandboxConfig:
    """The default sandbox with the per-key limit out of the way, an `Sms`-scoped key, and
    a fixed clock start (statuses move only when a test advances the clock)."""
    base = CastBrickSandboxConfig().model_dump()
    accounts = [SandboxAccount(api_key=DEFAULT_API_KEY, rate_limit=1000.0).model_dump()]
    accounts.append(
        SandboxAccount(api_key=SMS_ONLY_KEY, scopes=["Sms"], rate_limit=1000.0).model_dump()
    )
    base["accounts"] = accounts
    base.update(overrides)
    return CastBrickSandboxConfig.model_validate(base)


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
class Receiver:
    """castbridge's side of CastBrick's webhooks: records every body; `fail_first` answers
    500 that many times first (CastBrick retries)."""

    url: str
    bodies: list[bytes] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    fail_first: int = 0

    def reset(self) -> None:
        self.bodies.clear()
        self.answers.clear()
        self.fail_first = 0

    def json(self) -> list[Any]:
        return [json.loads(body) for body in self.bodies]

    async def wait_for(self, count: int, within: float = 5.0) -> list[bytes]:
        """The first `count` bodies received, waiting for them at most `within` seconds."""
        for _ in range(int(within / 0.01)):
            if len(self.bodies) >= count:
                return self.bodies[:count]
            await asyncio.sleep(0.01)
        raise AssertionError(f"expected {count} webhook(s), got {len(self.bodies)}")


def _receiver_app(receiver: Receiver) -> FastAPI:
    app = FastAPI()

    @app.post("/hooks/{token}")
    async def hook(token: str, request: Request) -> Response:
        receiver.bodies.append(await request.body())
        status = 500 if receiver.fail_first > 0 else 200
        receiver.fail_first = max(0, receiver.fail_first - 1)
        receiver.answers.append(status)
        return Response(status_code=status)

    return app


@dataclass
class CastBrickEnv:
    url: str
    sandbox: CastBrickSandbox
    http: httpx2.AsyncClient
    receiver: Receiver

    @property
    def hook_url(self) -> str:
        return self.receiver.url + "/hooks/secret-token"

    @property
    def clock(self) -> SandboxClock:
        clock = self.sandbox.clock
        assert isinstance(clock, SandboxClock)
        return clock

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.sandbox.clock(), UTC)

    def client(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        base_path: BasePath | None = None,
        retry: RetryPolicy = NO_RETRY,
        pacing: CastBrickPacing | None = None,
        http: httpx2.AsyncClient | None = None,
        api_url: str | None = None,
        timeout_seconds: float | None = None,
    ) -> CastBrickClient:
        return CastBrickClient(
            http or self.http,
            api_key=api_key,
            api_url=api_url or self.url,
            base_path=base_path,
            pacing=pacing,
            retry=retry,
            timeout_seconds=timeout_seconds,
        )

    def gateway(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        now: Callable[[], datetime] | None = None,
        fallback: bool = False,
        max_parts: int = 1,
        allow_international: bool = False,
        **client_kwargs: Any,
    ) -> CastBrickGateway:
        return CastBrickGateway(
            self.client(api_key, **client_kwargs),
            sender_id=DEFAULT_SENDER_ID,
            fallback=fallback,
            max_parts=max_parts,
            allow_international=allow_international,
            now=now or self.now,
        )


@dataclass
class SharedServer:
    url: str
    http: httpx2.AsyncClient
    switch: _Switch
    sandbox_app: FastAPI
    receiver: Receiver
    states: list[CastBrickSandbox] = field(default_factory=list)

    def sandbox(self, config: CastBrickSandboxConfig | None = None) -> CastBrickEnv:
        """Install a fresh sandbox state for this test (its clock starts now)."""
        state = CastBrickSandbox(config if config is not None else make_config())
        self.states.append(state)
        self.sandbox_app.state.sandbox = state
        self.switch.app = self.sandbox_app
        self.receiver.reset()
        return CastBrickEnv(self.url, state, self.http, self.receiver)

    def canned(
        self,
        status: int,
        body: bytes | Mapping[str, Any] | list[Any] | str,
        headers: Mapping[str, str] | None = None,
        *,
        base_path: BasePath | None = "",
    ) -> CastBrickClient:
        """Install a responder that answers every request alike (for bodies the sandbox never
        produces), and a client on `base_path` (None: the client probes)."""
        self.switch.app = canned_app(status, body, headers)
        return CastBrickClient(
            self.http,
            api_key=DEFAULT_API_KEY,
            api_url=self.url,
            base_path=base_path,
            retry=NO_RETRY,
        )

    def canned_gateway(
        self,
        status: int,
        body: bytes | Mapping[str, Any] | list[Any] | str,
        *,
        now: Callable[[], datetime] | None = None,
    ) -> CastBrickGateway:
        return CastBrickGateway(
            self.canned(status, body), sender_id=DEFAULT_SENDER_ID, now=now or _utcnow
        )


def _utcnow() -> datetime:
    return datetime.now(UTC)


@contextlib.asynccontextmanager
async def shared_server() -> AsyncIterator[SharedServer]:
    switch = _Switch()
    receiver = Receiver("")
    async with (
        serve_app(switch) as url,
        serve_app(_receiver_app(receiver)) as hook_url,
        httpx2.AsyncClient(timeout=5.0) as http,
    ):
        receiver.url = hook_url
        shared = SharedServer(url, http, switch, create_castbrick_sandbox(), receiver)
        try:
            yield shared
        finally:
            for state in [shared.sandbox_app.state.sandbox, *shared.states]:
                await state.pusher.close()


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

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def answer(path: str, request: Request) -> Response:
        return Response(content, status_code=status, headers=dict(headers or {}), media_type=media)

    return app
