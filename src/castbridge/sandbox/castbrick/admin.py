"""The CastBrick sandbox's `/_sandbox/...` admin endpoints: the kit's, plus messages, accounts,
webhooks, events, billed counters and the reply / opt-out emitters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from castbridge.sandbox.castbrick.config import SandboxAccount
from castbridge.sandbox.castbrick.core import EmittedEvent, SandboxError, not_found
from castbridge.sandbox.castbrick.http import parse_object, sandbox_of
from castbridge.sandbox.castbrick.state import CastBrickSandbox
from castbridge.sandbox.kit.admin import kit_admin_router


def _invalid(message: str) -> SandboxError:
    return SandboxError(400, "BadRequest", message)


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def _account_of(sandbox: CastBrickSandbox, body: dict[str, Any]) -> SandboxAccount:
    """`api_key` from the body, else the first configured account."""
    key = body.get("api_key")
    if key is None:
        return next(iter(sandbox.accounts.values()))
    if not isinstance(key, str) or key not in sandbox.accounts:
        raise not_found("no such account")
    return sandbox.accounts[key]


def _event(event: EmittedEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "body": event.body,
        "deliveries": [
            {"url": d.url, "statuses": d.statuses, "delivered": d.delivered}
            for d in event.deliveries
        ],
    }


def admin_router() -> APIRouter:
    """Unauthenticated knobs for tests and demos in another process (a local tool only)."""
    router = APIRouter(prefix="/_sandbox")
    router.include_router(kit_admin_router(sandbox_of))

    @router.get("/messages")
    async def messages(request: Request) -> Response:
        """Every message as `GET /sms` shows it, plus its account (masked) and fate."""
        sandbox = sandbox_of(request)
        now = sandbox.clock()
        return JSONResponse(
            [
                {
                    **m.item(now, sandbox.config),
                    "batchId": m.batch_id,
                    "parts": m.parts,
                    "costAoa": m.cost,
                    "fate": m.fate,
                }
                for m in sandbox.messages.values()
            ]
        )

    @router.get("/billed")
    async def billed(request: Request) -> Response:
        """`?to=+244…&text=…[&api_key=…]` → `{"count": n}`: committed sends of that text."""
        sandbox = sandbox_of(request)
        to, text = request.query_params.get("to"), request.query_params.get("text")
        if not to or text is None:
            raise _invalid("to and text are required")
        count = sandbox.billed(to, text, request.query_params.get("api_key"))
        return JSONResponse({"count": count})

    @router.get("/webhooks")
    async def webhooks(request: Request) -> Response:
        sandbox = sandbox_of(request)
        return JSONResponse([w.body() for w in sandbox.webhooks.values()])

    @router.get("/events")
    async def events(request: Request) -> Response:
        """Every event emitted, with the body posted and each delivery's answers."""
        return JSONResponse([_event(e) for e in sandbox_of(request).events])

    @router.post("/emit")
    async def emit(request: Request) -> Response:
        """Post the status reports now due (they also go out on their own timers)."""
        return JSONResponse({"emitted": sandbox_of(request).emit_due()})

    @router.post("/inbound")
    async def inbound(request: Request) -> Response:
        """`{"from": "+244…", "text": "…", "to"?: "…", "api_key"?: "…"}`: a reply arrives;
        an `InboundMessage` is posted to the account's registrations."""
        sandbox = sandbox_of(request)
        body = parse_object(await request.body())
        sender, text = body.get("from"), body.get("text")
        if not isinstance(sender, str) or not sender or not isinstance(text, str):
            raise _invalid("from and text are required")
        to = body.get("to")
        event = sandbox.emit_inbound(
            _account_of(sandbox, body), sender, text, to if isinstance(to, str) else None
        )
        return JSONResponse(_event(event))

    @router.post("/optout")
    async def optout(request: Request) -> Response:
        """`{"phone": "+244…", "opted_in"?: false, "api_key"?: "…"}`: the number opts out (or
        back in); an `OptOut` event is posted, and later sends to it end Failed."""
        sandbox = sandbox_of(request)
        body = parse_object(await request.body())
        phone = body.get("phone")
        if not isinstance(phone, str) or not phone:
            raise _invalid("phone is required")
        event = sandbox.emit_optout(
            _account_of(sandbox, body), phone, opted_in=body.get("opted_in") is True
        )
        return JSONResponse(_event(event))

    @router.post("/accounts")
    async def add_account(request: Request) -> Response:
        sandbox = sandbox_of(request)
        try:
            account = SandboxAccount.model_validate(parse_object(await request.body()))
        except ValidationError as exc:
            raise _invalid(_first_error(exc)) from None
        sandbox.add_account(account)
        return JSONResponse({"success": True})

    @router.post("/accounts/{api_key}")
    async def update_account(api_key: str, request: Request) -> Response:
        """Change fields of an account, e.g. `{"balance": 0}` or `{"revoked": true}`."""
        sandbox = sandbox_of(request)
        account = sandbox.accounts.get(api_key)
        if account is None:
            raise not_found("no such account")
        body = parse_object(await request.body())
        try:
            updated = SandboxAccount.model_validate({**account.model_dump(), **body})
        except ValidationError as exc:
            raise _invalid(_first_error(exc)) from None
        sandbox.add_account(updated)
        return JSONResponse({"success": True})

    return router
