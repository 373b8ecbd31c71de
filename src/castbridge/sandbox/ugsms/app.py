"""The UGSMS sandbox as a FastAPI app: v2 routes under `/api/v2`, the legacy `/v1/sms/send`,
fault injection and the `/_sandbox/...` admin endpoints."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from castbridge.sandbox.kit import FaultMiddleware
from castbridge.sandbox.ugsms.admin import admin_router, sandbox_of
from castbridge.sandbox.ugsms.config import SandboxAccount, UgsmsSandboxConfig
from castbridge.sandbox.ugsms.state import SERVER_ERROR, SandboxError, UgsmsSandbox

Action = Callable[[UgsmsSandbox, SandboxAccount, dict[str, Any]], dict[str, Any]]


async def read_body(request: Request) -> dict[str, Any]:
    """A JSON object or form-encoded fields (UGSMS's docs show both); {} when empty."""
    raw = await request.body()
    if not raw:
        return {}
    if "application/x-www-form-urlencoded" in request.headers.get("content-type", ""):
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise SandboxError(400, {"error": "Invalid JSON body."}) from None
    if not isinstance(body, dict):
        raise SandboxError(400, {"error": "The request body must be a JSON object."})
    return body


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _key(
    request: Request, query: dict[str, Any], body: dict[str, Any]
) -> tuple[str | None, str | None]:
    """v2's key: `X-API-Key` (preferred), else an `api_key` query, else body parameter."""
    header = request.headers.get("x-api-key")
    if header:
        return header, "header"
    for via, source in (("query", query), ("body", body)):
        value = source.get("api_key")
        if isinstance(value, str) and value:
            return value, via
    return None, None


async def _v2(request: Request, action: Action) -> Response:
    """Meter (every v2 answer carries `x-ratelimit-*`, a 401 included, as the docs show),
    authenticate, act; errors in v2's `{error, help?}` shape."""
    sandbox = sandbox_of(request)
    query = dict(request.query_params)
    body_error: SandboxError | None = None
    try:
        body = await read_body(request)
    except SandboxError as exc:
        body, body_error = {}, exc
    key, via = _key(request, query, body)
    headers: dict[str, str] = {}
    try:
        bucket = key if key else f"ip:{_client_ip(request)}"
        headers = sandbox.meter(bucket, sandbox.rate_limit_of(key))
        if body_error is not None:
            raise body_error
        account = sandbox.authenticate(key, via)
        fields = {**query, **body}
        fields.pop("api_key", None)
        answer = action(sandbox, account, fields)
    except SandboxError as exc:
        return JSONResponse(exc.body, status_code=exc.status, headers={**headers, **exc.headers})
    return JSONResponse(answer, headers=headers)


def _send(sandbox: UgsmsSandbox, account: SandboxAccount, fields: dict[str, Any]) -> dict[str, Any]:
    return sandbox.send(account, fields)


def _bulk(sandbox: UgsmsSandbox, account: SandboxAccount, fields: dict[str, Any]) -> dict[str, Any]:
    return sandbox.bulk(account, fields)


def _balance(
    sandbox: UgsmsSandbox, account: SandboxAccount, fields: dict[str, Any]
) -> dict[str, Any]:
    return sandbox.balance(account)


def _v2_router() -> APIRouter:
    router = APIRouter()

    @router.get("")
    async def swagger_page() -> Response:
        # The docs' own example: `GET /api/v2` answers 500 {"message": "Server Error"}.
        return JSONResponse(SERVER_ERROR, status_code=500)

    @router.api_route("/sms/send", methods=["GET", "POST"])
    async def send(request: Request) -> Response:
        return await _v2(request, _send)

    @router.post("/sms/send/bulk")
    async def bulk(request: Request) -> Response:
        if not sandbox_of(request).config.bulk_enabled:
            raise StarletteHTTPException(404)
        return await _v2(request, _bulk)

    @router.get("/account/balance")
    async def balance(request: Request) -> Response:
        return await _v2(request, _balance)

    return router


def _v1_router() -> APIRouter:
    router = APIRouter()

    @router.api_route("/sms/send", methods=["GET", "POST"])
    async def send(request: Request) -> Response:
        """v1: username + password (query or body); API keys are refused (gateways.md §4)."""
        sandbox = sandbox_of(request)
        try:
            fields = {**dict(request.query_params), **(await read_body(request))}
            offered_key = bool(
                request.headers.get("x-api-key")
                or request.headers.get("authorization", "").lower().startswith("bearer ")
                or fields.get("api_key")
            )
            account = sandbox.authenticate_v1(fields, offered_key)
            return JSONResponse(sandbox.send(account, fields, api_version="v1"))
        except SandboxError as exc:
            return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

    return router


def create_ugsms_sandbox(
    config: UgsmsSandboxConfig | None = None, *, clock: Callable[[], float] | None = None
) -> FastAPI:
    """A local UGSMS. `app.state.sandbox` is the `UgsmsSandbox` holding its state; every
    request looks it up, so assigning a new `UgsmsSandbox` there starts afresh.

    With no config: one account (`DEFAULT_API_KEY`, v1 login `sandbox` / `sandbox-pass`,
    10,000 UGX at 35 UGX a part, 60 requests a minute). The v2 base URL is `<url>/api/v2`.
    """
    sandbox = UgsmsSandbox(config, clock)
    app = FastAPI(
        title="UGSMS sandbox (castbridge)", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.sandbox = sandbox
    app.include_router(_v2_router(), prefix="/api/v2")
    app.include_router(_v1_router(), prefix="/v1")
    app.include_router(admin_router())

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        # Laravel's JSON answers to an unknown route or a wrong method.
        messages = {404: "Not Found", 405: "Method Not Allowed"}
        text = messages.get(exc.status_code, str(exc.detail))
        return JSONResponse({"message": text}, status_code=exc.status_code)

    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_middleware(FaultMiddleware)
    return app
