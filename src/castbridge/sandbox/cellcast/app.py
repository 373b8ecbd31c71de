"""The Cellcast sandbox as a FastAPI app: the new API's routes, fault injection, `/_sandbox/…`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from castbridge.sandbox.cellcast.admin import admin_router
from castbridge.sandbox.cellcast.config import CellcastSandboxConfig, SandboxAccount
from castbridge.sandbox.cellcast.http import error_response, parse_json, sandbox_of
from castbridge.sandbox.cellcast.records import SandboxError
from castbridge.sandbox.cellcast.state import CellcastSandbox
from castbridge.sandbox.kit import FaultMiddleware


def _auth(request: Request) -> tuple[CellcastSandbox, SandboxAccount]:
    sandbox = sandbox_of(request)
    account = sandbox.authenticate(request.headers.get("authorization"))
    sandbox.pump()
    return sandbox, account


def _page(request: Request, name: str = "page", default: int = 1) -> int:
    raw = request.query_params.get(name)
    try:
        value = int(raw) if raw else default
    except ValueError:
        value = default
    return max(1, value)


def _api_router() -> APIRouter:
    router = APIRouter()

    @router.post("/api/v1/gateway")
    async def gateway(request: Request) -> Response:
        sandbox, account = _auth(request)
        return JSONResponse(sandbox.send_gateway(account, parse_json(await request.body())))

    @router.post("/api/v1/chat")
    async def chat(request: Request) -> Response:
        sandbox, account = _auth(request)
        return JSONResponse(sandbox.send_chat(account, parse_json(await request.body())))

    @router.get("/api/v2/report/message/{message_id}")
    async def report(message_id: str, request: Request) -> Response:
        sandbox, account = _auth(request)
        return JSONResponse(sandbox.report_detail(account, message_id))

    @router.get("/api/v2/report/message")
    async def reports(request: Request) -> Response:
        sandbox, account = _auth(request)
        return JSONResponse(sandbox.report_list(account, request.query_params))

    @router.get("/api/v1/apiClient/account")
    async def account_info(request: Request) -> Response:
        sandbox, account = _auth(request)
        return JSONResponse(sandbox.account_info(account))

    @router.get("/api/v1/user/token/verify")
    async def token_verify(request: Request) -> Response:
        sandbox, account = _auth(request)
        return JSONResponse(sandbox.token_verify(account))

    @router.get("/api/v1/apiClient/getResponses")
    async def responses(request: Request) -> Response:
        sandbox, account = _auth(request)
        return JSONResponse(sandbox.get_responses(account, _page(request)))

    @router.get("/api/v1/apiClient/getOptout")
    async def optouts(request: Request) -> Response:
        sandbox, account = _auth(request)
        size = min(_page(request, "size", sandbox.config.optout_page_size), 1000)
        return JSONResponse(sandbox.get_optouts(account, _page(request), size))

    return router


def create_cellcast_sandbox(
    config: CellcastSandboxConfig | None = None, *, clock: Callable[[], float] | None = None
) -> FastAPI:
    """A local Cellcast. `app.state.sandbox` is the `CellcastSandbox` holding its state; every
    request looks it up, so assigning a new one there starts afresh.

    With no config: two accounts (`DEFAULT_API_KEY`, `SECOND_API_KEY`), 1,000 credits each,
    registered senders `CASTBRIDGE` (alphanumeric, one-way) and `61400000999` (a dedicated
    number), statuses queued → sent (1 s) → delivered (3 s), opt-outs answered as
    `unsubscribeContacts`, live-style `reply` bodies on the Receive URL.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def tick() -> None:
            # Status webhooks go out when a message reaches its final status, even when
            # nobody calls the API meanwhile.
            while True:
                state: CellcastSandbox = app.state.sandbox
                state.pump()
                await asyncio.sleep(state.config.pump_interval_seconds)

        task = asyncio.create_task(tick())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await app.state.sandbox.pusher.close()

    app = FastAPI(
        title="Cellcast sandbox (castbridge)",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.sandbox = CellcastSandbox(config, clock)
    app.include_router(_api_router())
    app.include_router(admin_router())

    async def on_sandbox_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SandboxError)
        return error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        # Cellcast's Express server answers unknown routes with its {code, message, stack}.
        message = "Not Found" if exc.status_code == 404 else str(exc.detail)
        return JSONResponse(
            {"code": exc.status_code, "message": message, "stack": f"Error: {message}"},
            status_code=exc.status_code,
        )

    app.add_exception_handler(SandboxError, on_sandbox_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_middleware(FaultMiddleware)
    return app
