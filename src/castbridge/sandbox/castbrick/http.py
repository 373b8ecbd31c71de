"""HTTP helpers of the CastBrick sandbox's routes: CastBrick-shaped errors, auth, JSON bodies."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse

from castbridge.sandbox.castbrick.config import SandboxAccount
from castbridge.sandbox.castbrick.core import SandboxError, bad_request, not_found
from castbridge.sandbox.castbrick.state import CastBrickSandbox


def error_response(exc: SandboxError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def html_response(status: int) -> HTMLResponse:
    """What a proxy in front of the API answers when it gives up (not CastBrick's JSON)."""
    page = f"<html><head><title>{status}</title></head><body><h1>{status}</h1></body></html>"
    return HTMLResponse(page, status_code=status)


def sandbox_of(request: Request) -> CastBrickSandbox:
    sandbox: CastBrickSandbox = request.app.state.sandbox
    return sandbox


def on_base_path(request: Request) -> CastBrickSandbox:
    """The sandbox, if the request came in under its configured base path. The routes exist
    under both prefixes (so a swapped-in state may choose), and the other one answers 404
    like a missing route, before authentication, as a real host would."""
    sandbox = sandbox_of(request)
    under_v1 = request.url.path == "/v1" or request.url.path.startswith("/v1/")
    if under_v1 != (sandbox.config.base_path == "/v1"):
        sandbox.stats.calls[f"{request.method} <404>"] += 1
        raise not_found(f"Endpoint {request.method} {request.url.path} not found.")
    return sandbox


def authenticate(request: Request, *, sms_call: bool) -> tuple[CastBrickSandbox, SandboxAccount]:
    """The sandbox and the caller's account; first posts any status reports now due, so a
    poll never sees a status whose webhook has not gone out."""
    sandbox = on_base_path(request)
    sandbox.emit_due()
    route = request.scope.get("route")
    template = getattr(route, "path", request.url.path).removeprefix("/v1")
    sandbox.stats.calls[f"{request.method} {template}"] += 1
    account = sandbox.authenticate(request.headers.get("authorization"), sms_call=sms_call)
    return sandbox, account


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("Invalid JSON payload.") from None


def parse_object(raw: bytes) -> dict[str, Any]:
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body
