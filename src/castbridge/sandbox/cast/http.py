"""HTTP helpers shared by the Cast sandbox's routes: Cast-shaped errors, auth, JSON bodies."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from castbridge.sandbox.cast.config import SandboxAccount
from castbridge.sandbox.cast.state import CastSandbox, SandboxError


def error_body(sandbox: CastSandbox, exc: SandboxError) -> dict[str, Any]:
    body: dict[str, Any] = {"success": False, "error": exc.message}
    if not sandbox.config.rev_a_errors:
        body["error_code"] = exc.code
    return body


def error_response(sandbox: CastSandbox, exc: SandboxError) -> JSONResponse:
    return JSONResponse(error_body(sandbox, exc), status_code=exc.status, headers=exc.headers)


def sandbox_of(request: Request) -> CastSandbox:
    sandbox: CastSandbox = request.app.state.sandbox
    return sandbox


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def authenticate(request: Request) -> tuple[CastSandbox, SandboxAccount]:
    sandbox = sandbox_of(request)
    return sandbox, sandbox.authenticate(request.headers.get("x-api-key"), client_ip(request))


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise SandboxError(400, "INVALID_REQUEST", "invalid JSON body") from None
    if not isinstance(body, dict):
        raise SandboxError(400, "INVALID_REQUEST", "request body must be a JSON object")
    return body


def first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])
