"""HTTP helpers for the Cellcast sandbox routes: answers in Cellcast shapes, JSON bodies."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse

from castbridge.sandbox.cellcast.records import SandboxError, bad_request

if TYPE_CHECKING:
    from castbridge.sandbox.cellcast.state import CellcastSandbox


def error_response(exc: SandboxError) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


def sandbox_of(request: Request) -> CellcastSandbox:
    sandbox: CellcastSandbox = request.app.state.sandbox
    return sandbox


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("Unexpected token in JSON at position 0") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body
