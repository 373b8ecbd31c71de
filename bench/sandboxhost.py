"""Both sandboxes in their own process, so they neither share a core with castbridge nor the load.

Run as `python -m bench.sandboxhost CONFIG.json`: serves the Cast and HighLevel sandboxes on free
loopback ports, prints one JSON line `{"cast_url": ..., "ghl_url": ...}` and runs until SIGTERM.

Besides the sandboxes' own `/_sandbox/...` admin routes, the HighLevel sandbox gets `/_bench/...`:
register pre-signed messages in bulk, start their not-downstreamed window, count final statuses
(with the time HighLevel accepted each) and read both sandboxes' counters in one call.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

from castbridge.sandbox.cast import CastSandbox, CastSandboxConfig, create_cast_sandbox
from castbridge.sandbox.ghl import GHLSandbox, GHLSandboxConfig, create_ghl_sandbox
from castbridge.sandbox.ghl.state import SandboxMessage
from castbridge.sandbox.server import serve_app

FINAL = frozenset({"delivered", "failed"})


class FinalClock:
    """ASGI wrapper: notes when HighLevel accepted each message's final status.

    The sandbox keeps the statuses but not their times; the end-to-end latency needs the moment
    the final one was answered 200, taken here in this process with the wall clock.
    """

    def __init__(self, app: FastAPI, sandbox: GHLSandbox) -> None:
        self.app = app
        self.sandbox = sandbox
        self.finals: dict[str, tuple[str, float]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope["type"] != "http" or scope["method"] != "PUT" or not path.endswith("/status"):
            await self.app(scope, receive, send)
            return
        answered = 0

        async def _send(message: MutableMapping[str, Any]) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = int(message["status"])
            await send(message)

        await self.app(scope, receive, _send)
        if answered == 200:
            message_id = path.rsplit("/", 2)[-2]
            found = self.sandbox.messages.get(message_id)
            if found is not None and found.status in FINAL and message_id not in self.finals:
                self.finals[message_id] = (found.status, time.time())


def add_bench_routes(app: FastAPI, ghl: GHLSandbox, cast: CastSandbox, clock: FinalClock) -> None:
    @app.post("/_bench/register")
    async def register(request: Request) -> dict[str, int]:
        """Messages the load generator signed itself, so their status updates are accepted."""
        body = json.loads(await request.body())
        for item in body["messages"]:
            ghl.messages[item["id"]] = SandboxMessage(
                id=item["id"],
                location_id=item["locationId"],
                contact_id=item.get("contactId") or "",
                conversation_id="bench",
                direction="outbound",
                body="",
                message_type="TYPE_SMS",
                conversation_provider_id=ghl.config.conversation_provider_id,
                emitted_at=None,
            )
        return {"registered": len(body["messages"])}

    @app.post("/_bench/emit")
    async def emit() -> dict[str, int]:
        """Start the not-downstreamed window of every registered message now (posting begins)."""
        now = time.monotonic()
        count = 0
        for message in ghl.messages.values():
            if message.emitted_at is None:
                message.emitted_at = now
                count += 1
        return {"emitted": count}

    @app.get("/_bench/finals")
    async def finals(full: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = {"count": len(clock.finals)}
        if full:
            result["finals"] = clock.finals
        return result

    @app.get("/_bench/stats")
    async def stats(send_times: bool = False) -> dict[str, Any]:
        status_calls = sum(m.status_calls for m in ghl.messages.values())
        accepted = sum(len(m.statuses) for m in ghl.messages.values())
        result: dict[str, Any] = {
            "cast": {
                "requests": cast.stats.requests,
                "sends": cast.stats.sends,
                "messages": cast.stats.messages,
                "replays": cast.stats.replays,
                "rate_limited_429": cast.stats.rate_limited,
                "injected": sum(cast.stats.injected.values()),
                "billed_twice": sum(1 for n in cast.stats.billed.values() if n > 1),
            },
            "ghl": {
                "requests": sum(ghl.requests.values()),
                "rate_limited_429": sum(ghl.rate_limited.values()),
                "status_calls": status_calls,
                "statuses_accepted": accepted,
                # Calls refused inside the not-downstreamed window (or for a wrong location).
                "refused_403": status_calls - accepted,
                "token_calls": sum(ghl.token_calls.values()),
            },
        }
        if send_times:
            result["cast"]["send_times"] = sorted(m.created_at for m in cast.messages.values())
            # castbridge's key is `<location>:<messageId>[:generation]`: who was sent when.
            result["cast"]["sent_at"] = {
                m.idempotency_key: m.created_at for m in cast.messages.values() if m.idempotency_key
            }
        return result


async def main(config: dict[str, Any]) -> None:
    cast_app = create_cast_sandbox(CastSandboxConfig.model_validate(config["cast"]))
    ghl_app = create_ghl_sandbox(GHLSandboxConfig.model_validate(config["ghl"]))
    ghl: GHLSandbox = ghl_app.state.sandbox
    cast: CastSandbox = cast_app.state.sandbox
    clock = FinalClock(ghl_app, ghl)
    add_bench_routes(ghl_app, ghl, cast, clock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve_app(cast_app) as cast_url, serve_app(clock) as ghl_url:
        print(json.dumps({"cast_url": cast_url, "ghl_url": ghl_url}), flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text())))
