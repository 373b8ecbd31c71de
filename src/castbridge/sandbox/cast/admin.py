"""The Cast sandbox's `/_sandbox/...` admin endpoints: the kit's, plus messages and accounts."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from castbridge.sandbox.cast.config import SandboxAccount
from castbridge.sandbox.cast.http import first_error, parse_json, sandbox_of
from castbridge.sandbox.cast.state import SandboxError
from castbridge.sandbox.kit.admin import kit_admin_router


def admin_router() -> APIRouter:
    """Unauthenticated knobs for tests and demos in another process (a local tool only)."""
    router = APIRouter(prefix="/_sandbox")
    router.include_router(kit_admin_router(sandbox_of))

    @router.get("/messages")
    async def messages(request: Request) -> Response:
        sandbox = sandbox_of(request)
        now = sandbox.clock()
        return JSONResponse(
            [
                {
                    "message_id": m.message_id,
                    "channel": m.channel,
                    "to": m.to,
                    "sender_id": m.sender_id,
                    "parts": m.parts,
                    "idempotency_key": m.idempotency_key,
                    **m.status_at(now, sandbox.config),
                }
                for m in sandbox.messages.values()
            ]
        )

    @router.post("/accounts")
    async def add_account(request: Request) -> Response:
        sandbox = sandbox_of(request)
        try:
            account = SandboxAccount.model_validate(parse_json(await request.body()))
        except ValidationError as exc:
            raise SandboxError(400, "VALIDATION_ERROR", first_error(exc)) from None
        sandbox.add_account(account)
        return JSONResponse({"success": True})

    @router.post("/accounts/{api_key}")
    async def update_account(api_key: str, request: Request) -> Response:
        """Change fields of an account, e.g. `{"credits": 0}` or `{"revoked": true}`."""
        sandbox = sandbox_of(request)
        account = sandbox.accounts.get(api_key)
        if account is None:
            raise SandboxError(404, "NOT_FOUND", "no such account")
        body = parse_json(await request.body())
        try:
            updated = SandboxAccount.model_validate({**account.model_dump(), **body})
        except ValidationError as exc:
            raise SandboxError(400, "VALIDATION_ERROR", first_error(exc)) from None
        sandbox.add_account(updated)
        return JSONResponse({"success": True})

    return router
