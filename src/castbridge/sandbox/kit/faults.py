"""Fault injection shared by the gateway sandboxes: latency, errors, timeouts, cut and garbled
answers, before or after the request was processed ("billed")."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Faults(BaseModel):
    """Injected trouble, settable at runtime (`sandbox.faults.x = ...`) or through
    `POST /_sandbox/faults`. `*_next` counters are deterministic; `*_rate` are probabilities.

    - errors (`fail_next`, `error_rate` drawing from `error_statuses`) are answered before the
      request is processed: nothing is sent or billed.
    - `cut_before_*` closes the connection halfway through an answer without processing the
      request: to the client it looks exactly like a cut after processing.
    - timeouts (`timeout_next`, `timeout_rate`) process the request (the send is committed and
      billed), then hold the answer for `timeout_seconds` or until the client hangs up.
    - drops (`drop_next`, `drop_rate`) process, then close the connection halfway through.
    - garbles (`garble_next`, `garble_rate`) process, then answer 200 with a body that is not
      JSON: the "unreadable 2xx" after a send the gateway took.
    """

    model_config = ConfigDict(validate_assignment=True)

    targets: Literal["sends", "all"] = "sends"
    latency_seconds: float = Field(0.0, ge=0)
    error_rate: float = Field(0.0, ge=0, le=1)
    error_statuses: list[int] = Field(default_factory=lambda: [429, 500, 502, 503])
    fail_next: list[int] = Field(default_factory=list)
    timeout_rate: float = Field(0.0, ge=0, le=1)
    timeout_next: int = Field(0, ge=0)
    timeout_seconds: float = Field(30.0, ge=0)
    drop_rate: float = Field(0.0, ge=0, le=1)
    drop_next: int = Field(0, ge=0)
    cut_before_rate: float = Field(0.0, ge=0, le=1)
    cut_before_next: int = Field(0, ge=0)
    garble_rate: float = Field(0.0, ge=0, le=1)
    garble_next: int = Field(0, ge=0)


@dataclass
class FaultStats:
    requests: int = 0
    injected: Counter[int] = field(default_factory=Counter)
    timeouts: int = 0
    drops: int = 0
    cut_before: int = 0
    garbled: int = 0

    def snapshot(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "injected": {str(k): v for k, v in sorted(self.injected.items())},
            "timeouts": self.timeouts,
            "drops": self.drops,
            "cut_before": self.cut_before,
            "garbled": self.garbled,
        }


class KitSandbox(Protocol):
    """What `FaultMiddleware` needs from a sandbox's state object."""

    random: random.Random

    @property
    def faults(self) -> Faults: ...

    @property
    def fault_stats(self) -> FaultStats: ...

    def is_api_request(self, method: str, path: str) -> bool:
        """Requests that faults and the client-IP check apply to (not `/_sandbox/...`)."""
        ...

    def is_send_request(self, method: str, path: str) -> bool: ...

    def error_app(self, status: int) -> ASGIApp:
        """The gateway's own error answer for an injected `status` (429 with Retry-After)."""
        ...

    def admit(self, client_ip: str) -> ASGIApp | None:
        """An error answer when the gateway refuses this client before anything else (a per-IP
        rate limit), else None."""
        ...


class FaultMiddleware:
    """Wraps a sandbox app; finds the state at `app.state.sandbox` on every request, so tests
    may replace the state object wholesale."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sandbox: KitSandbox = scope["app"].state.sandbox
        method, path = scope["method"], scope["path"]
        if not sandbox.is_api_request(method, path):
            await self.app(scope, receive, send)
            return
        stats = sandbox.fault_stats
        stats.requests += 1
        client = scope.get("client")
        refusal = sandbox.admit(client[0] if client else "unknown")
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        faults = sandbox.faults
        if faults.targets == "sends" and not sandbox.is_send_request(method, path):
            await self.app(scope, receive, send)
            return
        if faults.latency_seconds:
            await asyncio.sleep(faults.latency_seconds)
        status = _draw_error(sandbox.random, faults)
        if status is not None:
            stats.injected[status] += 1
            await sandbox.error_app(status)(scope, receive, send)
            return
        mode = _draw_mode(sandbox.random, faults)
        if mode == "cut_before":
            stats.cut_before += 1
            await _cut(send, b'{"partial": tr')
            return
        if mode is None:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)  # the request is processed (and billed) in full
        if mode == "timeout":
            stats.timeouts += 1
            if await _client_gone(receive, faults.timeout_seconds):
                return
            for held_message in held:
                await send(held_message)
            return
        if mode == "garble":
            stats.garbled += 1
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/html")],
                }
            )
            await send({"type": "http.response.body", "body": b"<html>Bad gateway</html>"})
            return
        stats.drops += 1
        body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        await send(held[0])
        await send(
            {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        )
        # Returning with the body incomplete makes the server close the connection.


async def _cut(send: Send, partial: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(partial) * 4).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": partial, "more_body": True})


async def _client_gone(receive: Receive, seconds: float) -> bool:
    """Wait up to `seconds`; True as soon as the client disconnects."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return True
    except TimeoutError:
        return False


def _draw_error(rng: random.Random, faults: Faults) -> int | None:
    if faults.fail_next:
        return faults.fail_next.pop(0)
    if faults.error_rate and rng.random() < faults.error_rate:
        return rng.choice(faults.error_statuses)
    return None


def _draw_mode(rng: random.Random, faults: Faults) -> str | None:
    for mode in ("cut_before", "timeout", "drop", "garble"):
        count = getattr(faults, f"{mode}_next")
        if count:
            setattr(faults, f"{mode}_next", count - 1)
            return mode
    roll = rng.random()
    for mode in ("cut_before", "timeout", "drop", "garble"):
        rate = float(getattr(faults, f"{mode}_rate"))
        if roll < rate:
            return mode
        roll -= rate
    return None
