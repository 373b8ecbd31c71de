"""The UGSMS sandbox's `/_sandbox/...` admin endpoints: the kit's, plus messages, accounts and
billed counters."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from castbridge.sandbox.kit.admin import kit_admin_router
from castbridge.sandbox.ugsms.config import SandboxAccount
from castbridge.sandbox.ugsms.state import UgsmsSandbox, mask


def sandbox_of(request: Request) -> UgsmsSandbox:
    sandbox: UgsmsSandbox = request.app.state.sandbox
    return sandbox


def _bad(message: str, status: int = 400) -> Response:
    return JSONResponse({"error": message}, status_code=status)


async def _object(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body() or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def admin_router() -> APIRouter:
    """Unauthenticated knobs for tests and demos in another process (a local tool only)."""
    router = APIRouter(prefix="/_sandbox")
    router.include_router(kit_admin_router(sandbox_of))

    @router.get("/messages")
    async def messages(request: Request) -> Response:
        """Every accepted send request, oldest first."""
        return JSONResponse([m.as_json() for m in sandbox_of(request).messages.values()])

    @router.get("/billed")
    async def billed(request: Request) -> Response:
        """`?to=07…&text=…&api_key=…` (each optional) -> `{"count": n}` recipient-messages
        billed; `?reference=…` -> bulk batches committed under that reference."""
        sandbox = sandbox_of(request)
        params = request.query_params
        if "reference" in params:
            count = sandbox.billed_reference(params["reference"], params.get("api_key"))
        else:
            count = sandbox.billed(params.get("to"), params.get("text"), params.get("api_key"))
        return JSONResponse({"count": count})

    @router.get("/accounts")
    async def accounts(request: Request) -> Response:
        return JSONResponse(
            [
                {**a.model_dump(exclude={"api_key", "password"}), "api_key": mask(a.api_key)}
                for a in sandbox_of(request).accounts.values()
            ]
        )

    @router.post("/accounts")
    async def add_account(request: Request) -> Response:
        """A whole `SandboxAccount` (`api_key` required)."""
        body = await _object(request)
        if body is None:
            return _bad("body must be a JSON object")
        try:
            account = SandboxAccount.model_validate(body)
        except ValidationError as exc:
            return _bad(_first_error(exc))
        sandbox_of(request).add_account(account)
        return JSONResponse({"success": True})

    @router.post("/accounts/{api_key}")
    async def update_account(api_key: str, request: Request) -> Response:
        """Change fields of an account, e.g. `{"balance": 0}` or `{"revoked": true}`."""
        sandbox = sandbox_of(request)
        account = sandbox.accounts.get(api_key)
        if account is None:
            return _bad("no such account", 404)
        body = await _object(request)
        if body is None:
            return _bad("body must be a JSON object")
        try:
            updated = SandboxAccount.model_validate({**account.model_dump(), **body})
        except ValidationError as exc:
            return _bad(_first_error(exc))
        sandbox.add_account(updated)
        return JSONResponse({"success": True})

    return router
