"""Edge protections: framing headers, the optional admin token, per-IP limits on OAuth pages."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from castbridge.config import Settings
from castbridge.limits import Limit, LocalPacer, Throttled

# Routes only an operator should read when CASTBRIDGE_ADMIN_TOKEN is set.
ADMIN_PATHS = ("/metrics", "/docs", "/redoc", "/openapi.json")
# Routes HighLevel shows inside its iframe (the custom settings page).
FRAMEABLE_PREFIXES = ("/app/",)


def admin_allowed(request: Request, settings: Settings) -> bool:
    """True when no admin token is configured, or the request carries it as a bearer."""
    token = settings.admin_token
    if token is None:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(), token.get_secret_value().encode()
    )


class EdgeMiddleware:
    """Deny framing everywhere but the settings page (ghl.md §13), and guard admin routes."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        ancestors = settings.settings_frame_ancestors or "'self' https:"
        self._frame_csp = f"frame-ancestors {ancestors}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(ADMIN_PATHS) and self.settings.admin_token is not None:
            request = Request(scope)
            if not admin_allowed(request, self.settings):
                await _unauthorized(send)
                return
        frameable = path.startswith(FRAMEABLE_PREFIXES)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"x-frame-options",)
                ]
                if frameable:
                    headers.append((b"content-security-policy", self._frame_csp))
                else:
                    headers.append((b"x-frame-options", b"DENY"))
                    headers.append((b"content-security-policy", b"frame-ancestors 'none'"))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


async def _unauthorized(send: Send) -> None:
    body = b'{"error":"this route needs the admin token (Authorization: Bearer ...)"}'
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", b"Bearer"),
                (b"x-frame-options", b"DENY"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ClientLimiter:
    """Requests per minute per client IP (OAuth pages), in this process."""

    def __init__(self, per_minute: int) -> None:
        self._limit = Limit(per_minute / 60.0, max(1.0, per_minute / 3.0))
        self._pacer = LocalPacer()

    async def check(self, request: Request) -> None:
        ip = request.client.host if request.client else "unknown"
        try:
            await self._pacer.take(f"oauth:{ip}", self._limit)
        except Throttled as exc:
            raise HTTPException(
                429,
                "too many install attempts from this address; try again shortly",
                headers={"Retry-After": str(max(1, int(exc.wait + 0.999)))},
            ) from None
