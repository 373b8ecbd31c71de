"""The Cast sandbox's `/_sandbox/...` admin endpoints: stats, faults, clock, accounts."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from castbridge.sandbox.cast.config import Faults, SandboxAccount
from castbridge.sandbox.cast.http import first_error, parse_json, sandbox_of
from castbridge.sandbox.cast.state import SandboxError


def admin_router() -> APIRouter:
    """Unauthenticated knobs for tests and demos in another process (a local tool only)."""
    router = APIRouter(prefix="/_sandbox")

    @router.get("/stats")
    async def stats(request: Request) -> Response:
        return JSONResponse(sandbox_of(request).snapshot())

    @router.get("/faults")
    async def get_faults(request: Request) -> Response:
        return JSONResponse(sandbox_of(request).faults.model_dump())

    @router.post("/faults")
    async def set_faults(request: Request) -> Response:
        """Merge the posted fields into the current faults; `{}` changes nothing."""
        sandbox = sandbox_of(request)
        body = parse_json(await request.body())
        try:
            faults = Faults.model_validate({**sandbox.faults.model_dump(), **body})
        except ValidationError as exc:
            raise SandboxError(400, "VALIDATION_ERROR", first_error(exc)) from None
        sandbox.config.faults = faults
        return JSONResponse(faults.model_dump())

    @router.post("/reset")
    async def reset(request: Request) -> Response:
        """Clear faults and statistics (accounts and messages stay)."""
        sandbox = sandbox_of(request)
        sandbox.config.faults = Faults()
        sandbox.reset_stats()
        return JSONResponse({"success": True})

    @router.post("/clock")
    async def clock(request: Request) -> Response:
        """`{"advance": seconds}` moves status timelines and idempotency expiry forward."""
        sandbox = sandbox_of(request)
        body = parse_json(await request.body())
        seconds = body.get("advance")
        if not isinstance(seconds, int | float) or seconds < 0:
            raise SandboxError(400, "VALIDATION_ERROR", "advance must be a non-negative number")
        sandbox.advance(float(seconds))
        return JSONResponse({"success": True, "now": sandbox.clock()})

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
