"""A request id on every HTTP request: taken from `X-Request-Id` (a load balancer's) when it is
well-formed, else made up; bound into every log line of the request and echoed back."""

from __future__ import annotations

import re
import uuid
from typing import Any

import structlog

HEADER = b"x-request-id"
_WELL_FORMED = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")


class RequestIdMiddleware:
    """Pure ASGI (no response buffering): binds `request_id` for the request's log lines."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((value for name, value in scope["headers"] if name == HEADER), b"")
        # A caller's id is kept only when it cannot smuggle anything into a log line.
        request_id = given.decode() if _WELL_FORMED.match(given) else uuid.uuid4().hex

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (HEADER, request_id.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)
