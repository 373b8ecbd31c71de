"""Request helpers shared by the sandbox routes: HighLevel-shaped errors, auth, version, limits."""

from __future__ import annotations

import json
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from castbridge.sandbox.ghl.state import GHLSandbox, Grant, trace_id

M = TypeVar("M", bound=BaseModel)

NOT_DOWNSTREAMED = "No conversation provider found for this message"


class SandboxReply(Exception):
    """Raised inside a route to answer at once with a HighLevel-shaped response."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


def sandbox_of(request: Request) -> GHLSandbox:
    sandbox: GHLSandbox = request.app.state.sandbox
    return sandbox


def reply(
    status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    content = {**(body or {}), "traceId": trace_id()}
    return JSONResponse(content, status_code=status, headers=headers)


def error(
    status: int,
    message: str | list[str],
    *,
    error_name: str | None = None,
    headers: dict[str, str] | None = None,
) -> SandboxReply:
    """HighLevel's error bodies (`BadRequestDTO`, `UnauthorizedDTO`, `UnprocessableDTO`)."""
    body: dict[str, Any] = {"statusCode": status, "message": message}
    if error_name is not None:
        body["error"] = error_name
    return SandboxReply(reply(status, body, headers))


def unprocessable(exc: ValidationError) -> SandboxReply:
    messages = [
        f"{'.'.join(str(part) for part in item['loc']) or 'body'}: {item['msg']}"
        for item in exc.errors()
    ]
    return error(422, messages, error_name="Unprocessable Entity")


def check_version(request: Request, expected: str | None) -> None:
    """The pinned `Version` per endpoint (ghl.md §11); `v3` on a v2 path is a 400 (#304)."""
    version = request.headers.get("version")
    if version == "v3":
        raise error(400, "Version v3 is not supported on this path", error_name="Bad Request")
    if expected is None:
        return
    if version is None:
        raise error(400, "Version header was not found", error_name="Bad Request")
    if version != expected:
        raise error(400, f"Version header must be {expected}", error_name="Bad Request")


async def parse_form(request: Request, model: type[M]) -> M:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise error(
            422,
            ["body must be application/x-www-form-urlencoded"],
            error_name="Unprocessable Entity",
        )
    raw = (await request.body()).decode("utf-8", errors="replace")
    fields = dict(parse_qsl(raw, keep_blank_values=True))
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise unprocessable(exc) from None


async def parse_json(request: Request, model: type[M]) -> tuple[M, dict[str, Any]]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise error(422, ["body must be application/json"], error_name="Unprocessable Entity")
    try:
        raw = json.loads(await request.body())
    except ValueError:
        raise error(400, "body is not JSON", error_name="Bad Request") from None
    if not isinstance(raw, dict):
        raise error(422, ["body must be a JSON object"], error_name="Unprocessable Entity")
    try:
        return model.model_validate(raw), raw
    except ValidationError as exc:
        raise unprocessable(exc) from None


def bearer_grant(request: Request) -> Grant:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    grant = sandbox_of(request).grant_for(token.strip()) if scheme.lower() == "bearer" else None
    if grant is None:
        raise error(401, "Invalid JWT", error_name="Unauthorized")
    return grant


def location_grant(request: Request, location_id: str | None = None) -> Grant:
    """A valid Location token (for `location_id` when given), counted against its rate limit."""
    grant = bearer_grant(request)
    if grant.user_type != "Location" or grant.location_id is None:
        raise error(
            401, "This route is not yet supported by the IAM Service", error_name="Unauthorized"
        )
    if location_id is not None and grant.location_id != location_id:
        raise error(403, "The token does not have access to this location")
    guard(request, grant.location_id)
    return grant


def guard(request: Request, key: str) -> None:
    """HighLevel's 100 requests / 10 s per location, then the configured fault injection."""
    sandbox = sandbox_of(request)
    wait = sandbox.hit(key)
    if wait is not None:
        headers = rate_headers(sandbox, key)
        if sandbox.config.send_retry_after:
            headers["Retry-After"] = str(max(1, int(wait + 0.999)))
        raise error(429, "Too many requests", error_name="Too Many Requests", headers=headers)
    if sandbox.fault(key):
        raise error(503, "Service Unavailable", error_name="Service Unavailable")


def rate_headers(sandbox: GHLSandbox, key: str) -> dict[str, str]:
    return {
        "X-RateLimit-Max": str(sandbox.config.rate_limit_requests),
        "X-RateLimit-Remaining": str(sandbox.remaining(key)),
        "X-RateLimit-Interval-Milliseconds": str(int(sandbox.config.rate_limit_window * 1000)),
        "X-RateLimit-Limit-Daily": "200000",
        "X-RateLimit-Daily-Remaining": str(max(0, 200000 - sandbox.requests[key])),
    }
