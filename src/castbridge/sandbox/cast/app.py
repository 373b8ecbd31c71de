"""The Cast sandbox as a FastAPI app: Rev B `/api/v1/...` routes, legacy `/api/...` aliases,
fault injection and the `/_sandbox/...` admin endpoints."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from castbridge.sandbox.cast.admin import admin_router
from castbridge.sandbox.cast.config import CastSandboxConfig
from castbridge.sandbox.cast.http import (
    authenticate,
    error_body,
    error_response,
    parse_json,
    sandbox_of,
)
from castbridge.sandbox.cast.state import CastSandbox, SandboxError
from castbridge.sandbox.kit import FaultMiddleware


def _date_param(request: Request, name: str) -> date | None:
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise SandboxError(400, "VALIDATION_ERROR", f"{name} must be YYYY-MM-DD") from None


def _int_param(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SandboxError(400, "VALIDATION_ERROR", f"{name} must be an integer") from None


async def _send(request: Request, channel: str, *, bulk: bool) -> Response:
    sandbox, account = authenticate(request)
    if channel == "viber":
        raise SandboxError(403, "CHANNEL_NOT_ALLOWED", "viber channel not enabled for this account")
    key = request.headers.get("x-idempotency-key")
    sandbox.check_idempotency_key(key)
    raw = await request.body()
    # From here on there is no await: a concurrent duplicate cannot slip between the replay
    # check and the commit, so a key is billed at most once.
    if key is not None:
        cached = sandbox.replay(account.api_key, key)
        if cached is not None:
            return JSONResponse(
                cached.body, status_code=cached.status, headers={"X-Idempotent-Replay": "true"}
            )
    body = parse_json(raw)
    try:
        if bulk:
            status, answer = sandbox.bulk(account, channel, body, key)
        else:
            status, answer = sandbox.send(account, channel, body, key)
    except SandboxError as exc:
        if key is not None:
            sandbox.remember(account.api_key, key, exc.status, error_body(sandbox, exc))
        raise
    if key is not None:
        sandbox.remember(account.api_key, key, status, answer)
    return JSONResponse(answer, status_code=status)


def _api_router() -> APIRouter:
    router = APIRouter()

    @router.post("/{channel}/send")
    async def send(channel: str, request: Request) -> Response:
        if channel not in ("sms", "otp", "sim", "viber"):
            raise StarletteHTTPException(404)
        return await _send(request, channel, bulk=False)

    @router.post("/{channel}/bulk")
    async def bulk(channel: str, request: Request) -> Response:
        if channel not in ("sms", "sim"):
            raise StarletteHTTPException(404)
        return await _send(request, channel, bulk=True)

    @router.get("/{channel}/status/{message_id}")
    async def status(channel: str, message_id: str, request: Request) -> Response:
        if channel not in ("sms", "sim"):
            raise StarletteHTTPException(404)
        sandbox, account = authenticate(request)
        return JSONResponse(sandbox.status(account, channel, message_id))

    @router.get("/sms/logs")
    async def logs(request: Request) -> Response:
        sandbox, account = authenticate(request)
        return JSONResponse(
            sandbox.logs(
                account,
                status=request.query_params.get("status"),
                search=request.query_params.get("search"),
                start=_date_param(request, "from"),
                end=_date_param(request, "to"),
                limit=_int_param(request, "limit", 50),
                offset=max(0, _int_param(request, "offset", 0)),
            )
        )

    @router.get("/account/balance")
    async def balance(request: Request) -> Response:
        sandbox, account = authenticate(request)
        return JSONResponse(sandbox.balance(account))

    @router.get("/account/profile")
    async def profile(request: Request) -> Response:
        sandbox, account = authenticate(request)
        return JSONResponse(sandbox.profile(account))

    @router.get("/account/usage")
    async def usage(request: Request) -> Response:
        sandbox, account = authenticate(request)
        today = datetime.fromtimestamp(sandbox.clock(), UTC).date()
        end = _date_param(request, "to") or today
        start = _date_param(request, "from") or end - timedelta(days=30)
        return JSONResponse(sandbox.usage(account, start, end))

    @router.get("/account/sender-ids")
    async def sender_ids(request: Request) -> Response:
        sandbox, account = authenticate(request)
        return JSONResponse(sandbox.sender_ids(account))

    @router.post("/account/sender-ids/request")
    async def sender_id_request(request: Request) -> Response:
        sandbox, _ = authenticate(request)
        body = parse_json(await request.body())
        return JSONResponse(sandbox.sender_id_request(body, delete=False))

    @router.post("/account/sender-ids/delete-request")
    async def sender_id_delete(request: Request) -> Response:
        sandbox, _ = authenticate(request)
        body = parse_json(await request.body())
        return JSONResponse(sandbox.sender_id_request(body, delete=True))

    @router.post("/unsubscribe/token")
    async def unsubscribe_token(request: Request) -> Response:
        sandbox, account = authenticate(request)
        body = parse_json(await request.body())
        return JSONResponse(sandbox.unsubscribe_token(account, body))

    @router.get("/account/unsubscribed")
    async def unsubscribed(request: Request) -> Response:
        sandbox, account = authenticate(request)
        return JSONResponse(sandbox.unsubscribed(account))

    return router


def create_cast_sandbox(
    config: CastSandboxConfig | None = None, *, clock: Callable[[], float] | None = None
) -> FastAPI:
    """A local Cast.ph. `app.state.sandbox` is the `CastSandbox` holding its state; every
    request looks it up, so assigning a new `CastSandbox` there starts afresh.

    With no config: one live-style account (`DEFAULT_API_KEY`, 1,000 credits, sender ID
    `CASTBRIDGE`, channels sms/otp/bulk, 10 msg/s) and the test key `DEFAULT_TEST_KEY`.
    """
    sandbox = CastSandbox(config, clock)
    app = FastAPI(
        title="Cast.ph sandbox (castbridge)", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.sandbox = sandbox
    app.include_router(_api_router(), prefix="/api/v1")
    app.include_router(_api_router(), prefix="/api")  # Rev A's unversioned legacy paths
    app.include_router(admin_router())

    async def on_sandbox_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SandboxError)
        return error_response(sandbox_of(request), exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            error = SandboxError(405, "METHOD_NOT_ALLOWED", "method not allowed")
        elif exc.status_code == 404:
            error = SandboxError(404, "NOT_FOUND", "not found")
        else:
            error = SandboxError(exc.status_code, f"HTTP_{exc.status_code}", str(exc.detail))
        return error_response(sandbox_of(request), error)

    app.add_exception_handler(SandboxError, on_sandbox_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_middleware(FaultMiddleware)
    return app
