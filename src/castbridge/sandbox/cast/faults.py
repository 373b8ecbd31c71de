"""Fault injection for the Cast sandbox: per-IP limit, latency, errors, timeouts, drops."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from castbridge.sandbox.cast.config import Faults
from castbridge.sandbox.cast.http import error_response
from castbridge.sandbox.cast.state import CastSandbox, SandboxError

# What an injected error answers (Cast's codes for these statuses, gateways.md §1.6).
_INJECTED = {
    429: ("RATE_LIMIT_EXCEEDED", "rate limit exceeded"),
    500: ("INTERNAL_ERROR", "internal server error"),
    502: ("PROVIDER_ERROR", "upstream provider error"),
    503: ("SERVICE_UNAVAILABLE", "service temporarily unavailable"),
}


class FaultMiddleware:
    """Per-IP rate limit, then injected latency, errors, timeouts and dropped connections."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        # Looked up per request, so replacing `app.state.sandbox` swaps the whole state.
        sandbox: CastSandbox = scope["app"].state.sandbox
        sandbox.stats.requests += 1
        client = scope.get("client")
        try:
            sandbox.check_ip_rate(client[0] if client else "unknown")
        except SandboxError as exc:
            await error_response(sandbox, exc)(scope, receive, send)
            return
        faults = sandbox.faults
        is_send = scope["method"] == "POST" and scope["path"].rsplit("/", 1)[-1] in ("send", "bulk")
        if faults.targets == "sends" and not is_send:
            await self.app(scope, receive, send)
            return
        if faults.latency_seconds:
            await asyncio.sleep(faults.latency_seconds)
        status = _draw_error(sandbox, faults)
        if status is not None:
            sandbox.stats.injected[status] += 1
            code, message = _INJECTED.get(status, (f"HTTP_{status}", "injected fault"))
            headers = sandbox.retry_after_header() if status == 429 else None
            error = SandboxError(status, code, message, headers)
            await error_response(sandbox, error)(scope, receive, send)
            return
        mode = _draw_mode(sandbox, faults)
        if mode is None:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)  # the request is processed (and billed) in full
        if mode == "timeout":
            sandbox.stats.timeouts += 1
            if await _client_gone(receive, faults.timeout_seconds):
                return
            for held_message in held:
                await send(held_message)
            return
        sandbox.stats.drops += 1
        body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        await send(held[0])
        await send(
            {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        )
        # Returning with the body incomplete makes the server close the connection.


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


def _draw_error(sandbox: CastSandbox, faults: Faults) -> int | None:
    if faults.fail_next:
        return faults.fail_next.pop(0)
    if faults.error_rate and sandbox.random.random() < faults.error_rate:
        return sandbox.random.choice(faults.error_statuses)
    return None


def _draw_mode(sandbox: CastSandbox, faults: Faults) -> str | None:
    if faults.timeout_next:
        faults.timeout_next -= 1
        return "timeout"
    if faults.drop_next:
        faults.drop_next -= 1
        return "drop"
    roll = sandbox.random.random()
    if roll < faults.timeout_rate:
        return "timeout"
    if roll < faults.timeout_rate + faults.drop_rate:
        return "drop"
    return None
