"""The FastAPI application factory; its lifespan owns every resource and, by default, the worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from castbridge import __version__
from castbridge.config import Settings
from castbridge.logging import get_logger
from castbridge.resources import open_resources
from castbridge.web.ghl_webhooks import RETRY_AFTER_SECONDS
from castbridge.web.security import EdgeMiddleware

log = get_logger(__name__)


def create_app(settings: Settings, *, run_worker: bool | None = None) -> FastAPI:
    """Build the app; the worker runs in its lifespan unless disabled (`--no-worker`)."""
    with_worker = settings.run_worker if run_worker is None else run_worker

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings, with_worker=with_worker) as resources:
            app.state.resources = resources
            worker = resources.worker
            worker_task = (
                asyncio.create_task(worker.run(), name="castbridge-worker")
                if worker is not None
                else None
            )
            try:
                yield
            finally:
                if worker_task is not None and worker is not None:
                    worker.stop()
                    await worker_task

    app = FastAPI(
        title="castbridge",
        version=__version__,
        summary="HighLevel SMS Conversation Provider bridging to regional SMS gateways",
        lifespan=lifespan,
    )

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail
        body = detail if isinstance(detail, dict) else {"error": detail}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(part) for part in error["loc"]), "problem": error["msg"]}
            for error in exc.errors()
        ]
        return JSONResponse({"error": "invalid request", "errors": problems}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Never leak internals, never a 500. A webhook gets 429 (the one answer HighLevel and
        # the gateways retry: nothing was acknowledged); anything else 503.
        log.exception("unhandled_error", error_type=type(exc).__name__, path=request.url.path)
        if request.url.path.startswith("/webhooks/"):
            return JSONResponse(
                {"error": "temporarily unable to handle the webhook; retry later"},
                status_code=429,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        return JSONResponse({"error": "temporarily unavailable, retry later"}, status_code=503)

    from castbridge.web import gateway_webhooks, ghl_webhooks, health, oauth
    from castbridge.web import settings as settings_page

    app.include_router(health.router)
    app.include_router(ghl_webhooks.router)
    app.include_router(gateway_webhooks.router)
    app.include_router(oauth.router)
    app.include_router(settings_page.router)
    app.add_middleware(EdgeMiddleware, settings=settings)
    from castbridge.web.request_id import RequestIdMiddleware

    app.add_middleware(RequestIdMiddleware)  # outermost: even a refused request has an id
    return app
