"""The HighLevel sandbox as a FastAPI app: OAuth, conversations, contacts and `/_sandbox` admin."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from castbridge.sandbox.ghl import admin, api, custom_page, oauth
from castbridge.sandbox.ghl.common import SandboxReply, reply
from castbridge.sandbox.ghl.config import GHLSandboxConfig
from castbridge.sandbox.ghl.state import GHLSandbox


def create_ghl_sandbox(config: GHLSandboxConfig | None = None) -> FastAPI:
    """A local HighLevel; its state (keys, grants, messages, counters) is `app.state.sandbox`."""
    app = FastAPI(title="castbridge HighLevel sandbox", docs_url=None, redoc_url=None)
    app.state.sandbox = GHLSandbox(config)

    @app.exception_handler(SandboxReply)
    async def _sandbox_reply(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SandboxReply)
        return exc.response

    @app.exception_handler(404)
    async def _not_found(_request: Request, _exc: Exception) -> JSONResponse:
        return reply(404, {"statusCode": 404, "message": "Cannot find route", "error": "Not Found"})

    app.include_router(oauth.router)
    app.include_router(api.router)
    app.include_router(admin.router)
    app.include_router(custom_page.router)
    return app
