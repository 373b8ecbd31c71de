"""The Cellcast sandbox's `/_sandbox/...` admin endpoints: the kit's, plus messages, accounts,
the dashboard's webhook URLs, the reply and opt-out emitters, billed counters and pushes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from castbridge.sandbox.cellcast.config import SandboxAccount
from castbridge.sandbox.cellcast.http import parse_json, sandbox_of
from castbridge.sandbox.cellcast.state import CellcastSandbox
from castbridge.sandbox.kit.admin import kit_admin_router


def _bad(message: str, status: int = 400) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def _account_key(sandbox: CellcastSandbox, body: dict[str, Any]) -> str | None:
    """The posted `api_key`, or the first account's when none is given."""
    key = body.get("api_key")
    if key is None:
        return next(iter(sandbox.accounts), None)
    return key if isinstance(key, str) and key in sandbox.accounts else None


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
                    "receiver": m.receiver,
                    "sender": m.sender,
                    "custom_string": m.custom_string,
                    "parts": m.parts,
                    "credit": m.credit,
                    "status": m.status_at(now, sandbox.config),
                    "scheduled": m.scheduled,
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
            return _bad(str(exc).splitlines()[0])
        sandbox.add_account(account)
        return JSONResponse({"success": True})

    @router.post("/accounts/{api_key}")
    async def update_account(api_key: str, request: Request) -> Response:
        """Change fields of an account, e.g. `{"sms_balance": 0}` or `{"token_expired": true}`."""
        sandbox = sandbox_of(request)
        account = sandbox.accounts.get(api_key)
        if account is None:
            return _bad("no such account", 404)
        try:
            updated = SandboxAccount.model_validate(
                {**account.model_dump(), **parse_json(await request.body())}
            )
        except ValidationError as exc:
            return _bad(str(exc).splitlines()[0])
        sandbox.add_account(updated)
        return JSONResponse({"success": True})

    @router.post("/accounts/{api_key}/webhooks")
    async def webhooks(api_key: str, request: Request) -> Response:
        """`{"status_url": …, "receive_url": …}` (null clears): the dashboard's Webhook page."""
        sandbox = sandbox_of(request)
        if api_key not in sandbox.accounts:
            return _bad("no such account", 404)
        body = parse_json(await request.body())
        urls = [body.get("status_url"), body.get("receive_url")]
        if any(url is not None and not isinstance(url, str) for url in urls):
            return _bad("status_url and receive_url must be strings or null")
        sandbox.set_webhooks(api_key, urls[0], urls[1])
        return JSONResponse({"success": True})

    @router.post("/reply")
    async def reply(request: Request) -> Response:
        """`{"from": "+614…", "text": "…", "api_key"?: …, "to"?: "614…"}`: a handset replies."""
        sandbox = sandbox_of(request)
        body = parse_json(await request.body())
        key = _account_key(sandbox, body)
        sender, text = body.get("from"), body.get("text")
        if key is None:
            return _bad("no such account", 404)
        if not isinstance(sender, str) or not isinstance(text, str):
            return _bad("from and text are required strings")
        to = body.get("to")
        try:
            result = sandbox.emit_reply(key, sender, text, to=to if isinstance(to, str) else None)
        except ValueError as exc:
            return _bad(str(exc))
        return JSONResponse(result)

    @router.post("/optout")
    async def optout(request: Request) -> Response:
        """`{"number": "+614…", "api_key"?: …, "opted_in"?: false}`: the number opts out."""
        sandbox = sandbox_of(request)
        body = parse_json(await request.body())
        key = _account_key(sandbox, body)
        number = body.get("number")
        if key is None:
            return _bad("no such account", 404)
        if not isinstance(number, str) or not number.strip():
            return _bad("number is required")
        sandbox.emit_optout(key, number, opted_in=body.get("opted_in") is True)
        return JSONResponse({"success": True, "optouts": sandbox.accounts[key].optouts})

    @router.get("/billed")
    async def billed(request: Request) -> Response:
        """`?custom_string=…` or `?to=…&text=…` (optional `api_key`): times billed."""
        sandbox = sandbox_of(request)
        params = request.query_params
        key = params.get("api_key")
        if "custom_string" in params:
            return JSONResponse({"billed": sandbox.billed(params["custom_string"], key)})
        if "to" in params and "text" in params:
            return JSONResponse({"billed": sandbox.billed_to(params["to"], params["text"], key)})
        return _bad("give custom_string, or to and text")

    @router.get("/pushes")
    async def pushes(request: Request) -> Response:
        sandbox = sandbox_of(request)
        return JSONResponse(
            [
                {"url": d.url, "body": d.json(), "statuses": d.statuses, "delivered": d.delivered}
                for d in sandbox.pusher.deliveries
            ]
        )

    return router
