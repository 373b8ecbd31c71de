"""The CastBrick sandbox as a FastAPI app: the API on one base path (`""` or `"/v1"`), 404 on
the other, fault injection and the `/_sandbox/...` admin endpoints."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from castbridge.sandbox.castbrick.admin import admin_router
from castbridge.sandbox.castbrick.config import CastBrickSandboxConfig
from castbridge.sandbox.castbrick.core import SandboxError, not_found
from castbridge.sandbox.castbrick.http import (
    authenticate,
    error_response,
    on_base_path,
    parse_object,
    sandbox_of,
)
from castbridge.sandbox.castbrick.state import CastBrickSandbox
from castbridge.sandbox.kit import FaultMiddleware


def _query(request: Request) -> dict[str, str]:
    return dict(request.query_params)


def _int_query(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    try:
        return int(value) if value else default
    except ValueError:
        raise SandboxError(400, "BadRequest", f"{name} must be an integer.") from None


def _api_router() -> APIRouter:
    router = APIRouter()

    @router.post("/sms/send")
    async def send(request: Request) -> Response:
        sandbox, account = authenticate(request, sms_call=True)
        body = parse_object(await request.body())
        return JSONResponse(sandbox.send(account, body))

    @router.get("/sms")
    async def list_messages(request: Request) -> Response:
        sandbox, account = authenticate(request, sms_call=True)
        return JSONResponse(sandbox.list_messages(account, _query(request)))

    @router.get("/sms/{message_id}")
    async def get_message(message_id: str, request: Request) -> Response:
        sandbox, account = authenticate(request, sms_call=True)
        return JSONResponse(sandbox.get_message(account, message_id))

    @router.delete("/sms/{message_id}")
    async def cancel(message_id: str, request: Request) -> Response:
        sandbox, account = authenticate(request, sms_call=True)
        sandbox.cancel(account, message_id)
        return Response(status_code=204)

    @router.get("/billing/balance")
    async def balance(request: Request) -> Response:
        sandbox, account = authenticate(request, sms_call=False)
        return JSONResponse(sandbox.balance(account))

    @router.post("/webhooks")
    async def create_webhook(request: Request) -> Response:
        sandbox, account = authenticate(request, sms_call=False)
        body = parse_object(await request.body())
        return JSONResponse(sandbox.create_webhook(account, body), status_code=201)

    @router.get("/webhooks")
    async def list_webhooks(request: Request) -> Response:
        sandbox, account = authenticate(request, sms_call=False)
        page = _int_query(request, "pageNumber", 1)
        size = min(_int_query(request, "pageSize", 10), sandbox.config.max_page_size)
        if page < 1 or size < 1:
            raise SandboxError(400, "BadRequest", "pageNumber and pageSize must be positive.")
        return JSONResponse(sandbox.list_webhooks(account, page, size))

    @router.post("/webhooks/test")
    async def test_webhook(request: Request) -> Response:
        sandbox, account = authenticate(request, sms_call=False)
        sandbox.test_webhook(account, parse_object(await request.body()))
        return Response(status_code=204)

    @router.get("/webhooks/{webhook_id}")
    async def get_webhook(webhook_id: str, request: Request) -> Response:
        sandbox, account = authenticate(request, sms_call=False)
        return JSONResponse(sandbox.own_webhook(account, webhook_id).body())

    @router.put("/webhooks/{webhook_id}/toggle")
    async def toggle_webhook(webhook_id: str, request: Request) -> Response:
        sandbox, account = authenticate(request, sms_call=False)
        sandbox.toggle_webhook(account, webhook_id)
        return Response(status_code=204)

    @router.delete("/webhooks/{webhook_id}")
    async def delete_webhook(webhook_id: str, request: Request) -> Response:
        sandbox, account = authenticate(request, sms_call=False)
        sandbox.delete_webhook(account, webhook_id)
        return Response(status_code=204)

    @router.get("/webhooks/{webhook_id}/logs")
    async def webhook_logs(webhook_id: str, request: Request) -> Response:
        sandbox, account = authenticate(request, sms_call=False)
        limit = max(1, _int_query(request, "limit", 50))
        return JSONResponse(sandbox.webhook_logs_of(account, webhook_id, limit))

    @router.get("/health")
    async def health(request: Request) -> Response:
        on_base_path(request)
        return JSONResponse({"status": "ok", "service": "castbrick-sandbox"})

    return router


def create_castbrick_sandbox(
    config: CastBrickSandboxConfig | None = None, *, clock: Callable[[], float] | None = None
) -> FastAPI:
    """A local CastBrick. `app.state.sandbox` is the `CastBrickSandbox` holding its state;
    every request looks it up, so assigning a new one there starts afresh.

    The API answers under `sandbox.config.base_path` only (read per request), 404 under the
    other prefix. With no config: the bare host, accounts
    `DEFAULT_API_KEY` and `DEFAULT_TEST_KEY` (10,000 AOA, 10 AOA a segment, sender
    `CASTBRIDGE`, 10 requests/s), statuses Queued → Sent (1 s) → Delivered/Failed (3 s).
    """
    sandbox = CastBrickSandbox(config, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        current: CastBrickSandbox = app.state.sandbox
        await current.pusher.close()

    app = FastAPI(
        title="CastBrick sandbox (castbridge)",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.sandbox = sandbox
    app.include_router(_api_router())
    app.include_router(_api_router(), prefix="/v1")
    app.include_router(admin_router())

    async def on_sandbox_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SandboxError)
        return error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            error = not_found(f"Endpoint {request.method} {request.url.path} not found.")
        elif exc.status_code == 405:
            error = SandboxError(405, "MethodNotAllowed", "Method not allowed.")
        else:
            error = SandboxError(exc.status_code, f"Http{exc.status_code}", str(exc.detail))
        sandbox_of(request).stats.calls[f"{request.method} <{exc.status_code}>"] += 1
        return error_response(error)

    app.add_exception_handler(SandboxError, on_sandbox_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_middleware(FaultMiddleware)
    return app
